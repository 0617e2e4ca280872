//! Several nodes as separate `healthcloud serve` processes sharing one PostgreSQL database: a
//! store, an integration node and two runtime nodes. A grant change made through one runtime
//! node applies on the other within 2 s; a version the store revokes stops on both within 2 s;
//! a restarted runtime node comes back to the same state.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{command_in, free_port, succeed_in, wait_for};
use healthcloud_package::client::StoreClient;
use healthcloud_package::keys::SecretKey;
use healthcloud_package::manifest::Manifest;
use healthcloud_package::package::Package;
use serde_json::json;

/// A `healthcloud serve …` process, killed when dropped.
struct Node {
    child: Child,
    port: u16,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Starts `healthcloud serve <part>` with its own data directory under `root`, verifying the
/// tokens of the development issuer in `root/issuer`.
fn serve(root: &Path, part: &str, name: &str, db_url: &str, extra: &[&str]) -> Node {
    let port = free_port();
    let data_dir = root.join(name);
    let issuer_key = root.join("issuer.pub");
    let addr = format!("127.0.0.1:{port}");
    let mut args = vec![
        "serve",
        part,
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--database-url",
        db_url,
        "--addr",
        &addr,
        "--issuer",
        "healthcloud-dev-issuer",
        "--issuer-key",
        issuer_key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let child = command_in(root, &args)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    wait_for(port, &format!("serve {part} ({name})"));
    Node { child, port }
}

/// The public URL of the runtime nodes.
const APPS_URL: &str = "http://apps.hovedstaden.test";

fn token(root: &Path, args: &[&str]) -> String {
    let issuer = root.join("issuer");
    let mut all = vec!["token", "--data-dir", issuer.to_str().unwrap()];
    all.extend_from_slice(args);
    succeed_in(root, &all).trim().to_owned()
}

async fn eventually(
    within: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get(http: &reqwest::Client, url: &str, token: &str) -> (u16, String) {
    let response = http.get(url).bearer_auth(token).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

fn shows_readings((status, body): &(u16, String)) -> bool {
    *status == 200 && body.contains("151") && !body.contains("was denied")
}

fn denied((_, body): &(u16, String)) -> bool {
    body.contains("was denied") && !body.contains("151")
}

/// bp-monitor as built from example-apps/.
fn bp_monitor() -> (Manifest, Vec<u8>) {
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let built = healthcloud_guestbuild::build_for_tests(repository, "example-apps");
    let manifest =
        std::fs::read_to_string(repository.join("example-apps/bp-monitor/healthcloud.toml"))
            .unwrap();
    (
        Manifest::parse(&manifest).unwrap(),
        std::fs::read(&built["bp-monitor"]).unwrap(),
    )
}

const BP_SEARCH: &str = "patient/Observation.s?category=vital-signs";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_nodes_on_one_postgres_database_follow_each_other_and_the_store() {
    let Some(db_url) = healthcloud_platform::testing::postgres_database("hc_nodes_test").await
    else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let public_key = succeed_in(
        root,
        &[
            "token",
            "--data-dir",
            root.join("issuer").to_str().unwrap(),
            "--public-key",
        ],
    );
    std::fs::write(root.join("issuer.pub"), public_key).unwrap();

    let store = serve(root, "store", "store", &db_url, &[]);
    let integration = serve(root, "integration", "integration", &db_url, &[]);
    let store_url = store.url();
    // Runtime nodes answer under one public URL, as behind a load balancer: a token for that
    // app cloud opens apps on any of them, a restarted one included.
    let runtime_args = ["--store-url", store_url.as_str(), "--public-url", APPS_URL];
    let node_a = serve(root, "runtime", "runtime-a", &db_url, &runtime_args);
    let mut node_b = serve(root, "runtime", "runtime-b", &db_url, &runtime_args);

    // Data imported into the shared database; the integration node serves it.
    let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "pat-a", "name": [{"family": "Sørensen", "given": ["Åse"]}]}},
        {"resource": {"resourceType": "Observation", "id": "bp-1", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
            "subject": {"reference": "Patient/pat-a"}, "effectiveDateTime": "2026-11-20T09:00:00Z",
            "component": [
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}, "valueQuantity": {"value": 151, "unit": "mmHg"}},
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]}, "valueQuantity": {"value": 95, "unit": "mmHg"}}]}}
    ]});
    std::fs::write(root.join("bundle.json"), bundle.to_string()).unwrap();
    succeed_in(
        root,
        &[
            "data",
            "import",
            "bundle.json",
            "--database-url",
            &db_url,
            "--data-dir",
            "importer",
        ],
    );
    let http = reqwest::Client::new();
    let integration_url = integration.url();
    let reader = token(
        root,
        &[
            "--role",
            "clinician",
            "--region",
            "hovedstaden",
            "--public-url",
            &integration_url,
        ],
    );
    let (status, found) = get(
        &http,
        &format!("{}/fhir/r4/Patient?_id=pat-a", integration.url()),
        &reader,
    )
    .await;
    assert_eq!(status, 200, "{found}");
    assert!(found.contains("Sørensen"), "{found}");

    let key = SecretKey::generate();
    let admin =
        StoreClient::new(&store_url, Some(token(root, &["--role", "store-admin"]))).unwrap();
    admin
        .approve_publisher("examples", "examples", &key.public().to_pem())
        .await
        .unwrap();
    let (manifest, component) = bp_monitor();
    let publisher = StoreClient::new(
        &store_url,
        Some(token(root, &["--role", "publisher", "--sub", "examples"])),
    )
    .unwrap();
    let size = component.len() as u64;
    publisher
        .publish(
            &Package::new(&manifest, &component).sign(&key),
            reqwest::Body::from(component),
            size,
        )
        .await
        .unwrap();

    // Installed through node A; node B serves it too (after compiling it).
    let region_admin = token(root, &["--role", "region-admin", "--region", "hovedstaden"]);
    let installed = http
        .post(format!(
            "{}/admin/v1/regions/hovedstaden/installs",
            node_a.url()
        ))
        .bearer_auth(&region_admin)
        .json(
            &json!({"app": "examples/bp-monitor@0.1.0", "grant": ["patient/Patient.r", BP_SEARCH]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        installed.status(),
        201,
        "{}",
        installed.text().await.unwrap()
    );
    let apps = format!("{APPS_URL}/apps/");
    let clinician = token(
        root,
        &[
            "--role",
            "clinician",
            "--region",
            "hovedstaden",
            "--patient",
            "pat-a",
            "--audience",
            &apps,
        ],
    );
    let app = "/apps/hovedstaden/examples/bp-monitor/";
    for node in [&node_a, &node_b] {
        let url = format!("{}{app}", node.url());
        eventually(
            Duration::from_secs(60),
            "each node serves the install",
            async || shows_readings(&get(&http, &url, &clinician).await),
        )
        .await;
    }

    // A grant revoked through node A: node B denies within 2 s.
    let revoked = http
        .post(format!(
            "{}/admin/v1/regions/hovedstaden/installs/examples/bp-monitor/revoke",
            node_a.url()
        ))
        .bearer_auth(&region_admin)
        .json(&json!({ "capability": BP_SEARCH }))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let on_b = format!("{}{app}", node_b.url());
    let took = eventually(Duration::from_secs(2), "node B denies", async || {
        denied(&get(&http, &on_b, &clinician).await)
    })
    .await;
    println!("a grant revoked on node A was denied on node B after {took:?}");

    // Granted back through node B; then the store revokes the version: both nodes stop.
    let granted = http
        .post(format!(
            "{}/admin/v1/regions/hovedstaden/installs/examples/bp-monitor/grant",
            node_b.url()
        ))
        .bearer_auth(&region_admin)
        .json(&json!({ "capability": BP_SEARCH }))
        .send()
        .await
        .unwrap();
    assert_eq!(granted.status(), 200);
    let on_a = format!("{}{app}", node_a.url());
    eventually(
        Duration::from_secs(2),
        "node A serves data again",
        async || shows_readings(&get(&http, &on_a, &clinician).await),
    )
    .await;
    admin
        .revoke_version(
            &"examples/bp-monitor@0.1.0".parse().unwrap(),
            "unsafe advice",
        )
        .await
        .unwrap();
    let took = eventually(
        Duration::from_secs(2),
        "both nodes answer 410",
        async || {
            get(&http, &on_a, &clinician).await.0 == 410
                && get(&http, &on_b, &clinician).await.0 == 410
        },
    )
    .await;
    println!("a version revoked in the store stopped on both nodes after {took:?}");

    // Node B restarts: the same state, from the database and its disk.
    drop(node_b);
    node_b = serve(root, "runtime", "runtime-b", &db_url, &runtime_args);
    let on_b = format!("{}{app}", node_b.url());
    let (status, page) = get(&http, &on_b, &clinician).await;
    assert_eq!(status, 410, "{page}");
    assert!(page.contains("unsafe advice"), "{page}");
    drop((store, integration, node_a));
}
