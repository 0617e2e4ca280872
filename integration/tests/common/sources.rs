//! Sources for tests: the independently written Medplum FHIR server (`tests/upstream/`), another
//! healthcloud node, and hostile servers, all reached over loopback HTTP.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use axum::routing::get;
use reqwest::Url;
use serde_json::{Value, json};

use super::CPR;

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// The upstream server's npm packages, installed once (`npm ci`, from the lockfile).
pub fn install_upstream() -> PathBuf {
    static INSTALLED: OnceLock<PathBuf> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let dir = repository().join("tests/upstream");
            if !dir.join("node_modules/@medplum/fhir-router").exists()
                || !dir.join("node_modules/oidc-provider").exists()
            {
                let status = Command::new("npm")
                    .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                    .current_dir(&dir)
                    .status()
                    .expect(
                        "npm runs (Node.js 20 and npm are needed for the upstream FHIR server)",
                    );
                assert!(status.success(), "npm ci in tests/upstream failed");
            }
            dir
        })
        .clone()
}

/// A running Medplum upstream with `tests/upstream/data/gp.json`, killed when dropped.
pub struct Medplum {
    child: Child,
    /// Its FHIR base URL.
    pub base: Url,
}

impl Medplum {
    pub fn start(extra: &[&str]) -> Medplum {
        let dir = install_upstream();
        let mut child = Command::new("node")
            .arg("--experimental-websocket")
            .arg(dir.join("server.mjs"))
            .args(["--port", "0", "--name", "gp", "--data"])
            .arg(dir.join("data/gp.json"))
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("the upstream did not start: {line:?}"));
        Medplum {
            base: Url::parse(base).unwrap(),
            child,
        }
    }
}

impl Drop for Medplum {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves `router` on a loopback port; its address.
pub async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    address
}

pub fn patient(id: &str, cpr: &str) -> Value {
    json!({"resourceType": "Patient", "id": id, "identifier": [{"system": CPR, "value": cpr}]})
}

pub fn searchset(resources: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": "searchset",
           "entry": resources.into_iter().map(|r| json!({"resource": r, "search": {"mode": "match"}})).collect::<Vec<_>>()})
}

/// A source on loopback that declares `declared` (the `rest.resource` entries of its
/// CapabilityStatement), answers with `routes` and records every request it gets.
pub struct RecordingSource {
    pub base: Url,
    seen: Arc<Mutex<Vec<String>>>,
}

impl RecordingSource {
    pub async fn start(declared: Value, routes: Router) -> RecordingSource {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = seen.clone();
        let statement = json!({"resourceType": "CapabilityStatement",
            "rest": [{"mode": "server", "resource": declared}]});
        let router = Router::new()
            .route(
                "/fhir/metadata",
                get(move || async move { axum::Json(statement) }),
            )
            .merge(routes)
            .layer(axum::middleware::from_fn(
                move |request: axum::extract::Request, next: axum::middleware::Next| {
                    recorded.lock().unwrap().push(request.uri().to_string());
                    next.run(request)
                },
            ));
        let address = serve(router).await;
        RecordingSource {
            base: Url::parse(&format!("http://{address}/fhir")).unwrap(),
            seen,
        }
    }

    /// A source that declares Observations searchable by patient, holds patient
    /// `patient_id` with CPR number `cpr`, and answers Observation searches and reads with
    /// `observations` (any handler: a hostile one too).
    pub async fn scripted(patient_id: &str, cpr: &str, observations: Router) -> RecordingSource {
        let patients = searchset(vec![patient(patient_id, cpr)]);
        let declared = json!([
            {"type": "Patient", "searchParam": [{"name": "identifier"}]},
            {"type": "Observation", "searchParam": [{"name": "patient"}, {"name": "code"}, {"name": "category"}]}
        ]);
        let routes = Router::new()
            .route(
                "/fhir/Patient",
                get(move || async move { axum::Json(patients) }),
            )
            .nest("/fhir/Observation", observations);
        RecordingSource::start(declared, routes).await
    }

    /// The requests it got, as `path?query`.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    /// How many requests it got.
    pub fn requests(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// The Observation searches and reads it got.
    pub fn observation_requests(&self) -> Vec<String> {
        (self.seen().into_iter())
            .filter(|uri| uri.starts_with("/fhir/Observation"))
            .collect()
    }
}
