//! The host-test harness (feature `testing`): an app cloud on a fresh SQLite integration cloud with two patients,
//! apps installed from a component and a manifest (optionally with a different grant), and
//! requests through the runtime's router without a socket.
//!
//! Components are built from source, once per test binary: the guest test components in
//! `tests/components/` and the example apps in `example-apps/`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::{Install, InstallError, Limits, Runtime, RuntimeConfig};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use healthcloud_integration::FhirService;
use healthcloud_integration::import::Importer;
use healthcloud_integration::query::PageLimits;
use healthcloud_integration::store::EmbeddedStore;
use healthcloud_package::manifest::{Capability, Manifest};
use healthcloud_platform::auth::{Role, TokenIssuer, TokenRequest};
use healthcloud_platform::db::Database;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// The region the harness installs apps in.
pub const REGION: &str = "testregion";

/// The public URL the test app cloud is served under: tokens name `{PUBLIC_URL}/apps/`.
pub const PUBLIC_URL: &str = "http://apps.test";

#[derive(Debug, Clone, Copy)]
/// The database a harness runs on.
pub enum Backend {
    /// A fresh SQLite file in a temporary directory.
    Sqlite,
    /// A fresh database on the test PostgreSQL server.
    Postgres,
}

/// A fresh database on the test PostgreSQL server (`HEALTHCLOUD_TEST_POSTGRES_URL`).
async fn postgres_database() -> Option<String> {
    healthcloud_platform::testing::postgres_database("hc_runtime_test").await
}

/// A second region, for tests across regions.
pub const OTHER_REGION: &str = "otherregion";

/// An app cloud on a fresh integration cloud, with its router and token issuer.
pub struct Host {
    /// The app cloud.
    pub runtime: Runtime,
    /// Its router, called without a socket.
    pub app: Router,
    /// Mints the tests' tokens; the runtime verifies them.
    pub issuer: TokenIssuer,
    /// The integration cloud the runtime reads data through.
    pub service: FhirService,
    /// The database, as the composition hands it to the runtime (tests inspect it).
    pub database: Database,
    _dir: tempfile::TempDir,
}

/// An answer of the router, its body read.
pub struct Answer {
    /// Its status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: axum::http::HeaderMap,
    /// Its body as text.
    pub body: String,
}

impl Answer {
    /// The body as JSON (panics when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Limits for tests: a small pool and a short deadline.
pub fn test_limits() -> Limits {
    Limits {
        deadline: std::time::Duration::from_millis(1_000),
        pool_instances: 24,
        ..Limits::default()
    }
}

impl Host {
    /// A harness on SQLite with the test limits.
    pub async fn new() -> Host {
        Self::with_limits(test_limits()).await
    }

    /// A harness on SQLite with `limits`.
    pub async fn with_limits(limits: Limits) -> Host {
        Self::on(Backend::Sqlite, limits)
            .await
            .expect("SQLite is always there")
    }

    /// A host on `backend`, or `None` when PostgreSQL is not configured (the variant is then
    /// skipped, unless `HEALTHCLOUD_REQUIRE_POSTGRES` makes that a failure, as in CI).
    pub async fn on(backend: Backend, limits: Limits) -> Option<Host> {
        let dir = tempfile::tempdir().unwrap();
        let url = match backend {
            Backend::Sqlite => format!("sqlite://{}", dir.path().join("fhir.db").display()),
            Backend::Postgres => postgres_database().await?,
        };
        let database = healthcloud_integration::open_database(&url).await.unwrap();
        let store = EmbeddedStore::new(database.clone());
        let mut importer = Importer::new(&store);
        importer.add(fixture()).await.unwrap();
        importer.finish().await.unwrap();
        let issuer = TokenIssuer::generate("test-issuer")
            .with_audience(vec![healthcloud_platform::auth::apps_audience(PUBLIC_URL)]);
        let service = FhirService::new(store, PageLimits::default());
        let runtime = Runtime::new(RuntimeConfig {
            service: service.clone(),
            database: database.clone(),
            verifier: issuer.verifier(),
            public_url: PUBLIC_URL.into(),
            limits,
            cache_dir: Some(dir.path().join("compiled")),
        })
        .await
        .unwrap();
        Some(Host {
            app: runtime.router(),
            runtime,
            issuer,
            service,
            database,
            _dir: dir,
        })
    }

    /// Installs a guest test component with everything its manifest requests, or `grant`.
    pub fn install_component(
        &self,
        name: &str,
        grant: Option<&[&str]>,
    ) -> Result<Arc<Install>, InstallError> {
        let (manifest, bytes) = test_component(name);
        self.install(REGION, &manifest, &bytes, grant)
    }

    /// Installs `bytes` with `manifest` in `region`, granting `grant` or what the manifest
    /// requests.
    pub fn install(
        &self,
        region: &str,
        manifest: &str,
        bytes: &[u8],
        grant: Option<&[&str]>,
    ) -> Result<Arc<Install>, InstallError> {
        let manifest = Manifest::parse(manifest).unwrap();
        let grant = match grant {
            Some(grant) => grant
                .iter()
                .map(|c| Capability::parse(c).unwrap())
                .collect(),
            None => manifest.capabilities(),
        };
        self.runtime
            .install(region, manifest, bytes, "test-publisher-key", grant)
    }

    /// A clinician of `REGION` who opened the app for `patient`.
    pub fn clinician(&self, patient: &str) -> String {
        self.token(Role::Clinician, Some(patient), None)
    }

    /// A token of `role` for the app cloud, with an optional patient in context and scope.
    pub fn token(&self, role: Role, patient: Option<&str>, scope: Option<&str>) -> String {
        self.issuer
            .mint(
                role,
                TokenRequest {
                    sub: Some(format!("{}-user", role.as_str())),
                    patient: patient.map(str::to_owned),
                    scope: scope.map(str::to_owned),
                    region: Some(REGION.into()),
                    ..Default::default()
                },
            )
            .unwrap()
    }

    /// A GET of `path` with `token`.
    pub async fn get(&self, path: &str, token: &str) -> Answer {
        let request = Request::get(path)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        self.send(request).await
    }

    /// Sends `request` through the router.
    pub async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    /// The AuditEvents recorded so far, as JSON.
    pub async fn audit_events(&self) -> Vec<Value> {
        let sql = self
            .database
            .sql("SELECT content FROM resources WHERE resource_type = 'AuditEvent'");
        let rows = sql.query().fetch_all(self.database.pool()).await.unwrap();
        use sqlx::Row;
        rows.iter()
            .map(|row| serde_json::from_str(&row.get::<String, _>(0)).unwrap())
            .collect()
    }
}

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// Builds a guest workspace once per test binary: package directory name → component path.
fn built(
    workspace: &'static str,
    cell: &'static OnceLock<HashMap<String, PathBuf>>,
) -> &'static HashMap<String, PathBuf> {
    cell.get_or_init(|| healthcloud_guestbuild::build_for_tests(repository(), workspace))
}

/// A guest test component from `tests/components/<name>`: (manifest text, bytes).
pub fn test_component(name: &str) -> (String, Vec<u8>) {
    static BUILT: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    component_in("tests/components", name, built("tests/components", &BUILT))
}

/// An example app from `example-apps/<name>`: (manifest text, bytes).
pub fn example_app(name: &str) -> (String, Vec<u8>) {
    static BUILT: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    component_in("example-apps", name, built("example-apps", &BUILT))
}

fn component_in(folder: &str, name: &str, built: &HashMap<String, PathBuf>) -> (String, Vec<u8>) {
    let dir = repository().join(folder).join(name);
    let manifest = std::fs::read_to_string(dir.join("healthcloud.toml")).unwrap();
    let wasm = built
        .get(name)
        .unwrap_or_else(|| panic!("{folder}/{name} built no component"));
    (manifest, std::fs::read(wasm).unwrap())
}

/// LOINC's code system.
pub const LOINC: &str = "http://loinc.org";

/// Blood pressure panel with systolic/diastolic components.
pub fn blood_pressure(id: &str, patient: &str, date: &str, systolic: u32, diastolic: u32) -> Value {
    let component = |code: &str, value: u32| {
        json!({"code": {"coding": [{"system": LOINC, "code": code}]},
               "valueQuantity": {"value": value, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}})
    };
    json!({"resourceType": "Observation", "id": id, "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": "85354-9", "display": "Blood pressure panel"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": date,
        "component": [component("8480-6", systolic), component("8462-4", diastolic)]})
}

/// Two patients: `pat-a` with three blood pressures, `pat-b` with one.
pub fn fixture() -> Value {
    let patient = |id: &str, family: &str, given: &str| {
        json!({"resourceType": "Patient", "id": id,
            "identifier": [{"system": "urn:oid:1.2.208.176.1.2", "value": format!("010101{}", &id[4..])}],
            "name": [{"family": family, "given": [given]}], "birthDate": "1950-01-01"})
    };
    let today = chrono::Utc::now();
    let resources = vec![
        patient("pat-a", "Sørensen", "Åse"),
        patient("pat-b", "Hansen", "Bent"),
        blood_pressure("a-bp-1", "pat-a", &days_ago(&today, 30), 128, 82),
        blood_pressure("a-bp-2", "pat-a", &days_ago(&today, 10), 151, 95),
        blood_pressure("a-bp-3", "pat-a", &days_ago(&today, 2), 138, 86),
        blood_pressure("b-bp-1", "pat-b", &days_ago(&today, 5), 119, 77),
    ];
    json!({"resourceType": "Bundle", "type": "collection",
        "entry": resources.into_iter().map(|r| json!({"resource": r})).collect::<Vec<_>>()})
}

fn days_ago(today: &chrono::DateTime<chrono::Utc>, days: i64) -> String {
    (*today - chrono::Duration::days(days))
        .format("%Y-%m-%dT09:00:00Z")
        .to_string()
}
