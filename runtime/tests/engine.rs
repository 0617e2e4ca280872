//! The compile cache: compiled code is reused across restarts, and a cache file is loaded
//! only if this data directory wrote it for exactly those bytes (`Component::deserialize`
//! trusts its input).

use healthcloud_runtime::testing as common;

use std::path::{Path, PathBuf};

use common::{test_component, test_limits};
use healthcloud_runtime::AppEngine;
use healthcloud_runtime::install::digest;

fn imports(engine: &AppEngine, component: &wasmtime::component::Component) -> Vec<String> {
    component
        .component_type()
        .imports(engine.engine())
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// The cached file of the component with `bytes`.
fn cached(cache: &Path, bytes: &[u8]) -> PathBuf {
    let prefix = digest(bytes);
    std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(&prefix)
        })
        .expect("the compiled code is cached")
}

#[test]
fn compiled_code_is_cached_and_only_our_own_files_for_the_same_bytes_are_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("compiled");
    let limits = test_limits();
    let (_, trap) = test_component("trap");
    let (_, other) = test_component("other-patient");
    let engine = AppEngine::new(&limits, Some(&cache)).unwrap();
    let expected = imports(&engine, &engine.compile(&trap).unwrap());
    let other_imports = imports(&engine, &engine.compile(&other).unwrap());
    assert_ne!(expected, other_imports);
    let trap_file = cached(&cache, &trap);
    assert!(
        !cache.join("compiled.key").exists(),
        "the key is not kept among the files it protects"
    );

    // A restart loads the cached code.
    drop(engine);
    let engine = AppEngine::new(&limits, Some(&cache)).unwrap();
    assert_eq!(imports(&engine, &engine.compile(&trap).unwrap()), expected);

    // Another app's genuine cache file, renamed to the trap's name, is not loaded: the tag
    // covers the digest.
    std::fs::copy(cached(&cache, &other), &trap_file).unwrap();
    let engine = AppEngine::new(&limits, Some(&cache)).unwrap();
    assert_eq!(imports(&engine, &engine.compile(&trap).unwrap()), expected);

    // Machine code planted with a made-up tag is not loaded either; it is compiled over.
    let mut planted = engine.engine().precompile_component(&other).unwrap();
    planted.extend_from_slice(&[0u8; 32]);
    std::fs::write(&trap_file, &planted).unwrap();
    let engine = AppEngine::new(&limits, Some(&cache)).unwrap();
    assert_eq!(imports(&engine, &engine.compile(&trap).unwrap()), expected);
    assert_ne!(
        std::fs::read(&trap_file).unwrap(),
        planted,
        "the planted file was replaced"
    );
}
