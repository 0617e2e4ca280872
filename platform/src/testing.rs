//! Test support shared by every crate's tests (feature `testing`).

/// A fresh, empty database on the test PostgreSQL server named by
/// `HEALTHCLOUD_TEST_POSTGRES_URL`, or `None` when that is not set (the PostgreSQL variant of
/// a test is then skipped, unless `HEALTHCLOUD_REQUIRE_POSTGRES` makes that a failure, as in
/// CI). `prefix` names the databases a test suite leaves behind.
pub async fn postgres_database(prefix: &str) -> Option<String> {
    let Ok(admin_url) = std::env::var("HEALTHCLOUD_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var("HEALTHCLOUD_REQUIRE_POSTGRES").is_err(),
            "HEALTHCLOUD_REQUIRE_POSTGRES is set but HEALTHCLOUD_TEST_POSTGRES_URL is not: run tests/run"
        );
        eprintln!(
            "skipped: set HEALTHCLOUD_TEST_POSTGRES_URL to run the PostgreSQL variant (tests/run does)"
        );
        return None;
    };
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("cannot reach the test PostgreSQL server");
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("the test PostgreSQL account may create databases");
    let (base, _) = admin_url.rsplit_once('/').expect("a database URL");
    Some(format!("{base}/{name}"))
}

/// Replays the committed fuzz corpus `fuzz/corpus/<target>/` (seed inputs and every crash the
/// fuzzer found) through `body`, the function the `cargo fuzz` target runs, naming the file
/// that panics: a fixed crash stays fixed without a fuzzer in CI.
pub fn replay_fuzz_corpus(target: &str, body: fn(&[u8])) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the corpus {}: {e}", dir.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the corpus {} is empty", dir.display());
    for file in files {
        let input = std::fs::read(&file).expect("a readable corpus file");
        if std::panic::catch_unwind(|| body(&input)).is_err() {
            panic!("fuzz target '{target}' panics on {}", file.display());
        }
    }
}
