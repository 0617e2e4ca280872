//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`: seed inputs and every crash
//! the fuzzer found) through the same functions the `cargo fuzz` targets run, so a fixed
//! crash stays fixed without a fuzzer in CI.

use healthcloud_package::fuzzing;
use healthcloud_platform::testing::replay_fuzz_corpus as replay;

#[test]
fn manifest_corpus_parses_without_panics() {
    replay("manifest", fuzzing::manifest);
}

#[test]
fn signed_package_corpus_parses_without_panics() {
    replay("signed_package", fuzzing::signed_package);
}
