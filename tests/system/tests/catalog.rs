//! The catalog and the revocation feed: search that treats every character literally, filters
//! and pages, who may yank and revoke, and a feed a runtime can trust (signed, in sequence,
//! expiring). Each test runs on SQLite and on PostgreSQL.

mod common;

use common::{BACKENDS, StoreHost, hello_as, sign};
use healthcloud_package::feed::SignedFeed;
use healthcloud_package::keys::SecretKey;
use serde_json::{Value, json};

/// A store where `acme` published apps with the given (id, name, audience) and, for
/// `notes`, the `kv` capability.
async fn catalog(backend: common::Backend) -> Option<(StoreHost, SecretKey)> {
    let host = StoreHost::on(backend).await?;
    let key = SecretKey::generate();
    assert_eq!(host.register("acme", &key).await.status, 201);
    for (id, name, audience) in [
        ("vitals", "Vitals 100% sure", vec!["clinician"]),
        ("under-score", "Under_score tool", vec!["patient"]),
        ("citizen-log", "Who read my record", vec!["citizen"]),
        ("notes", "Notes O'Brien", vec!["clinician", "patient"]),
    ] {
        let (mut manifest, component) = hello_as("acme", id, "1.0.0");
        manifest.app.name = name.into();
        manifest.app.audience = audience
            .iter()
            .map(|a| serde_json::from_value(json!(a)).unwrap())
            .collect();
        if id == "notes" {
            manifest
                .requested
                .push(healthcloud_package::manifest::RequestedCapability {
                    name: "kv".into(),
                    justification: "keeps notes".into(),
                });
        }
        let answer = host
            .publish(&sign(&manifest, &component, &key), &component)
            .await;
        assert_eq!(answer.status, 201, "{}", answer.text());
    }
    Some((host, key))
}

fn ids(list: &Value) -> Vec<String> {
    list["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn search(host: &StoreHost, query: &str) -> Value {
    let answer = host.get(&format!("/store/v1/apps?{query}")).await;
    assert_eq!(answer.status, 200, "{query}: {}", answer.text());
    answer.json()
}

#[tokio::test]
async fn search_matches_text_literally_including_sql_wildcards_and_quotes() {
    for backend in BACKENDS {
        let Some((host, _)) = catalog(backend).await else {
            continue;
        };
        assert_eq!(search(&host, "").await["total"], 4);
        assert_eq!(
            ids(&search(&host, "q=%25").await),
            ["vitals"],
            "% is a character"
        );
        assert_eq!(
            ids(&search(&host, "q=_").await),
            ["under-score"],
            "_ is a character"
        );
        assert_eq!(ids(&search(&host, "q=o%27brien").await), ["notes"]);
        assert_eq!(ids(&search(&host, "q=VITALS").await), ["vitals"]);
        for injection in [
            "%27%20OR%201%3D1%20--",
            "x%27%3B%20DROP%20TABLE%20store_apps%3B%20--",
            "%5C",
            "%25%25%25",
        ] {
            assert_eq!(
                search(&host, &format!("q={injection}")).await["total"],
                0,
                "{injection}"
            );
        }
        assert_eq!(search(&host, "").await["total"], 4, "nothing was dropped");
    }
}

#[tokio::test]
async fn audience_capability_and_pages_filter_the_catalog() {
    for backend in BACKENDS {
        let Some((host, _)) = catalog(backend).await else {
            continue;
        };
        assert_eq!(
            ids(&search(&host, "audience=citizen").await),
            ["citizen-log"]
        );
        assert_eq!(
            ids(&search(&host, "audience=patient").await),
            ["notes", "under-score"]
        );
        assert_eq!(ids(&search(&host, "capability=kv").await), ["notes"]);
        let bad = host.get("/store/v1/apps?audience=robot").await;
        assert_eq!(bad.status, 400);
        assert_eq!(bad.json()["field"], "audience");

        let first = search(&host, "per_page=3").await;
        let second = search(&host, "per_page=3&page=2").await;
        assert_eq!(first["total"], 4);
        assert_eq!(ids(&first).len(), 3);
        assert_eq!(ids(&second).len(), 1);
        assert!(!ids(&first).contains(&ids(&second)[0]));
    }
}

#[tokio::test]
async fn only_the_publisher_yanks_and_only_a_store_admin_revokes() {
    for backend in BACKENDS {
        let Some((host, key)) = catalog(backend).await else {
            continue;
        };
        let rival = SecretKey::generate();
        assert_eq!(host.register("rival", &rival).await.status, 201);
        let version = "/store/v1/apps/acme/vitals/versions/1.0.0";

        let yank = |token: String| {
            let host = &host;
            async move {
                host.post_json(&format!("{version}/yank"), &token, &json!({}))
                    .await
            }
        };
        assert_eq!(yank(host.publisher_token("rival")).await.status, 403);
        let yanked = yank(host.publisher_token("acme")).await;
        assert_eq!(yanked.status, 200, "{}", yanked.text());
        assert!(yanked.json()["yanked_at"].is_string());
        assert_eq!(
            host.get(&format!("{version}/component")).await.status,
            200,
            "yanked still downloads"
        );

        let revoke = |token: String, reason: &str| {
            let host = &host;
            let body = json!({"reason": reason});
            async move {
                host.post_json(&format!("{version}/revoke"), &token, &body)
                    .await
            }
        };
        assert_eq!(
            revoke(host.publisher_token("acme"), "mine").await.status,
            403
        );
        assert_eq!(revoke(host.admin(), " ").await.status, 400);
        let revoked = revoke(host.admin(), "sends data to the wrong place").await;
        assert_eq!(revoked.status, 200, "{}", revoked.text());
        let gone = host.get(&format!("{version}/component")).await;
        assert_eq!(gone.status, 410);
        assert!(
            gone.error().contains("sends data to the wrong place"),
            "{}",
            gone.error()
        );

        // Revoking twice records it once.
        assert_eq!(revoke(host.admin(), "again").await.status, 200);
        let feed: SignedFeed =
            serde_json::from_value(host.get("/store/v1/revocations").await.json()).unwrap();
        assert_eq!(feed.feed.entries.len(), 1);
        assert_eq!(feed.feed.entries[0].version.as_deref(), Some("1.0.0"));
        assert_eq!(
            feed.feed.entries[0].key_id.as_deref(),
            Some(key.public().id().as_str())
        );
    }
}

#[tokio::test]
async fn the_feed_is_signed_in_sequence_and_expires() {
    for backend in BACKENDS {
        let Some((host, key)) = catalog(backend).await else {
            continue;
        };
        for (app, reason) in [("vitals", "one"), ("notes", "two")] {
            let answer = host
                .post_json(
                    &format!("/store/v1/apps/acme/{app}/versions/1.0.0/revoke"),
                    &host.admin(),
                    &json!({"reason": reason}),
                )
                .await;
            assert_eq!(answer.status, 200);
        }
        let answer = host
            .post_json(
                &format!(
                    "/store/v1/publishers/acme/keys/{}/revoke",
                    key.public().id()
                ),
                &host.admin(),
                &json!({"reason": "three"}),
            )
            .await;
        assert_eq!(answer.status, 200);

        let feed: SignedFeed =
            serde_json::from_value(host.get("/store/v1/revocations").await.json()).unwrap();
        let now = chrono::Utc::now();
        feed.verify(&host.store.feed_key(), now).unwrap();
        let seqs: Vec<i64> = feed.feed.entries.iter().map(|e| e.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        let kinds: Vec<&str> = feed.feed.entries.iter().map(|e| e.kind.as_str()).collect();
        // Two versions, the key, then the two versions the key voids that were not revoked yet.
        assert_eq!(kinds, ["version", "version", "key", "version", "version"]);
        assert_eq!(feed.feed.next, *seqs.last().unwrap());

        let since = seqs[2];
        let rest: SignedFeed = serde_json::from_value(
            host.get(&format!("/store/v1/revocations?since={since}"))
                .await
                .json(),
        )
        .unwrap();
        assert_eq!(rest.feed.entries.len(), 2);
        assert!(rest.feed.entries.iter().all(|e| e.seq > since));

        // A frozen feed (replayed after its expiry) and a tampered one are not trusted.
        let later = now + chrono::Duration::minutes(6);
        assert!(
            feed.verify(&host.store.feed_key(), later)
                .unwrap_err()
                .to_string()
                .contains("expired")
        );
        let mut tampered = feed.clone();
        tampered.feed.entries.pop();
        assert!(tampered.verify(&host.store.feed_key(), now).is_err());
        let mut extended = feed.clone();
        extended.feed.expires_at = "2999-01-01T00:00:00Z".into();
        assert!(extended.verify(&host.store.feed_key(), later).is_err());
        let impostor = SecretKey::generate().public();
        assert!(feed.verify(&impostor, now).is_err());
    }
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let host = StoreHost::on(common::Backend::Sqlite).await.unwrap();
    let answer = host.get("/store/v1/openapi.json").await;
    assert_eq!(answer.status, 200);
    let document = answer.json();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let paths = document["paths"].as_object().unwrap();
    for path in [
        "/store/v1/publishers",
        "/store/v1/publishers/{publisher}/keys",
        "/store/v1/packages",
        "/store/v1/apps",
        "/store/v1/apps/{publisher}/{app}/versions/{version}/component",
        "/store/v1/apps/{publisher}/{app}/versions/{version}/revoke",
        "/store/v1/revocations",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from {:?}",
            paths.keys()
        );
    }
    // Every refusal is documented with the JSON error body, and every write names the bearer
    // scheme (so a checker can see that it refuses a missing or forged token).
    for (path, methods) in paths {
        for (method, operation) in methods.as_object().unwrap() {
            for (status, response) in operation["responses"].as_object().unwrap() {
                if status.starts_with('4') {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
            }
            if method == "post" {
                assert_eq!(
                    operation["security"][0]["bearer"],
                    json!([]),
                    "{method} {path}"
                );
                assert!(
                    operation["responses"]["401"].is_object(),
                    "{method} {path} does not document 401"
                );
            }
        }
    }
    // Query parameters are in the query, and optional.
    let list = &paths["/store/v1/apps"]["get"]["parameters"];
    for parameter in list.as_array().unwrap() {
        assert_eq!(parameter["in"], "query", "{parameter}");
        assert_ne!(parameter["required"], true, "{parameter}");
    }
}

#[tokio::test]
async fn catalog_parameters_outside_the_documented_range_are_refused_not_clamped() {
    let host = StoreHost::on(common::Backend::Sqlite).await.unwrap();
    for (query, field) in [
        ("per_page=1000", "per_page"),
        ("per_page=0", "per_page"),
        ("page=0", "page"),
        ("audience=", "audience"),
        ("q=a%20b%20c%20d%20e%20f%20g%20h%20i", "q"),
    ] {
        let answer = host.get(&format!("/store/v1/apps?{query}")).await;
        assert_eq!(answer.status, 400, "{query}: {}", answer.text());
        assert_eq!(answer.json()["field"], field, "{query}: {}", answer.text());
    }
    let answer = host.get("/store/v1/revocations?since=-1").await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert_eq!(answer.json()["field"], "since");
    // Eight words (tabs and line breaks separate words too) and 100 per page are allowed.
    for query in ["q=a%09b%0Ac%20d%20e%20f%20g%20h", "per_page=100", "page=7"] {
        let answer = host.get(&format!("/store/v1/apps?{query}")).await;
        assert_eq!(answer.status, 200, "{query}: {}", answer.text());
    }
}

#[tokio::test]
async fn malformed_json_bodies_get_a_json_error_naming_the_fix() {
    let host = StoreHost::on(common::Backend::Sqlite).await.unwrap();
    let answer = host
        .send(
            axum::http::Request::post("/store/v1/publishers")
                .header("authorization", format!("Bearer {}", host.admin()))
                .header("content-type", "application/json")
                .body(axum::body::Body::from("{\"id\": \"acme\""))
                .unwrap(),
        )
        .await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert!(
        answer.error().contains("openapi.json"),
        "{}",
        answer.error()
    );
    let answer = host.get("/store/v1/revocations?since=yesterday").await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert!(
        answer.error().contains("openapi.json"),
        "{}",
        answer.error()
    );
}

/// The store client reads what the catalog answers, page by page and app by app (as the
/// store admin page does), over HTTP.
#[tokio::test]
async fn the_store_client_reads_catalog_pages_and_app_details() {
    use healthcloud_package::client::StoreClient;
    for backend in BACKENDS {
        let Some((host, _)) = catalog(backend).await else {
            continue;
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(axum::serve(listener, host.app.clone()).into_future());
        let client = StoreClient::new(&url, None).unwrap();

        let first = client.apps(1, 3).await.unwrap();
        let second = client.apps(2, 3).await.unwrap();
        assert_eq!((first.total, first.page, first.per_page), (4, 1, 3));
        assert_eq!((first.apps.len(), second.apps.len()), (3, 1));

        let notes = client.app("acme", "notes").await.unwrap();
        assert_eq!(notes.summary.name, "Notes O'Brien");
        assert_eq!(notes.capabilities[0].name, "kv");
        assert_eq!(notes.versions.len(), 1);
        assert_eq!(notes.versions[0].version, "1.0.0");
        assert_eq!(notes.versions[0].signature, "valid");

        let missing = client.app("acme", "nothing").await.unwrap_err();
        assert_eq!(missing.status(), Some(axum::http::StatusCode::NOT_FOUND));
        server.abort();
    }
}
