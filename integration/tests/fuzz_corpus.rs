//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`: seed inputs and every crash
//! the fuzzer found) through the same functions the `cargo fuzz` targets run, so a fixed
//! crash stays fixed without a fuzzer in CI.

use healthcloud_integration::fuzzing;
use healthcloud_platform::testing::replay_fuzz_corpus as replay;

#[test]
fn scope_corpus_parses_without_panics() {
    replay("scope", fuzzing::scope);
}

#[test]
fn search_query_corpus_parses_and_searches_without_panics() {
    replay("search_query", fuzzing::search_query);
}

#[test]
fn bundle_import_corpus_imports_or_is_refused_without_panics() {
    replay("bundle_import", fuzzing::bundle_import);
}

#[test]
fn jwt_corpus_verifies_or_is_refused_without_panics() {
    replay("jwt", fuzzing::jwt);
}
