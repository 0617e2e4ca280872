//! SMART App Launch against healthcloud's authorization server, with real peers: the region's
//! identity provider is npm's oidc-provider (`tests/upstream/identity-provider.mjs`) with
//! password users, the app is Python's `fhirclient` from PyPI, and the person in the browser
//! is `smart/browser.py` (requests, following every redirect over loopback HTTP). The FHIR API
//! and the authorization server run in this process on one listener, as `serve integration`
//! composes them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use healthcloud_integration::Integration;
use healthcloud_integration::import::Importer;
use healthcloud_integration::store::EmbeddedStore;
use healthcloud_oauth::{AuthorizationServer, Client, IdentityProviderConfig, OAuthConfig};
use healthcloud_platform::scope::Scope;
use serde_json::{Value, json};

const CLIENT_ID: &str = "bp-diary";
const REDIRECT_URI: &str = "http://127.0.0.1:9/bp-diary/callback";
const SCOPE: &str =
    "launch/patient openid fhirUser offline_access patient/Patient.rs patient/Observation.rs";

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `tests/upstream` with its npm packages installed.
fn node_packages() -> PathBuf {
    static INSTALLED: OnceLock<PathBuf> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let dir = repository().join("tests/upstream");
            if !dir.join("node_modules/oidc-provider").exists() {
                let status = Command::new("npm")
                    .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                    .current_dir(&dir)
                    .status()
                    .expect("npm runs (Node.js 20 and npm are needed for the identity provider)");
                assert!(status.success(), "npm ci in tests/upstream failed");
            }
            dir
        })
        .clone()
}

/// A Python with `fhirclient` and `requests` from PyPI, in `target/smart-venv`.
fn python() -> PathBuf {
    static INSTALLED: OnceLock<PathBuf> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let venv = repository().join("target/smart-venv");
            let python = venv.join("bin/python");
            if !python.exists() {
                let status = Command::new("python3")
                    .args(["-m", "venv"])
                    .arg(&venv)
                    .status()
                    .expect("python3 runs");
                assert!(status.success(), "python3 -m venv failed");
            }
            let status = Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "fhirclient==4.4.0",
                    "requests",
                ])
                .status()
                .expect("pip runs");
            assert!(status.success(), "pip install fhirclient failed");
            python
        })
        .clone()
}

/// The identity provider, killed when dropped.
struct IdentityProvider {
    child: Child,
    issuer: String,
}

impl Drop for IdentityProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// healthcloud (FHIR API and authorization server) with one patient's data, the identity
/// provider with its users, and one SMART app installed.
struct World {
    dir: tempfile::TempDir,
    public_url: String,
    fhir_base: String,
    server: AuthorizationServer,
    _provider: IdentityProvider,
    http: reqwest::Client,
}

impl World {
    async fn start() -> World {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let public_url = format!("http://{}", listener.local_addr().unwrap());
        let provider = start_provider(dir.path(), &public_url);
        let database_url = format!("sqlite://{}", dir.path().join("fhir.db").display());
        let integration = Integration::open(&database_url, &public_url, dir.path())
            .await
            .unwrap();
        let store = EmbeddedStore::new(integration.database.clone());
        let mut importer = Importer::new(&store);
        importer.add(fixture()).await.unwrap();
        importer.finish().await.unwrap();
        let fhir_base = format!("{public_url}/fhir/r4");
        let server = AuthorizationServer::open(
            integration.database.clone(),
            dir.path(),
            OAuthConfig {
                public_url: public_url.clone(),
                fhir_base: fhir_base.clone(),
                identity_provider: Some(IdentityProviderConfig {
                    issuer: provider.issuer.clone(),
                    client_id: "healthcloud".into(),
                    client_secret: std::fs::read_to_string(dir.path().join("idp-secret")).unwrap(),
                    role_claim: "role".into(),
                }),
            },
        )
        .await
        .unwrap();
        server.clients().register(Client {
            client_id: CLIENT_ID.into(),
            name: "Blood pressure diary".into(),
            app: "acme/bp-diary".into(),
            region: "region-h".into(),
            redirect_uris: vec![REDIRECT_URI.into()],
            requested: vec![
                (
                    scope("patient/Observation.rs"),
                    "To chart your blood pressure.".into(),
                ),
                (scope("patient/Patient.rs"), "To show your name.".into()),
                (
                    scope("patient/Condition.rs"),
                    "To warn about your diagnoses.".into(),
                ),
            ],
            // The region did not grant Conditions.
            grant: vec![scope("patient/Observation.rs"), scope("patient/Patient.rs")],
        });
        let integration = integration
            .with_authorization_server(server.endpoints().clone(), server.keys().clone());
        let router = integration.router().merge(server.router());
        tokio::spawn(async move { axum::serve(listener, router).await });
        World {
            dir,
            public_url,
            fhir_base,
            server,
            _provider: provider,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    /// The person in the browser, through `url`: the callback URL the app got (or where
    /// they stopped).
    fn browse(&self, url: &str, login: &str, decision: &str) -> Value {
        let output = Command::new(python())
            .arg(repository().join("tests/system/smart/browser.py"))
            .args([
                url,
                REDIRECT_URI,
                login,
                &format!("{login}-password"),
                decision,
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "browser.py failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }

    /// An authorization URL of the app, with `overrides` of its parameters.
    fn authorize_url(&self, verifier: &str, overrides: &[(&str, &str)]) -> String {
        let challenge = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            <sha2::Sha256 as sha2::Digest>::digest(verifier.as_bytes()),
        );
        let mut parameters: Vec<(&str, String)> = vec![
            ("response_type", "code".into()),
            ("client_id", CLIENT_ID.into()),
            ("redirect_uri", REDIRECT_URI.into()),
            ("scope", SCOPE.into()),
            ("state", "st4te".into()),
            ("aud", self.fhir_base.clone()),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256".into()),
        ];
        for (name, value) in overrides {
            parameters.retain(|(existing, _)| existing != name);
            if !value.is_empty() {
                parameters.push((name, (*value).to_owned()));
            }
        }
        let mut url = url::Url::parse(&format!("{}/oauth2/authorize", self.public_url)).unwrap();
        url.query_pairs_mut().extend_pairs(parameters);
        url.into()
    }

    /// A code for the patient user, through the whole sign-in.
    fn code(&self, verifier: &str, overrides: &[(&str, &str)]) -> String {
        let answer = self.browse(&self.authorize_url(verifier, overrides), "aase", "allow");
        let callback = url::Url::parse(
            answer["callback"]
                .as_str()
                .unwrap_or_else(|| panic!("no code: {answer}")),
        )
        .unwrap();
        let query: std::collections::HashMap<_, _> = callback.query_pairs().collect();
        assert_eq!(query.get("state").map(|s| s.as_ref()), Some("st4te"));
        query
            .get("code")
            .unwrap_or_else(|| panic!("no code: {callback}"))
            .to_string()
    }

    async fn token(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/oauth2/token", self.public_url))
            .form(form)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn exchange(&self, code: &str, verifier: &str) -> (u16, Value) {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", verifier),
            ("client_id", CLIENT_ID),
        ])
        .await
    }

    async fn refresh(&self, refresh_token: &str) -> (u16, Value) {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", CLIENT_ID),
        ])
        .await
    }

    /// The status of a search of the patient's Observations with `token`.
    async fn observations(&self, token: &str) -> u16 {
        self.http
            .get(format!("{}/Observation?patient=pat-a", self.fhir_base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

fn scope(text: &str) -> Scope {
    Scope::parse(text).unwrap().unwrap()
}

fn start_provider(dir: &Path, public_url: &str) -> IdentityProvider {
    std::fs::write(dir.join("idp-secret"), "idp-s3cret-for-healthcloud").unwrap();
    let users = json!({
        "aase": {"password": "aase-password",
                 "claims": {"role": "patient", "patient": "pat-a", "fhirUser": "Patient/pat-a"}},
        "bent": {"password": "bent-password",
                 "claims": {"role": "patient", "patient": "pat-b", "fhirUser": "Patient/pat-b"}},
    });
    std::fs::write(dir.join("users.json"), users.to_string()).unwrap();
    let mut child = Command::new("node")
        .arg(node_packages().join("identity-provider.mjs"))
        .arg("--client")
        .arg(format!("healthcloud:{}", dir.join("idp-secret").display()))
        .arg("--redirect-uri")
        .arg(format!("{public_url}/oauth2/login/callback"))
        .arg("--users")
        .arg(dir.join("users.json"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("node starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next().and_then(Result::ok).unwrap_or_default();
    // Read on, so the provider never writes into a closed pipe.
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
    let issuer = line
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("the identity provider did not start: {line:?}"))
        .to_owned();
    IdentityProvider { child, issuer }
}

/// Two patients with one blood pressure each.
fn fixture() -> Value {
    let patient = |id: &str, cpr: &str| {
        json!({"resourceType": "Patient", "id": id,
            "identifier": [{"system": "urn:oid:1.2.208.176.1.2", "value": cpr}],
            "name": [{"family": "Sørensen", "given": ["Åse"]}]})
    };
    let observation = |id: &str, patient: &str| {
        json!({"resourceType": "Observation", "id": id, "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
            "subject": {"reference": format!("Patient/{patient}")},
            "effectiveDateTime": "2026-11-01T08:00:00Z"})
    };
    let resources = [
        patient("pat-a", "7501504321"),
        patient("pat-b", "6107624322"),
        observation("a-bp-1", "pat-a"),
        observation("b-bp-1", "pat-b"),
    ];
    json!({"resourceType": "Bundle", "type": "collection",
        "entry": resources.iter().map(|r| json!({"resource": r})).collect::<Vec<_>>()})
}

#[tokio::test(flavor = "multi_thread")]
async fn python_fhirclient_completes_a_standalone_launch_as_a_patient_signed_in_at_the_region_provider()
 {
    let world = World::start().await;
    let python = python();
    let world_base = world.fhir_base.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(repository().join("tests/system/smart/standalone_launch.py"))
            .args([
                &world_base,
                CLIENT_ID,
                REDIRECT_URI,
                "aase",
                "aase-password",
                SCOPE,
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "the launch failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let launched: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(launched["patient"], "pat-a", "the patient's own record");
    assert_eq!(launched["patient_read"], "pat-a");
    assert_eq!(launched["observations"], json!(["a-bp-1"]), "only her own");
    assert_eq!(launched["refreshed"], true);
    assert_eq!(launched["after_refresh"], 1);
    let consent = launched["consent_page"].as_str().unwrap();
    for shown in [
        "Read and search the patient&#39;s Observation records.",
        "To chart your blood pressure.",
        "region-h",
    ] {
        assert!(consent.contains(shown), "{shown} on {consent}");
    }
}
