//! The compile cache: compiled code is reused across restarts, and a cache file is loaded
//! only if this data directory wrote it (`Component::deserialize` trusts its input).

mod common;

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

#[test]
fn compiled_code_is_cached_and_only_our_own_files_are_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let limits = test_limits();
    let (_, trap) = test_component("trap");
    let (_, other) = test_component("other-patient");
    let engine = AppEngine::new(&limits, Some(dir.path())).unwrap();
    let compiled = engine.compile(&trap, &digest(&trap)).unwrap();
    let cached: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(
        cached[0]
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(&digest(&trap))
    );
    let expected = imports(&engine, &compiled);

    // A restart loads the cached code.
    drop(engine);
    let engine = AppEngine::new(&limits, Some(dir.path())).unwrap();
    assert_eq!(
        imports(&engine, &engine.compile(&trap, &digest(&trap)).unwrap()),
        expected
    );

    // Someone plants another app's machine code under the trap's name, with a made-up tag:
    // it is not loaded; the trap component is compiled again from its bytes.
    let mut planted = engine.engine().precompile_component(&other).unwrap();
    planted.extend_from_slice(&[0u8; 32]);
    std::fs::write(&cached[0], &planted).unwrap();
    let engine = AppEngine::new(&limits, Some(dir.path())).unwrap();
    let recompiled = engine.compile(&trap, &digest(&trap)).unwrap();
    assert_eq!(imports(&engine, &recompiled), expected);
    assert_ne!(
        std::fs::read(&cached[0]).unwrap(),
        planted,
        "the planted file was replaced"
    );
}
