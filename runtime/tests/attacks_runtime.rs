//! Attacks on the app runtime, from the attacker's side: a hostile app writing to the host
//! log without the grant, setting headers for the whole origin it shares with the platform,
//! redirecting users away; a page on another port posting with a user's launch cookie; an app
//! answering from memory after the patient opted out; a write that outlives its time limit.
//! Each case names the attack and asserts the status, the message, and that nothing leaked or
//! was written.

use healthcloud_runtime::testing as common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{Answer, Backend, Host, REGION, test_component, test_limits};
use healthcloud_integration::policy::AccessContext;
use healthcloud_platform::auth::Role;
use healthcloud_runtime::Limits;
use healthcloud_runtime::serve::LAUNCH_COOKIE;
use sqlx::Row;

/// Everything the host logs (info and above), from every thread of this test binary.
fn host_log() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let writer = log.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || Capture(writer.clone()))
            .init();
        log
    })
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logged(marker: &str) -> bool {
    String::from_utf8_lossy(&host_log().lock().unwrap()).contains(marker)
}

fn marker() -> String {
    format!("marker{:016x}", rand::random::<u64>())
}

fn app_path(app: &str, rest: &str) -> String {
    format!("/apps/{REGION}/tests/{app}/{rest}")
}

// ---- The host log (guest stdout/stderr) ----

#[tokio::test]
async fn an_app_without_the_log_grant_writes_to_the_host_log_through_stdout() {
    host_log();
    let host = Host::new().await;
    let (manifest, bytes) = test_component("stdout-leak");
    let token = host.clinician("pat-a");
    let print = |app: &'static str, marker: String| {
        let (host, token) = (&host, &token);
        async move {
            let answer = host
                .get(&app_path(app, &format!("print?marker={marker}")), token)
                .await;
            assert_eq!(
                (answer.status, answer.body.as_str()),
                (StatusCode::OK, "printed")
            );
        }
    };

    // Requested and granted: the control, so the capture is known to see guest output.
    let granted = host.install_component("stdout-leak", None).unwrap();
    let seen = marker();
    print("stdout-leak", seen.clone()).await;
    assert!(
        logged(&format!("stdout-leak stdout {seen}")),
        "the control line is missing"
    );
    assert!(logged(&format!("stdout-leak stderr {seen}")));

    // The region takes the grant back: the very next write is dropped.
    granted.grant.replace(Vec::new());
    let revoked = marker();
    print("stdout-leak", revoked.clone()).await;

    // Requested, never granted.
    let not_granted = manifest.replace("id = \"stdout-leak\"", "id = \"stdout-ungranted\"");
    host.install(REGION, &not_granted, &bytes, Some(&[]))
        .unwrap();
    let ungranted = marker();
    print("stdout-ungranted", ungranted.clone()).await;

    // Not even requested.
    let unrequested = not_granted
        .replace("id = \"stdout-ungranted\"", "id = \"stdout-unrequested\"")
        .split("[[capability]]")
        .next()
        .unwrap()
        .to_owned();
    host.install(REGION, &unrequested, &bytes, None).unwrap();
    let silent = marker();
    print("stdout-unrequested", silent.clone()).await;

    // A later granted line is there, so the earlier ones had their chance to arrive.
    let later = marker();
    host.install(
        REGION,
        &manifest.replace("id = \"stdout-leak\"", "id = \"stdout-later\""),
        &bytes,
        None,
    )
    .unwrap();
    print("stdout-later", later.clone()).await;
    assert!(logged(&later));
    for leaked in [revoked, ungranted, silent] {
        assert!(
            !logged(&leaked),
            "{leaked} reached the host log without the log grant"
        );
    }
}

// ---- Response headers on the shared origin ----

#[tokio::test]
async fn an_app_sets_origin_wide_headers_on_the_platforms_origin() {
    let host = Host::new().await;
    host.install_component("hostile-headers", None).unwrap();
    let answer = host
        .get(
            &app_path("hostile-headers", "headers"),
            &host.clinician("pat-a"),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body, "<p>hostile headers</p>");
    for dropped in [
        "clear-site-data",
        "strict-transport-security",
        "set-cookie",
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "refresh",
        "x-hostile",
    ] {
        assert!(
            answer.headers.get(dropped).is_none(),
            "{dropped} got through: {:?}",
            answer.headers
        );
    }
    assert_eq!(answer.headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(answer.headers["cache-control"], "private, no-store");
    assert_eq!(answer.headers["x-content-type-options"], "nosniff");
    assert_framed_only_by_the_platform(&answer);
}

/// The platform's framing policy holds whatever the app said: `X-Frame-Options: SAMEORIGIN`
/// and a CSP of the platform's own with `frame-ancestors 'self'` (browsers enforce every CSP
/// header, so the app's own `frame-ancestors *` loosens nothing).
fn assert_framed_only_by_the_platform(answer: &Answer) {
    assert_eq!(answer.headers["x-frame-options"], "SAMEORIGIN");
    let policies: Vec<&str> = answer
        .headers
        .get_all("content-security-policy")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(
        policies
            .iter()
            .any(|p| p.contains("frame-ancestors 'self'") && p.contains("sandbox")),
        "{policies:?}"
    );
}

#[tokio::test]
async fn another_site_frames_an_app_page() {
    let host = Host::new().await;
    host.install_component("trap", None).unwrap();
    let answer = host
        .get(&app_path("trap", "ok"), &host.clinician("pat-a"))
        .await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, "ok")
    );
    assert_framed_only_by_the_platform(&answer);
}

#[tokio::test]
async fn an_app_makes_patient_pages_cacheable() {
    let host = Host::new().await;
    host.install_component("hostile-headers", None).unwrap();
    let token = host.clinician("pat-a");
    for (asked, sent) in [
        ("public", "private, no-store"),
        ("public, max-age=31536000", "private, no-store"),
        ("max-age=600", "private, no-store"),
        ("private, max-age=600", "private, no-store"),
        ("no-cache", "private, no-store"),
        ("public, no-store", "private, no-store"),
        // Stricter or as strict: the app's own.
        ("no-store", "no-store"),
        (
            "private, no-store, max-age=0",
            "private, no-store, max-age=0",
        ),
    ] {
        let path = app_path("hostile-headers", &format!("cache?value={asked}"));
        let answer = host.get(&path.replace(' ', "%20"), &token).await;
        assert_eq!(answer.status, StatusCode::OK, "{asked}: {}", answer.body);
        let values: Vec<_> = answer.headers.get_all("cache-control").iter().collect();
        assert_eq!(values, [sent], "{asked}");
    }
}

#[tokio::test]
async fn an_app_redirects_users_off_its_own_pages() {
    let host = Host::new().await;
    host.install_component("hostile-headers", None).unwrap();
    let token = host.clinician("pat-a");
    let redirect = |to: &str| {
        let path = app_path("hostile-headers", "redirect");
        let to = form_urlencoded(to);
        let (host, token) = (&host, &token);
        async move { host.get(&format!("{path}?to={to}"), token).await }
    };
    for away in [
        "https://evil.example/login",
        "//evil.example/",
        "/\\evil.example/",
        "\\\\evil.example/",
        "https://partner.example.evil.example/",
        "https://user@partner.example/",
        "javascript:alert(document.cookie)",
        "/regions/testregion/",
        "/apps/testregion/tests/trap/ok",
        "/apps/testregion/tests/hostile-headersx/",
        "../../../../regions/testregion/",
        "/apps/testregion/tests/hostile-headers/%2e%2e/trap/",
    ] {
        let answer = redirect(away).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_GATEWAY,
            "{away}: {}",
            answer.body
        );
        assert!(answer.headers.get("location").is_none(), "{away}");
        assert!(
            answer.body.contains("answered with a redirect to")
                && answer
                    .body
                    .contains("under /apps/testregion/tests/hostile-headers/")
                && answer.body.contains("outbound-http:<host>"),
            "{away}: {}",
            answer.body
        );
    }
    for (within, sent) in [
        (
            "saved?id=1",
            "/apps/testregion/tests/hostile-headers/saved?id=1",
        ),
        ("./", "/apps/testregion/tests/hostile-headers/"),
        (
            "/apps/testregion/tests/hostile-headers",
            "/apps/testregion/tests/hostile-headers",
        ),
        (
            "https://partner.example/back",
            "https://partner.example/back",
        ),
    ] {
        let answer = redirect(within).await;
        assert_eq!(
            answer.status,
            StatusCode::SEE_OTHER,
            "{within}: {}",
            answer.body
        );
        assert_eq!(answer.headers["location"], sent, "{within}");
    }
}

/// `text` percent-encoded for a query value.
fn form_urlencoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

// ---- Cross-site requests with the launch cookie ----

/// A request to `path` carrying the launch cookie, as a browser sends it, with `headers`.
fn with_cookie(method: &str, path: &str, token: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost:8080")
        .header("cookie", format!("other=1; {LAUNCH_COOKIE}={token}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Body::empty()).unwrap()
}

/// Observations whose content holds `marker`.
async fn written(host: &Host, marker: &str) -> i64 {
    let mut sql = host.database.sql(
        "SELECT COUNT(*) FROM resources WHERE resource_type = 'Observation' AND content LIKE ",
    );
    sql.bind(format!("%{marker}%"));
    sql.query()
        .fetch_one(host.database.pool())
        .await
        .unwrap()
        .get::<i64, _>(0)
}

#[tokio::test]
async fn a_page_on_another_origin_posts_with_the_users_launch_cookie() {
    let host = Host::new().await;
    host.install_component("late-write", None).unwrap();
    let token = host.clinician("pat-a");
    let marker = marker();
    let write = app_path("late-write", &format!("write?marker={marker}"));
    for (method, headers) in [
        ("POST", vec![("origin", "http://evil.example")]),
        // Another port of the same host: the same site, so a SameSite cookie goes along.
        (
            "POST",
            vec![
                ("origin", "http://localhost:9999"),
                ("sec-fetch-site", "same-site"),
            ],
        ),
        ("PUT", vec![("sec-fetch-site", "cross-site")]),
        ("DELETE", vec![("origin", "null")]),
        ("PATCH", vec![]),
    ] {
        let answer = host
            .send(with_cookie(method, &write, &token, &headers))
            .await;
        assert_eq!(
            answer.status,
            StatusCode::FORBIDDEN,
            "{method} {headers:?}: {}",
            answer.body
        );
        assert!(
            answer
                .body
                .contains("with the launch cookie must come from this server's own pages")
                && answer.body.contains("Authorization: Bearer"),
            "{}",
            answer.body
        );
    }
    assert_eq!(
        written(&host, &marker).await,
        0,
        "a refused request reached the app"
    );
    let audited = host.audit_events().await;
    assert!(
        !audited
            .iter()
            .any(|e| e.to_string().contains("tests.late-write")),
        "{audited:#?}"
    );

    // Safe methods are unaffected; so is the app's own page posting, and a bearer token
    // (which no browser adds on its own).
    let page = host
        .send(with_cookie(
            "GET",
            &app_path("late-write", "ok"),
            &token,
            &[("sec-fetch-site", "cross-site")],
        ))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let own = [
        ("origin", "http://localhost:8080"),
        ("sec-fetch-site", "same-origin"),
    ];
    let answer = host.send(with_cookie("POST", &write, &token, &own)).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::CREATED, "written")
    );
    let bearer = Request::post(&write)
        .header("authorization", format!("Bearer {token}"))
        .header("origin", "http://evil.example")
        .body(Body::empty())
        .unwrap();
    let answer = host.send(bearer).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::CREATED, "written")
    );
    assert_eq!(written(&host, &marker).await, 2);
}

// ---- Reused instances and consent ----

fn reusing() -> Limits {
    Limits {
        reuse_instances: true,
        ..test_limits()
    }
}

#[tokio::test]
async fn a_reused_instance_answers_from_memory_after_the_patient_opts_out() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(host) = Host::on(backend, reusing()).await else {
            continue;
        };
        host.install_component("cached-data", None).unwrap();
        let token = host.clinician("pat-a");
        let remembered = host.get(&app_path("cached-data", "remember"), &token).await;
        assert_eq!(remembered.status, StatusCode::OK, "{}", remembered.body);
        assert!(remembered.body.contains("a-bp-1"), "{}", remembered.body);
        let recalled = host.get(&app_path("cached-data", "recall"), &token).await;
        assert_eq!(
            (recalled.status, &recalled.body),
            (StatusCode::OK, &remembered.body),
            "{backend:?}: the instance is reused while nothing changed"
        );

        // The patient opts out of the app.
        let consent =
            healthcloud_integration::consent::opt_out("pat-a", "Device/tests.cached-data", &[]);
        let patient = host
            .issuer
            .verifier()
            .verify(&host.token(Role::Citizen, Some("pat-a"), None))
            .unwrap();
        host.service
            .create(&AccessContext::user(patient), "Consent", consent)
            .await
            .unwrap();

        let recalled = host.get(&app_path("cached-data", "recall"), &token).await;
        assert_eq!(
            (recalled.status, recalled.body.as_str()),
            (StatusCode::NOT_FOUND, "nothing remembered"),
            "{backend:?}: the instance that read pat-a's data before the opt-out answered"
        );
        assert!(!recalled.body.contains("a-bp-1"));
        let again = host.get(&app_path("cached-data", "remember"), &token).await;
        assert_eq!(again.status, StatusCode::FORBIDDEN, "{}", again.body);
        assert!(again.body.starts_with("denied"), "{}", again.body);
    }
}

#[tokio::test]
async fn a_reused_instance_answers_from_memory_after_the_grant_changes() {
    let host = Host::with_limits(reusing()).await;
    let install = host.install_component("cached-data", None).unwrap();
    let token = host.clinician("pat-a");
    let remembered = host.get(&app_path("cached-data", "remember"), &token).await;
    assert_eq!(remembered.status, StatusCode::OK, "{}", remembered.body);
    assert_eq!(
        host.get(&app_path("cached-data", "recall"), &token)
            .await
            .status,
        StatusCode::OK
    );
    install.grant.replace(Vec::new());
    let recalled = host.get(&app_path("cached-data", "recall"), &token).await;
    assert_eq!(
        (recalled.status, recalled.body.as_str()),
        (StatusCode::NOT_FOUND, "nothing remembered")
    );
}

// ---- Host calls past their time limit ----

#[tokio::test]
async fn a_write_past_the_host_call_limit_lands_after_the_app_was_told_it_failed() {
    let host = Host::with_limits(Limits {
        host_call_timeout: Duration::from_millis(300),
        ..test_limits()
    })
    .await;
    host.install_component("late-write", None).unwrap();
    let token = host.clinician("pat-a");
    let marker = marker();
    let database = host.database.clone();

    // Another writer holds SQLite's write lock for longer than the app's call may take.
    let held = database.begin_write().await.unwrap();
    let answer = host
        .get(
            &app_path("late-write", &format!("write?marker={marker}")),
            &token,
        )
        .await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.body
    );
    assert!(
        answer.body.starts_with(
            "unavailable: the call took longer than its limit of 300 ms and was cancelled"
        ),
        "{}",
        answer.body
    );
    drop(held);

    // Writers take the lock in turn: once this one has it, a write still waiting from the
    // cancelled call would have committed before it.
    drop(database.begin_write().await.unwrap());
    assert_eq!(
        written(&host, &marker).await,
        0,
        "the cancelled write landed"
    );
    let audited = host.audit_events().await;
    assert!(
        !audited
            .iter()
            .any(|e| e.to_string().contains("tests.late-write")),
        "{audited:#?}"
    );

    // Without contention the same write lands (the test's write path works).
    let answer = host
        .get(
            &app_path("late-write", &format!("write?marker={marker}")),
            &token,
        )
        .await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::CREATED, "written")
    );
    assert_eq!(written(&host, &marker).await, 1);
}
