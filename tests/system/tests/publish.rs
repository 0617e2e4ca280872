//! Publishing, from the attacker's side: every way to slip in altered, replayed, unsigned,
//! older or oversized content is refused, and nothing of a refused upload stays on disk.
//! Each test runs on SQLite and on PostgreSQL.

mod common;

use axum::body::Body;
use std::sync::Arc;

use common::{BACKENDS, StoreHost, example_app, hello_as, sign};
use healthcloud_package::keys::{PublicKey, SecretKey};
use healthcloud_package::package::{SignedPackage, SignedVersionRecord};
use serde_json::json;

/// A store with publisher `acme` (key returned) registered.
async fn with_acme(backend: common::Backend) -> Option<(StoreHost, SecretKey)> {
    let host = StoreHost::on(backend).await?;
    let key = SecretKey::generate();
    assert_eq!(host.register("acme", &key).await.status, 201);
    Some((host, key))
}

fn assert_nothing_left(host: &StoreHost) {
    let (temporaries, blobs) = host.files();
    assert!(temporaries.is_empty(), "temporaries left: {temporaries:?}");
    assert!(blobs.is_empty(), "blobs left: {blobs:?}");
}

#[tokio::test]
async fn a_signed_package_is_published_once_and_downloads_as_signed() {
    for backend in BACKENDS {
        let Some((host, key)) = with_acme(backend).await else {
            continue;
        };
        let (manifest, component) = hello_as("acme", "hello", "1.0.0");
        let signed = sign(&manifest, &component, &key);
        let first = host.publish(&signed, &component).await;
        assert_eq!(first.status, 201, "{}", first.text());
        assert_eq!(first.json()["key_id"], key.public().id().to_string());

        let again = host.publish(&signed, &component).await;
        assert_eq!(
            again.status,
            200,
            "identical re-publish is a no-op: {}",
            again.text()
        );
        assert_eq!(again.json()["published_at"], first.json()["published_at"]);

        let download = host
            .get("/store/v1/apps/acme/hello/versions/1.0.0/component")
            .await;
        assert_eq!(download.status, 200);
        assert_eq!(download.body, component);
        assert_eq!(
            download.headers["healthcloud-component-sha256"],
            signed.package.component.sha256.as_str()
        );
        let version = host
            .get("/store/v1/apps/acme/hello/versions/1.0.0")
            .await
            .json();
        assert_eq!(version["signature"], "valid");
        let stored: healthcloud_package::package::SignedPackage =
            serde_json::from_value(version["signed"].clone()).unwrap();
        assert_eq!(stored.verify().unwrap(), key.public());
        stored.check_component(&download.body).unwrap();
        // The store's signed word that the key is acme's, for exactly this package.
        let record: SignedVersionRecord =
            serde_json::from_value(version["record"].clone()).unwrap();
        record
            .vouches_for(&host.store.feed_key(), &stored, chrono::Utc::now())
            .unwrap();
        assert_eq!(record.record.key_id, key.public().id());
    }
}

#[tokio::test]
async fn altered_bytes_or_manifest_and_replayed_signatures_are_refused() {
    for backend in BACKENDS {
        let Some((host, key)) = with_acme(backend).await else {
            continue;
        };
        let (manifest, component) = hello_as("acme", "hello", "1.0.0");
        let signed = sign(&manifest, &component, &key);

        let mut flipped = component.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 1;
        let answer = host.publish(&signed, &flipped).await;
        assert_eq!(answer.status, 400, "{}", answer.text());
        assert!(
            answer.error().contains("not the one that was signed"),
            "{}",
            answer.error()
        );

        let mut altered = signed.clone();
        altered.package.app.description = "Now also reads everything.".into();
        let answer = host.publish(&altered, &component).await;
        assert_eq!(answer.status, 403, "{}", answer.text());
        assert!(
            answer.error().contains("does not verify"),
            "{}",
            answer.error()
        );

        // The same signature moved onto another id, version, or a larger capability set.
        let mut other_id = signed.clone();
        other_id.package.app.id = "hello-pro".into();
        let mut other_version = signed.clone();
        other_version.package.app.version = "2.0.0".parse().unwrap();
        let mut more_capabilities = signed.clone();
        more_capabilities.package.requested.push(
            healthcloud_package::manifest::RequestedCapability {
                name: "patient/*.rs".into(),
                justification: "everything".into(),
            },
        );
        for replayed in [other_id, other_version, more_capabilities] {
            let answer = host.publish(&replayed, &component).await;
            assert_eq!(answer.status, 403, "{}", answer.text());
        }
        assert_nothing_left(&host);
        assert_eq!(host.get("/store/v1/apps/acme/hello").await.status, 404);
    }
}

#[tokio::test]
async fn keys_must_be_the_publishers_own_active_strong_keys() {
    for backend in BACKENDS {
        let Some((host, acme_key)) = with_acme(backend).await else {
            continue;
        };
        let (manifest, component) = hello_as("acme", "hello", "1.0.0");

        let unknown = SecretKey::generate();
        let answer = host
            .publish(&sign(&manifest, &component, &unknown), &component)
            .await;
        assert_eq!(answer.status, 403);
        assert!(
            answer.error().contains("not registered"),
            "{}",
            answer.error()
        );

        let rival_key = SecretKey::generate();
        assert_eq!(host.register("rival", &rival_key).await.status, 201);
        let answer = host
            .publish(&sign(&manifest, &component, &rival_key), &component)
            .await;
        assert_eq!(answer.status, 403);
        assert!(
            answer.error().contains("belongs to publisher 'rival'"),
            "{}",
            answer.error()
        );

        // A rival's token cannot publish into acme's namespace, even with acme's signature.
        let signed = sign(&manifest, &component, &acme_key);
        let answer = host.publish_as("rival", &signed, &component).await;
        assert_eq!(answer.status, 403);
        assert!(answer.error().contains("namespace"), "{}", answer.error());

        // A small-order key: refused as a signature and at registration.
        let mut weak = signed.clone();
        let mut identity = [0u8; 32];
        identity[0] = 1;
        use base64::Engine as _;
        weak.signature.public_key = base64::engine::general_purpose::STANDARD.encode(identity);
        let answer = host.publish(&weak, &component).await;
        assert_eq!(answer.status, 403);
        assert!(answer.error().contains("weak"), "{}", answer.error());

        // A revoked key.
        let old = SecretKey::generate();
        add_key(&host, "acme", &old, &acme_key).await;
        let revoke = host
            .post_json(
                &format!(
                    "/store/v1/publishers/acme/keys/{}/revoke",
                    old.public().id()
                ),
                &host.publisher_token("acme"),
                &json!({"reason": "laptop stolen"}),
            )
            .await;
        assert_eq!(revoke.status, 200, "{}", revoke.text());
        let answer = host
            .publish(&sign(&manifest, &component, &old), &component)
            .await;
        assert_eq!(answer.status, 403);
        assert!(answer.error().contains("revoked"), "{}", answer.error());

        assert_nothing_left(&host);
        let answer = host.publish(&signed, &component).await;
        assert_eq!(
            answer.status,
            201,
            "the active key still publishes: {}",
            answer.text()
        );
    }
}

async fn add_key(host: &StoreHost, publisher: &str, new: &SecretKey, current: &SecretKey) {
    use healthcloud_package::keys::Purpose;
    let message = healthcloud_package::keys::endorsement_message(publisher, &new.public().id());
    let answer = host
        .post_json(
            &format!("/store/v1/publishers/{publisher}/keys"),
            &host.publisher_token(publisher),
            &json!({"key": new.public().to_pem(), "endorsement": {
                "key_id": current.public().id(), "signature": current.sign(Purpose::AddKey, &message)}}),
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.text());
}

#[tokio::test]
async fn a_new_key_needs_an_endorsement_by_a_current_one() {
    for backend in BACKENDS {
        let Some((host, key)) = with_acme(backend).await else {
            continue;
        };
        let new = SecretKey::generate();
        let unendorsed = host
            .post_json(
                "/store/v1/publishers/acme/keys",
                &host.publisher_token("acme"),
                &json!({"key": new.public().to_pem()}),
            )
            .await;
        assert_eq!(unendorsed.status, 400);
        let stranger = SecretKey::generate();
        let forged = host
            .post_json(
                "/store/v1/publishers/acme/keys",
                &host.publisher_token("acme"),
                &json!({"key": new.public().to_pem(), "endorsement": {
                    "key_id": stranger.public().id(), "signature": stranger.sign(
                        healthcloud_package::keys::Purpose::AddKey, b"{}")}}),
            )
            .await;
        assert_eq!(forged.status, 403, "{}", forged.text());
        // Another publisher cannot add or revoke acme's keys, even with acme's endorsement.
        let rival = SecretKey::generate();
        assert_eq!(host.register("rival", &rival).await.status, 201);
        let message = healthcloud_package::keys::endorsement_message("acme", &new.public().id());
        let endorsed = json!({"key": new.public().to_pem(), "endorsement": {
            "key_id": key.public().id(),
            "signature": key.sign(healthcloud_package::keys::Purpose::AddKey, &message)}});
        let by_rival = host
            .post_json(
                "/store/v1/publishers/acme/keys",
                &host.publisher_token("rival"),
                &endorsed,
            )
            .await;
        assert_eq!(by_rival.status, 403, "{}", by_rival.text());
        let revoke = format!(
            "/store/v1/publishers/acme/keys/{}/revoke",
            key.public().id()
        );
        let by_rival = host
            .post_json(&revoke, &host.publisher_token("rival"), &json!({}))
            .await;
        assert_eq!(by_rival.status, 403, "{}", by_rival.text());
        let keys = host.get("/store/v1/publishers/acme").await.json()["keys"].clone();
        assert_eq!(keys.as_array().unwrap().len(), 1);
        assert_eq!(keys[0]["status"], "active");

        add_key(&host, "acme", &new, &key).await;
        // A store admin may add a key without an endorsement: recovery when every key is lost.
        let recovery = SecretKey::generate();
        let by_admin = host
            .post_json(
                "/store/v1/publishers/acme/keys",
                &host.admin(),
                &json!({"key": recovery.public().to_pem()}),
            )
            .await;
        assert_eq!(by_admin.status, 201, "{}", by_admin.text());
        let keys = host.get("/store/v1/publishers/acme").await.json()["keys"].clone();
        assert_eq!(keys.as_array().unwrap().len(), 3);
    }
}

#[tokio::test]
async fn a_key_compromised_since_t_voids_only_what_was_published_from_t() {
    for backend in BACKENDS {
        let Some((host, key)) = with_acme(backend).await else {
            continue;
        };
        let (v1, component) = hello_as("acme", "hello", "1.0.0");
        assert_eq!(
            host.publish(&sign(&v1, &component, &key), &component)
                .await
                .status,
            201
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let since = chrono::Utc::now();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let (v2, _) = hello_as("acme", "hello", "1.1.0");
        assert_eq!(
            host.publish(&sign(&v2, &component, &key), &component)
                .await
                .status,
            201
        );

        let revoke = host
            .post_json(
                &format!(
                    "/store/v1/publishers/acme/keys/{}/revoke",
                    key.public().id()
                ),
                &host.admin(),
                &json!({"compromised_since": since.to_rfc3339(), "reason": "key leaked"}),
            )
            .await;
        assert_eq!(revoke.status, 200, "{}", revoke.text());

        let detail = host.get("/store/v1/apps/acme/hello").await.json();
        let status = |version: &str| {
            detail["versions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["version"] == version)
                .unwrap()
                .clone()
        };
        assert_eq!(status("1.0.0")["signature"], "valid");
        assert!(status("1.0.0").get("revoked").is_none());
        assert!(
            status("1.1.0")["signature"]
                .as_str()
                .unwrap()
                .contains("compromised")
        );
        assert!(
            status("1.1.0")["revoked"]["reason"]
                .as_str()
                .unwrap()
                .contains("key leaked")
        );
        assert_eq!(
            host.get("/store/v1/apps/acme/hello/versions/1.1.0/component")
                .await
                .status,
            410
        );
        // The store vouches for the key only where it still stands.
        let answer = |version: &str| {
            let host = &host;
            let path = format!("/store/v1/apps/acme/hello/versions/{version}");
            async move { host.get(&path).await.json() }
        };
        let before = answer("1.0.0").await;
        let record: SignedVersionRecord = serde_json::from_value(before["record"].clone()).unwrap();
        let stored: SignedPackage = serde_json::from_value(before["signed"].clone()).unwrap();
        record
            .vouches_for(&host.store.feed_key(), &stored, chrono::Utc::now())
            .unwrap();
        assert!(answer("1.1.0").await.get("record").is_none());

        let (v3, _) = hello_as("acme", "hello", "1.2.0");
        let answer = host.publish(&sign(&v3, &component, &key), &component).await;
        assert_eq!(answer.status, 403);
        assert!(
            answer.error().contains("compromised since"),
            "{}",
            answer.error()
        );
    }
}

#[tokio::test]
async fn versions_are_immutable_and_only_go_up() {
    for backend in BACKENDS {
        let Some((host, key)) = with_acme(backend).await else {
            continue;
        };
        let (manifest, component) = hello_as("acme", "hello", "1.2.0");
        assert_eq!(
            host.publish(&sign(&manifest, &component, &key), &component)
                .await
                .status,
            201
        );

        let (other_manifest, other) = example_app("bp-monitor");
        let mut same_version = other_manifest.clone();
        same_version.app.publisher = "acme".into();
        same_version.app.id = "hello".into();
        same_version.app.version = "1.2.0".parse().unwrap();
        let answer = host
            .publish(&sign(&same_version, &other, &key), &other)
            .await;
        assert_eq!(answer.status, 409);
        assert_eq!(
            answer.error(),
            "version 1.2.0 of acme/hello is already published with different content: bump the version"
        );

        let (lower, _) = hello_as("acme", "hello", "1.1.9");
        let answer = host
            .publish(&sign(&lower, &component, &key), &component)
            .await;
        assert_eq!(answer.status, 409);
        assert!(
            answer
                .error()
                .contains("lower than the latest published version 1.2.0"),
            "{}",
            answer.error()
        );

        let download = host
            .get("/store/v1/apps/acme/hello/versions/1.2.0/component")
            .await;
        assert_eq!(download.body, component, "the first content stays");
    }
}

#[tokio::test]
async fn oversized_uploads_get_413_and_leave_nothing_on_disk() {
    for backend in BACKENDS {
        let limits = healthcloud_store::service::StoreLimits {
            max_component_bytes: 64 * 1024,
            ..Default::default()
        };
        let Some(host) = StoreHost::with_limits(backend, limits).await else {
            continue;
        };
        let key = SecretKey::generate();
        assert_eq!(host.register("acme", &key).await.status, 201);
        let (manifest, component) = hello_as("acme", "hello", "1.0.0");
        assert!(
            component.len() > 64 * 1024,
            "hello is larger than the test cap"
        );

        let answer = host
            .publish(&sign(&manifest, &component, &key), &component)
            .await;
        assert_eq!(answer.status, 413, "{}", answer.text());

        // A package that declares a small component, followed by an endless stream: the store
        // stops reading at the declared size, without buffering the rest.
        let small = b"\0asm\x0d\0\x01\0".to_vec();
        let signed = sign(&manifest, &small, &key);
        let pulled = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = pulled.clone();
        // Like a socket, the stream is not always ready.
        let endless = futures_util::stream::unfold(counter, |counter| async move {
            tokio::task::yield_now().await;
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let chunk = axum::body::Bytes::from(vec![0u8; 64 * 1024]);
            Some((Ok::<_, std::io::Error>(chunk), counter))
        });
        let answer = host
            .publish_raw(
                &host.publisher_token("acme"),
                signed.to_json().as_bytes(),
                Body::from_stream(endless),
            )
            .await;
        assert_eq!(answer.status, 413, "{}", answer.text());
        let pulled = pulled.load(std::sync::atomic::Ordering::SeqCst);
        // What the store reads is bounded by its body limit (cap + envelope + 64 KiB = 384 KiB
        // here), never the whole stream.
        assert!(
            pulled <= 7,
            "the store read {pulled} chunks of 64 KiB of an endless upload"
        );
        assert_nothing_left(&host);
    }
}

/// An edit of a package envelope's JSON.
type Change = dyn Fn(&mut serde_json::Value);

#[tokio::test]
async fn malformed_manifests_get_400_naming_the_field() {
    for backend in BACKENDS {
        let Some((host, key)) = with_acme(backend).await else {
            continue;
        };
        let (manifest, component) = hello_as("acme", "hello", "1.0.0");
        let signed = sign(&manifest, &component, &key);
        let mut json = serde_json::to_value(&signed).unwrap();
        let token = host.publisher_token("acme");
        let cases: Vec<(&str, Box<Change>)> = vec![
            (
                "package.app.version",
                Box::new(|j| j["package"]["app"]["version"] = "1.x".into()),
            ),
            (
                "package.app.audience",
                Box::new(|j| j["package"]["app"]["audience"] = json!([])),
            ),
            (
                "package.app.publisher",
                Box::new(|j| j["package"]["app"]["publisher"] = "../../etc".into()),
            ),
            // A look-alike: Cyrillic 'е' in "hello".
            (
                "package.app.id",
                Box::new(|j| j["package"]["app"]["id"] = "h\u{0435}llo".into()),
            ),
            (
                "package.app.id",
                Box::new(|j| j["package"]["app"]["id"] = "hello/../../x".into()),
            ),
            (
                "package.capability[0].name",
                Box::new(|j| {
                    j["package"]["capability"] =
                        json!([{"name": "patient/Observation.zz", "justification": "x"}])
                }),
            ),
            (
                "package.component.sha256",
                Box::new(|j| j["package"]["component"]["sha256"] = "../../../etc/passwd".into()),
            ),
        ];
        for (field, change) in &cases {
            let mut bad = json.clone();
            change(&mut bad);
            let answer = host
                .publish_raw(
                    &token,
                    bad.to_string().as_bytes(),
                    Body::from(common::multipart_tail(&component)),
                )
                .await;
            assert_eq!(answer.status, 400, "{field}: {}", answer.text());
            assert_eq!(answer.json()["field"], *field, "{}", answer.text());
        }
        json["package"] = json!("not a package");
        let answer = host
            .publish_raw(
                &token,
                json.to_string().as_bytes(),
                Body::from(common::multipart_tail(&component)),
            )
            .await;
        assert_eq!(answer.status, 400);
        assert_nothing_left(&host);
    }
}

#[tokio::test]
async fn a_component_that_would_not_install_is_refused() {
    for backend in BACKENDS {
        let Some((host, key)) = with_acme(backend).await else {
            continue;
        };
        // bp-monitor's component imports healthcloud:platform/fhir; hello's manifest requests no data.
        let (_, bp) = example_app("bp-monitor");
        let (manifest, _) = hello_as("acme", "hello", "1.0.0");
        let answer = host.publish(&sign(&manifest, &bp, &key), &bp).await;
        assert_eq!(answer.status, 422, "{}", answer.text());
        assert!(
            answer.error().contains("healthcloud:platform/fhir"),
            "{}",
            answer.error()
        );
        let core_module = b"\0asm\x01\0\0\0".to_vec();
        let answer = host
            .publish(&sign(&manifest, &core_module, &key), &core_module)
            .await;
        assert_eq!(answer.status, 422, "{}", answer.text());
        assert!(
            answer.error().contains("core WebAssembly module"),
            "{}",
            answer.error()
        );
        assert_nothing_left(&host);
    }
}

#[tokio::test]
async fn two_concurrent_publishes_of_one_version_have_one_winner() {
    for backend in BACKENDS {
        // Both publishes pass every early check and are held after their upload until the
        // other is there too, so they meet at the commit.
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let gate = barrier.clone();
        let limits = healthcloud_store::service::StoreLimits::default();
        let Some(host) = StoreHost::with_gate(
            backend,
            limits,
            Arc::new(move || {
                gate.wait();
            }),
        )
        .await
        else {
            continue;
        };
        let key = SecretKey::generate();
        assert_eq!(host.register("acme", &key).await.status, 201);
        let (manifest, component) = hello_as("acme", "hello", "3.0.0");
        let (mut other_manifest, other) = example_app("patient-summary");
        other_manifest.app.publisher = "acme".into();
        other_manifest.app.id = "hello".into();
        other_manifest.app.version = "3.0.0".parse().unwrap();
        let first = sign(&manifest, &component, &key);
        let second = sign(&other_manifest, &other, &key);
        let (a, b) = tokio::join!(
            host.publish(&first, &component),
            host.publish(&second, &other)
        );
        let mut statuses = [a.status.as_u16(), b.status.as_u16()];
        statuses.sort();
        assert_eq!(statuses, [201, 409], "{} / {}", a.text(), b.text());
        let loser = if a.status == 409 { &a } else { &b };
        assert!(
            loser
                .error()
                .contains("already published with different content"),
            "{}",
            loser.error()
        );
        let winner = if a.status == 201 { &component } else { &other };
        let download = host
            .get("/store/v1/apps/acme/hello/versions/3.0.0/component")
            .await;
        assert_eq!(&download.body, winner);
        let (temporaries, blobs) = host.files();
        assert!(temporaries.is_empty());
        assert_eq!(blobs.len(), 1, "only the winner's component is stored");
    }
}

#[tokio::test]
async fn a_key_revoked_during_an_upload_publishes_nothing() {
    for backend in BACKENDS {
        // The publish is held after its upload (its key was fine then) until the key is revoked.
        let (held, release) = (
            Arc::new(tokio::sync::Notify::new()),
            Arc::new(std::sync::Barrier::new(2)),
        );
        let (notify, wait) = (held.clone(), release.clone());
        let limits = healthcloud_store::service::StoreLimits::default();
        let Some(host) = StoreHost::with_gate(
            backend,
            limits,
            Arc::new(move || {
                notify.notify_one();
                wait.wait();
            }),
        )
        .await
        else {
            continue;
        };
        let key = SecretKey::generate();
        assert_eq!(host.register("acme", &key).await.status, 201);
        let (manifest, component) = hello_as("acme", "hello", "1.0.0");
        let signed = sign(&manifest, &component, &key);
        let publish = host.publish(&signed, &component);
        let revoke = async {
            held.notified().await;
            let answer = host
                .post_json(
                    &format!(
                        "/store/v1/publishers/acme/keys/{}/revoke",
                        key.public().id()
                    ),
                    &host.admin(),
                    &json!({"reason": "stolen"}),
                )
                .await;
            release.wait();
            answer
        };
        let (published, revoked) = tokio::join!(publish, revoke);
        assert_eq!(revoked.status, 200, "{}", revoked.text());
        assert_eq!(published.status, 403, "{}", published.text());
        assert!(
            published.error().contains("revoked"),
            "{}",
            published.error()
        );
        assert_eq!(
            host.get("/store/v1/apps/acme/hello/versions/1.0.0")
                .await
                .status,
            404
        );
        assert_nothing_left(&host);
    }
}

#[tokio::test]
async fn a_revoked_version_cannot_be_published_again_and_a_compromise_is_never_in_the_future() {
    for backend in BACKENDS {
        let Some((host, key)) = with_acme(backend).await else {
            continue;
        };
        let (manifest, component) = hello_as("acme", "hello", "1.0.0");
        let signed = sign(&manifest, &component, &key);
        assert_eq!(host.publish(&signed, &component).await.status, 201);
        let revoke = host
            .post_json(
                "/store/v1/apps/acme/hello/versions/1.0.0/revoke",
                &host.admin(),
                &json!({"reason": "unsafe"}),
            )
            .await;
        assert_eq!(revoke.status, 200);
        let again = host.publish(&signed, &component).await;
        assert_eq!(again.status, 409, "{}", again.text());
        assert!(
            again.error().contains("was revoked")
                && again.error().contains("publish a new version"),
            "{}",
            again.error()
        );

        let future = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
        let answer = host
            .post_json(
                &format!(
                    "/store/v1/publishers/acme/keys/{}/revoke",
                    key.public().id()
                ),
                &host.admin(),
                &json!({"compromised_since": future}),
            )
            .await;
        // Well formed, but not a time the key can have been exposed at.
        assert_eq!(answer.status, 422, "{}", answer.text());
        assert_eq!(answer.json()["field"], "compromised_since");
    }
}

#[tokio::test]
async fn paths_that_try_to_leave_the_store_find_nothing() {
    for backend in BACKENDS {
        let Some((host, key)) = with_acme(backend).await else {
            continue;
        };
        let (manifest, component) = hello_as("acme", "hello", "1.0.0");
        assert_eq!(
            host.publish(&sign(&manifest, &component, &key), &component)
                .await
                .status,
            201
        );
        for path in [
            "/store/v1/apps/acme/hello/versions/..%2F..%2F..%2Fstore.key/component",
            "/store/v1/apps/..%2F..%2F/hello/versions/1.0.0/component",
            "/store/v1/apps/acme/..%2Fhello/versions/1.0.0/component",
        ] {
            let answer = host.get(path).await;
            assert_eq!(answer.status, 404, "{path}: {}", answer.text());
        }
    }
}

#[tokio::test]
async fn a_publisher_name_with_terminal_escapes_or_a_key_off_the_curve_registers_nothing() {
    let host = StoreHost::on(common::Backend::Sqlite).await.unwrap();
    let key = SecretKey::generate().public().to_pem();
    // A display name that would clear the terminal of whoever lists publishers.
    for name in ["\u{1b}[2J\u{1b}[Hacme", "acme\r\nfake log line", "   "] {
        let answer = host
            .post_json(
                "/store/v1/publishers",
                &host.admin(),
                &json!({"id": "acme", "name": name, "key": key}),
            )
            .await;
        assert_eq!(answer.status, 400, "{name:?}: {}", answer.text());
        assert_eq!(answer.json()["field"], "name", "{}", answer.text());
    }
    // Shaped like an ed25519 PEM key (as the API documents it), but not a point on the curve
    // (or a weak one): well formed, not a key.
    let bytes = (2u8..)
        .map(|y| {
            let mut bytes = [0u8; 32];
            bytes[0] = y;
            bytes
        })
        .find(|bytes| PublicKey::from_bytes(bytes).is_err())
        .unwrap();
    let off_curve = format!(
        "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA{}\n-----END PUBLIC KEY-----\n",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes)
    );
    let answer = host
        .post_json(
            "/store/v1/publishers",
            &host.admin(),
            &json!({"id": "acme", "name": "Acme", "key": off_curve}),
        )
        .await;
    assert_eq!(answer.status, 422, "{}", answer.text());
    assert_eq!(answer.json()["field"], "key", "{}", answer.text());
    let answer = host
        .post_json(
            "/store/v1/publishers",
            &host.admin(),
            &json!({"id": "acme", "name": "Acme", "key": "ssh-ed25519 AAAA"}),
        )
        .await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert_eq!(answer.json()["field"], "key", "{}", answer.text());
    assert_eq!(host.get("/store/v1/publishers/acme").await.status, 404);
}

#[tokio::test]
async fn a_key_revocation_body_of_the_wrong_shape_is_a_json_400_and_revokes_nothing() {
    let Some((host, key)) = with_acme(common::Backend::Sqlite).await else {
        return;
    };
    let path = format!(
        "/store/v1/publishers/acme/keys/{}/revoke",
        key.public().id()
    );
    let answer = host
        .post_json(&path, &host.admin(), &json!({"reason": true}))
        .await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert!(answer.error().contains("openapi.json"), "{}", answer.text());
    let keys = host.get("/store/v1/publishers/acme").await.json();
    assert_eq!(keys["keys"][0]["status"], "active", "{keys}");
    // `null`, like no body at all, revokes everything the key signed.
    let answer = host.post_json(&path, &host.admin(), &json!(null)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["keys"][0]["status"], "revoked");
}
