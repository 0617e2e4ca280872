//! Test harness: a fresh integration cloud on SQLite or PostgreSQL, loaded with a small,
//! hand-written set of patients, driven through its HTTP router without a socket.
//!
//! PostgreSQL tests need `HEALTHCLOUD_TEST_POSTGRES_URL` (an account that may create
//! databases); each harness creates its own database. `tests/run` sets it up. Without it the
//! PostgreSQL variants are skipped with a message, unless `HEALTHCLOUD_REQUIRE_POSTGRES=1`
//! makes that a failure (as in CI).

#![allow(dead_code)]

pub mod sources;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use healthcloud_integration::FhirService;
use healthcloud_integration::api::{self, FhirConfig, FhirState};
use healthcloud_integration::import::Importer;
use healthcloud_integration::query::PageLimits;
use healthcloud_integration::store::EmbeddedStore;
use healthcloud_platform::auth::keys::SigningKeys;
use healthcloud_platform::auth::smart::{Client, Clients};
use healthcloud_platform::auth::{Claims, Role, TokenIssuer, TokenRequest};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

pub const BASE: &str = "http://fhir.test/fhir/r4";
/// The origin of a browser app the test FHIR API answers CORS requests from.
pub const APP_ORIGIN: &str = "https://app.example.dk";
pub const CPR: &str = "urn:oid:1.2.208.176.1.2";
pub const LOINC: &str = "http://loinc.org";
pub const OBS_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct Harness {
    pub app: Router,
    pub issuer: TokenIssuer,
    pub service: FhirService,
    pub store: EmbeddedStore,
    /// The apps healthcloud's authorization server (`AUTHORIZATION_SERVER`) issues tokens to.
    pub clients: Clients,
    keys: SigningKeys,
    _dir: tempfile::TempDir,
}

/// The issuer name of the tokens [`Harness::backend_service`] signs.
pub const AUTHORIZATION_SERVER: &str = "http://fhir.test/oauth";

/// The region the test's backend services are installed in.
pub const REGION: &str = "test-region";

pub struct Response {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
}

impl Harness {
    /// A harness with the fixture data, or `None` when PostgreSQL is not configured.
    pub async fn new(backend: Backend) -> Option<Harness> {
        Self::with_limits(backend, PageLimits::default()).await
    }

    pub async fn with_limits(backend: Backend, limits: PageLimits) -> Option<Harness> {
        let dir = tempfile::tempdir().unwrap();
        let url = match backend {
            Backend::Sqlite => format!("sqlite://{}", dir.path().join("fhir.db").display()),
            Backend::Postgres => postgres_database().await?,
        };
        let store = EmbeddedStore::new(healthcloud_integration::open_database(&url).await.unwrap());
        let mut importer = Importer::new(&store);
        importer.add(fixture()).await.unwrap();
        importer.finish().await.unwrap();
        let issuer = TokenIssuer::generate("test-issuer").with_audience(vec![BASE.into()]);
        let service = FhirService::new(store.clone(), limits);
        let keys = SigningKeys::open(&dir.path().join("authorization-keys")).unwrap();
        let clients = Clients::default();
        let state = FhirState {
            service: service.clone(),
            verifier: issuer.verifier().with_authorization_server(
                AUTHORIZATION_SERVER,
                keys.clone(),
                clients.clone(),
            ),
            config: Arc::new(FhirConfig {
                base_url: BASE.into(),
                audience: BASE.into(),
                max_body_bytes: 64 * 1024,
                cors_origins: vec![APP_ORIGIN.into()],
                authorization: None,
                subscription_endpoints: healthcloud_integration::webhook::EndpointPolicy {
                    allow_internal: true,
                },
            }),
        };
        let app = api::mount(state);
        Some(Harness {
            app,
            issuer,
            service,
            store,
            clients,
            keys,
            _dir: dir,
        })
    }

    /// A backend service `name` a region installed with `grant` (system/ scopes, and a
    /// purpose of use as `purpose:research`), and an access token of it as healthcloud's
    /// authorization server issues one (client credentials).
    pub fn backend_service(&self, name: &str, grant: &str) -> String {
        let (purposes, scopes): (Vec<&str>, Vec<&str>) = grant
            .split_whitespace()
            .partition(|word| word.starts_with("purpose:"));
        let purpose = purposes.first().map(|word| {
            let name = word.trim_start_matches("purpose:");
            healthcloud_platform::scope::Purpose::from_name(name).unwrap()
        });
        let grant = healthcloud_platform::scope::Scope::parse_list(&scopes.join(" ")).unwrap();
        self.clients
            .register(Client {
                client_id: name.to_owned(),
                name: name.to_owned(),
                app: format!("research/{name}"),
                version: "1.0.0".into(),
                installed_at: "2026-01-01T00:00:00Z".into(),
                changed_at: 0,
                digest: "0".repeat(64),
                publisher_key: "test-key".into(),
                region: REGION.into(),
                audience: vec![Role::System],
                redirect_uris: Vec::new(),
                launch_url: None,
                origins: Vec::new(),
                requested: Vec::new(),
                grant: grant.clone(),
                purpose,
                jwks: Some(json!({"keys": []})),
            })
            .unwrap();
        self.backend_service_token(name)
    }

    /// A new access token of the backend service `name` (registered before), under what its
    /// install grants now.
    pub fn backend_service_token(&self, name: &str) -> String {
        let grant = self.clients.get(name).unwrap().grant.clone();
        let now = chrono::Utc::now().timestamp();
        self.keys.sign(&Claims {
            iss: AUTHORIZATION_SERVER.into(),
            sub: name.to_owned(),
            exp: now + 600,
            iat: now,
            role: Role::System,
            scope: (grant.iter().map(ToString::to_string))
                .collect::<Vec<_>>()
                .join(" "),
            patient: None,
            region: Some(REGION.into()),
            fhir_user: None,
            org: None,
            practitioner: None,
            aud: vec![BASE.into()],
            client_id: Some(name.to_owned()),
            encounter: None,
            jti: Some(format!("family-{name}.{now}")),
        })
    }

    pub fn token(&self, role: Role, patient: Option<&str>, scope: Option<&str>) -> String {
        self.issuer
            .mint(
                role,
                TokenRequest {
                    sub: Some(format!("{}-user", role.as_str())),
                    patient: patient.map(str::to_owned),
                    scope: scope.map(str::to_owned),
                    ..Default::default()
                },
            )
            .unwrap()
    }

    pub fn clinician(&self) -> String {
        self.token(Role::Clinician, None, None)
    }

    /// A clinician (all patients) acting for the organization `org`.
    pub fn clinician_of(&self, org: &str) -> String {
        let request = TokenRequest {
            org: Some(org.to_owned()),
            ..Default::default()
        };
        self.issuer.mint(Role::Clinician, request).unwrap()
    }

    pub fn citizen(&self, patient: &str) -> String {
        self.token(Role::Citizen, Some(patient), None)
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let path = path.strip_prefix(BASE).unwrap_or(path);
        let uri = if path.starts_with("/fhir/r4") {
            path.to_owned()
        } else {
            format!("/fhir/r4/{}", path.trim_start_matches('/'))
        };
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/fhir+json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        self.send(request.body(body).unwrap()).await
    }

    pub async fn send(&self, request: Request<Body>) -> Response {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
        };
        Response {
            status,
            headers,
            body,
        }
    }

    /// POSTs a Consent opting `actor` out of `patient`'s data (of `types`, or all).
    pub async fn opt_out(
        &self,
        token: &str,
        patient: &str,
        actor: &str,
        types: &[&str],
    ) -> Response {
        let consent = healthcloud_integration::consent::opt_out(patient, actor, types);
        self.request("POST", "Consent", Some(token), Some(consent))
            .await
    }

    /// Imports `resources`, ids kept, into the home store as one collection Bundle: all of
    /// them, or (on the error) none.
    pub async fn import(
        &self,
        resources: Vec<Value>,
    ) -> Result<(), healthcloud_integration::FhirError> {
        let bundle = serde_json::json!({"resourceType": "Bundle", "type": "collection",
            "entry": resources.into_iter().map(|r| serde_json::json!({"resource": r})).collect::<Vec<_>>()});
        let mut importer = Importer::new(&self.store);
        let added = importer.add(bundle).await;
        importer.finish().await.unwrap();
        added.map(|_| ())
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.request("GET", path, Some(token), None).await
    }

    /// A search that must succeed; returns the ids of the matches in order.
    pub async fn ids(&self, path: &str, token: &str) -> Vec<String> {
        let response = self.get(path, token).await;
        assert_eq!(response.status, StatusCode::OK, "{path}: {}", response.body);
        ids(&response.body)
    }
}

pub fn ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

pub fn diagnostics(response: &Response) -> String {
    assert_eq!(
        response.body["resourceType"], "OperationOutcome",
        "{}",
        response.body
    );
    response.body["issue"][0]["diagnostics"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn postgres_database() -> Option<String> {
    healthcloud_platform::testing::postgres_database("hc_test").await
}

fn obs(id: &str, patient: &str, code: &str, category: &str, date: &str) -> Value {
    let mut obs = json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "category": [{"coding": [{"system": OBS_CATEGORY, "code": category}]}],
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": date
    });
    if code == "85354-9" {
        obs["component"] = json!([
            {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueQuantity": {"value": 140, "unit": "mmHg"}},
            {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]}, "valueQuantity": {"value": 90, "unit": "mmHg"}}
        ]);
    }
    obs
}

/// The fixture, as a collection Bundle with fixed ids (so it also exercises import):
/// patients pat-a (Åse Sørensen), pat-b (Bent Hansen), pat-c (Birgit Hansen).
pub fn fixture() -> Value {
    let patient = |id: &str, cpr: &str, family: &str, given: &str, birth: &str, gp: &str| {
        json!({"resourceType": "Patient", "id": id,
            "identifier": [{"system": CPR, "value": cpr}],
            "name": [{"family": family, "given": [given]}], "birthDate": birth,
            "generalPractitioner": [{"reference": format!("Organization/{gp}")}]})
    };
    let subject = |p: &str| json!({"reference": format!("Patient/{p}")});
    let resources = vec![
        json!({"resourceType": "Organization", "id": "gp-1", "identifier": [{"system": "urn:oid:1.2.208.176.1.1", "value": "111111"}], "name": "Lægerne Nørrebro"}),
        json!({"resourceType": "Organization", "id": "gp-2", "identifier": [{"system": "urn:oid:1.2.208.176.1.1", "value": "222222"}], "name": "Lægehuset Aarhus", "alias": ["Aarhus Lægehus"]}),
        patient(
            "pat-a",
            "7501504321",
            "Sørensen",
            "Åse",
            "1950-03-15",
            "gp-1",
        ),
        patient(
            "pat-b",
            "6107624322",
            "Hansen",
            "Bent",
            "1962-07-01",
            "gp-2",
        ),
        patient(
            "pat-c",
            "9011804323",
            "Hansen",
            "Birgit",
            "1980-11-30",
            "gp-2",
        ),
        obs(
            "a-bp-1",
            "pat-a",
            "85354-9",
            "vital-signs",
            "2024-01-01T09:00:00Z",
        ),
        obs(
            "a-bp-2",
            "pat-a",
            "85354-9",
            "vital-signs",
            "2024-02-01T09:00:00Z",
        ),
        obs(
            "a-bp-3",
            "pat-a",
            "85354-9",
            "vital-signs",
            "2024-03-01T09:00:00Z",
        ),
        obs(
            "a-bp-4",
            "pat-a",
            "85354-9",
            "vital-signs",
            "2024-04-01T09:00:00Z",
        ),
        obs(
            "a-bp-5",
            "pat-a",
            "85354-9",
            "vital-signs",
            "2024-05-01T09:00:00Z",
        ),
        obs("a-hba1c-1", "pat-a", "59261-8", "laboratory", "2024-02-10"),
        obs("a-hba1c-2", "pat-a", "59261-8", "laboratory", "2024-06-10"),
        obs(
            "a-hr-1",
            "pat-a",
            "8867-4",
            "vital-signs",
            "2024-03-01T09:05:00Z",
        ),
        obs(
            "b-bp-1",
            "pat-b",
            "85354-9",
            "vital-signs",
            "2024-01-15T10:00:00Z",
        ),
        obs(
            "b-bp-2",
            "pat-b",
            "85354-9",
            "vital-signs",
            "2024-02-15T10:00:00Z",
        ),
        obs(
            "b-bp-3",
            "pat-b",
            "85354-9",
            "vital-signs",
            "2024-03-15T10:00:00Z",
        ),
        obs(
            "b-weight-1",
            "pat-b",
            "29463-7",
            "vital-signs",
            "2024-03-15T10:05:00Z",
        ),
        json!({"resourceType": "Condition", "id": "a-htn", "subject": subject("pat-a"),
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "59621000"}, {"system": "http://hl7.org/fhir/sid/icd-10", "code": "I10"}]}}),
        json!({"resourceType": "Condition", "id": "b-dm2", "subject": subject("pat-b"),
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]}}),
        json!({"resourceType": "Condition", "id": "c-asthma", "subject": subject("pat-c"),
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "resolved"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "195967001"}]}}),
        json!({"resourceType": "MedicationStatement", "id": "a-metformin", "status": "active", "subject": subject("pat-a"),
            "medicationCodeableConcept": {"coding": [{"system": "http://www.whocc.no/atc", "code": "A10BA02"}]}}),
        json!({"resourceType": "MedicationRequest", "id": "b-ramipril", "status": "stopped", "intent": "order", "subject": subject("pat-b"),
            "medicationCodeableConcept": {"coding": [{"system": "http://www.whocc.no/atc", "code": "C09AA05"}]}}),
        json!({"resourceType": "AllergyIntolerance", "id": "a-penicillin", "patient": subject("pat-a"), "recordedDate": "2020-01-01",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "91936005"}]}}),
        json!({"resourceType": "Immunization", "id": "b-flu", "status": "completed", "patient": subject("pat-b"),
            "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "140"}]}, "occurrenceDateTime": "2023-10-01"}),
        json!({"resourceType": "Encounter", "id": "a-visit", "status": "finished", "subject": subject("pat-a"),
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "period": {"start": "2024-01-01T08:45:00Z", "end": "2024-01-01T09:30:00Z"}}),
        json!({"resourceType": "Procedure", "id": "b-echo", "status": "completed", "subject": subject("pat-b"),
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "40701008"}]}, "performedDateTime": "2022-05-05"}),
        json!({"resourceType": "DiagnosticReport", "id": "a-labs", "status": "final", "subject": subject("pat-a"),
            "code": {"coding": [{"system": LOINC, "code": "24323-8"}]}, "effectiveDateTime": "2024-02-10",
            "result": [{"reference": "Observation/a-hba1c-1"}]}),
    ];
    json!({
        "resourceType": "Bundle", "type": "collection",
        "entry": resources.into_iter().map(|r| json!({"fullUrl": format!("{BASE}/{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap()), "resource": r})).collect::<Vec<_>>()
    })
}

/// Runs each named `async fn(Harness)` on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use super::*;
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(Harness::new(Backend::Sqlite).await.unwrap()).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(harness) = Harness::new(Backend::Postgres).await {
                        super::$name(harness).await
                    }
                }
            }
        )*
    };
}
