//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`: seed inputs and every crash
//! the fuzzer found) through the same functions the `cargo fuzz` targets run, so a fixed
//! crash stays fixed without a fuzzer in CI.

use std::path::PathBuf;

use healthcloud_package::fuzzing;

/// Runs `body` on every file of `fuzz/corpus/<target>/`, naming the file that panics.
fn replay(target: &str, body: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
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

#[test]
fn manifest_corpus_parses_without_panics() {
    replay("manifest", fuzzing::manifest);
}

#[test]
fn signed_package_corpus_parses_without_panics() {
    replay("signed_package", fuzzing::signed_package);
}
