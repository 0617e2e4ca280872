//! A real `healthcloud up` killed with SIGKILL at each step of a publish, then restarted:
//! every version is either absent or complete and verifiable, and nothing is left in
//! temporary storage. The store pauses at the step named by `HEALTHCLOUD_STORE_PAUSE_AT`
//! (and says so on stderr) so the kill lands exactly there.

mod common;

use std::path::{Path, PathBuf};

use common::{Up, free_port, succeed};
use healthcloud_package::keys::SecretKey;
use healthcloud_package::manifest::Manifest;
use healthcloud_package::package::{Package, SignedPackage};

/// `bytes` with a custom section appended: a different, still valid component.
fn with_custom_section(bytes: &[u8], text: &str) -> Vec<u8> {
    let name = b"healthcloud-test";
    let payload_len = 1 + name.len() + text.len();
    assert!(payload_len < 128 && text.len() < 128);
    let mut out = bytes.to_vec();
    out.extend([0, payload_len as u8, name.len() as u8]);
    out.extend_from_slice(name);
    out.extend_from_slice(text.as_bytes());
    out
}

fn hello() -> (Manifest, Vec<u8>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let built = healthcloud_guestbuild::build_for_tests(root, "example-apps");
    let manifest = std::fs::read_to_string(root.join("example-apps/hello/healthcloud.toml"));
    (
        Manifest::parse(&manifest.unwrap()).unwrap(),
        std::fs::read(&built["hello"]).unwrap(),
    )
}

async fn publish(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    signed: &SignedPackage,
    component: Vec<u8>,
) -> reqwest::Result<reqwest::Response> {
    use reqwest::multipart::{Form, Part};
    let form = Form::new()
        .part("package", Part::text(signed.to_json()))
        .part("component", Part::bytes(component).file_name("app.wasm"));
    client
        .post(format!("{url}/store/v1/packages"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
}

fn files_in(dir: PathBuf) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_publish_killed_at_any_step_leaves_the_version_absent_or_complete_on_sqlite() {
    killed_at_every_step(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_publish_killed_at_any_step_leaves_the_version_absent_or_complete_on_postgres() {
    let Some(url) = healthcloud_platform::testing::postgres_database("hc_crash_test").await else {
        return;
    };
    killed_at_every_step(Some(&url)).await;
}

async fn killed_at_every_step(database_url: Option<&str>) {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path();
    let port = free_port();
    let start = |pause_at| Up::start_on(data_dir, database_url, port, pause_at);
    // First start: data, the demo publisher and its key, the example apps.
    start(None).kill();
    let key = SecretKey::read(&data_dir.join("examples-publisher.key")).unwrap();
    let token = succeed(&[
        "token",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--role",
        "publisher",
        "--sub",
        "examples",
    ]);
    let token = token.trim().to_owned();
    let (manifest, hello) = hello();
    let client = reqwest::Client::new();
    let blobs = data_dir.join("store/blobs");

    let steps = [
        "uploading",
        "uploaded",
        "validated",
        "placed",
        "recorded",
        "committed",
    ];
    for (index, step) in steps.into_iter().enumerate() {
        let mut manifest = manifest.clone();
        manifest.app.version = format!("0.{}.0", index + 2).parse().unwrap();
        let component = with_custom_section(&hello, step);
        let signed = Package::new(&manifest, &component).sign(&key);
        let sha256 = signed.package.component.sha256.clone();

        let up = start(Some(step));
        let request = tokio::spawn({
            let (client, url, token) = (client.clone(), up.url.clone(), token.clone());
            let (signed, component) = (signed.clone(), component.clone());
            async move { publish(&client, &url, &token, &signed, component).await }
        });
        let up = tokio::task::spawn_blocking(move || {
            up.wait_for_line(&format!("publish paused at step '{step}'"));
            up
        })
        .await
        .unwrap();
        up.kill();
        assert!(
            request.await.unwrap().is_err(),
            "{step}: the publish never answered"
        );

        let up = start(None);
        assert!(
            files_in(blobs.join("tmp")).is_empty(),
            "{step}: temporaries survived a restart"
        );
        let version_url = format!(
            "{}/store/v1/apps/examples/hello/versions/{}",
            up.url, manifest.app.version
        );
        let answer = client.get(&version_url).send().await.unwrap();
        let committed = step == "committed";
        if committed {
            assert_eq!(
                answer.status(),
                200,
                "{step}: the committed version is there"
            );
            let version: serde_json::Value = answer.json().await.unwrap();
            let stored: SignedPackage = serde_json::from_value(version["signed"].clone()).unwrap();
            assert_eq!(stored.verify().unwrap(), key.public());
            let bytes = client
                .get(format!("{version_url}/component"))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            stored.check_component(&bytes).unwrap();
        } else {
            assert_eq!(
                answer.status(),
                404,
                "{step}: an uncommitted version is absent"
            );
            assert!(
                !files_in(blobs.join("sha256")).contains(&sha256),
                "{step}: the uncommitted component was left in storage"
            );
        }
        // The vendor simply publishes again.
        let again = publish(&client, &up.url, &token, &signed, component)
            .await
            .unwrap();
        let expected = if committed { 200 } else { 201 };
        assert_eq!(
            again.status(),
            expected,
            "{step}: {}",
            again.text().await.unwrap()
        );
        up.kill();
    }
}
