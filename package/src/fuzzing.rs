//! Fuzz target bodies (feature `fuzzing`): each takes arbitrary bytes, runs them through one
//! parser that hostile input reaches, and panics only when a property that must hold for
//! every input does not. The `cargo fuzz` targets in `fuzz/` and the corpus replay test
//! (`tests/fuzz_corpus.rs`) call these same functions, so a crash the fuzzer found stays a
//! failing test until it is fixed.

use crate::keys::SecretKey;
use crate::manifest::{Capability, Manifest};
use crate::package::{Package, SignedPackage};

/// A `healthcloud.toml`: parsing never panics, and every capability of a manifest that
/// parsed is explained and reads back as itself from its text.
pub fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(manifest) = Manifest::parse(text) else {
        return;
    };
    let _ = manifest.full_id();
    for capability in manifest.capabilities() {
        let _ = capability.explain();
        let written = capability.to_string();
        assert_eq!(
            Capability::parse(&written).as_ref(),
            Ok(&capability),
            "the capability '{written}' reads back as another"
        );
    }
}

/// A signed package envelope (`.sig.json`): parsing never panics; an envelope that parsed
/// reads back the same from the JSON it is written as; the canonical JSON that is signed
/// names exactly this package (two packages never share signed bytes); and signing it with a
/// key gives an envelope that verifies as that key.
pub fn signed_package(data: &[u8]) {
    let Ok(signed) = SignedPackage::from_json(data) else {
        return;
    };
    let _ = signed.verify();
    let written = signed.to_json();
    let again = SignedPackage::from_json(written.as_bytes())
        .unwrap_or_else(|e| panic!("an envelope that parsed does not read back: {e}"));
    assert_eq!(again, signed, "the envelope reads back as another");

    let canonical = signed.package.canonical();
    let back: Package = serde_json::from_slice(&canonical)
        .unwrap_or_else(|e| panic!("the canonical JSON is not a package: {e}"));
    assert_eq!(
        back, signed.package,
        "the signed bytes name another package than the one signed"
    );

    let key = SecretKey::from_seed(&[7; 32]);
    let resigned = signed.package.clone().sign(&key);
    match resigned.verify() {
        Ok(public) => assert_eq!(public, key.public(), "verified as another key"),
        Err(error) => panic!("a package signed just now does not verify: {error}"),
    }
}
