//! The committed package test vectors: fixed bytes must give the committed digest, the
//! committed signature must verify, and every altered package must be refused. A change to
//! the canonical encoding or the signing payload breaks this test, as it would break every
//! signature already issued.

use healthcloud_package::keys::SecretKey;
use healthcloud_package::package::{PackageError, SignedPackage, digest};
use serde::{Deserialize, Serialize};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/package-v1.json");

#[derive(Serialize, Deserialize)]
struct Vectors {
    /// The signing key's 32-byte seed, hex.
    seed: String,
    key_id: String,
    /// The component bytes, hex.
    component: String,
    sha256: String,
    /// The exact canonical JSON that is signed (after the purpose line).
    canonical: String,
    signed: serde_json::Value,
    altered: Vec<Altered>,
}

#[derive(Serialize, Deserialize)]
struct Altered {
    what: String,
    signed: serde_json::Value,
    /// The component bytes, hex.
    component: String,
    /// The refusal, as text.
    refused: String,
}

fn check(signed: &serde_json::Value, component: &[u8]) -> Result<(), PackageError> {
    let signed = SignedPackage::from_json(signed.to_string().as_bytes())?;
    signed.verify()?;
    signed.check_component(component)
}

#[test]
fn committed_vectors_verify_and_altered_ones_do_not() {
    let vectors: Vectors =
        serde_json::from_str(&std::fs::read_to_string(VECTORS).unwrap()).unwrap();
    let component = hex::decode(&vectors.component).unwrap();
    assert_eq!(digest(&component), vectors.sha256);

    let seed: [u8; 32] = hex::decode(&vectors.seed).unwrap().try_into().unwrap();
    let key = SecretKey::from_seed(&seed);
    assert_eq!(key.public().id().as_str(), vectors.key_id);

    let signed = SignedPackage::from_json(vectors.signed.to_string().as_bytes()).unwrap();
    assert_eq!(
        String::from_utf8(signed.package.canonical()).unwrap(),
        vectors.canonical
    );
    assert_eq!(signed.verify().unwrap(), key.public());
    signed.check_component(&component).unwrap();
    // Ed25519 is deterministic: signing again gives the committed signature.
    assert_eq!(signed.package.clone().sign(&key), signed);

    for altered in &vectors.altered {
        let bytes = hex::decode(&altered.component).unwrap();
        let refused = check(&altered.signed, &bytes).expect_err(&altered.what);
        assert_eq!(refused.to_string(), altered.refused, "{}", altered.what);
    }
    assert!(vectors.altered.len() >= 8);
}

/// Writes the vectors file; run once with `HEALTHCLOUD_WRITE_VECTORS=1` when the format
/// version changes (never for an existing version).
#[test]
fn write_vectors_when_asked() {
    if std::env::var_os("HEALTHCLOUD_WRITE_VECTORS").is_none() {
        return;
    }
    use healthcloud_package::manifest::Manifest;
    use healthcloud_package::package::Package;
    let seed = [42u8; 32];
    let key = SecretKey::from_seed(&seed);
    let component = b"\0asm\x0d\0\x01\0healthcloud package test vector".to_vec();
    let manifest = Manifest::parse(
        r#"
        [app]
        publisher = "acme"
        id = "vitals"
        version = "1.4.2"
        name = "Vitals — overview"
        description = "Shows a patient's vital signs. Unicode: æøå ✓"
        audience = ["clinician", "patient"]

        [[capability]]
        name = "patient/Observation.rs?category=vital-signs"
        justification = "Shows the readings."

        [[capability]]
        name = "kv"
        justification = "Remembers the chosen period."
    "#,
    )
    .unwrap();
    let signed = Package::new(&manifest, &component).sign(&key);
    let json = serde_json::to_value(&signed).unwrap();
    let mut altered = Vec::new();
    let mut alter = |what: &str, change: &dyn Fn(&mut serde_json::Value, &mut Vec<u8>)| {
        let mut signed = json.clone();
        let mut bytes = component.clone();
        change(&mut signed, &mut bytes);
        let refused = check(&signed, &bytes).expect_err(what).to_string();
        altered.push(Altered {
            what: what.into(),
            signed,
            component: hex::encode(&bytes),
            refused,
        });
    };
    alter("one byte of the component flipped", &|_, bytes| {
        bytes[12] ^= 1
    });
    alter("component truncated", &|_, bytes| {
        bytes.pop();
    });
    alter("description altered after signing", &|s, _| {
        s["package"]["app"]["description"] = "Shows everything.".into()
    });
    alter("signature replayed onto another id", &|s, _| {
        s["package"]["app"]["id"] = "vitals-pro".into()
    });
    alter("signature replayed onto another version", &|s, _| {
        s["package"]["app"]["version"] = "1.4.3".into()
    });
    alter("signature replayed onto another publisher", &|s, _| {
        s["package"]["app"]["publisher"] = "other".into()
    });
    alter(
        "signature replayed onto a larger capability set",
        &|s, _| {
            s["package"]["capability"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({"name": "patient/*.rs", "justification": "x"}))
        },
    );
    alter("signed digest altered to match other bytes", &|s, bytes| {
        bytes[12] ^= 1;
        s["package"]["component"]["sha256"] = digest(bytes).into();
    });
    alter("signature by another key carrying that key", &|s, _| {
        let other = SecretKey::from_seed(&[43; 32]);
        s["signature"]["public_key"] = other.public().to_base64().into();
        s["signature"]["key_id"] = other.public().id().to_string().into();
    });
    alter("key id naming another key", &|s, _| {
        s["signature"]["key_id"] = SecretKey::from_seed(&[43; 32])
            .public()
            .id()
            .to_string()
            .into();
    });
    alter("weak (small-order) key", &|s, _| {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        use base64::Engine as _;
        s["signature"]["public_key"] = base64::engine::general_purpose::STANDARD
            .encode(identity)
            .into();
    });
    alter("signature bit flipped", &|s, _| {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::STANDARD;
        let mut bytes = engine
            .decode(s["signature"]["value"].as_str().unwrap())
            .unwrap();
        bytes[0] ^= 1;
        s["signature"]["value"] = engine.encode(bytes).into();
    });
    let vectors = Vectors {
        seed: hex::encode(seed),
        key_id: key.public().id().to_string(),
        component: hex::encode(&component),
        sha256: digest(&component),
        canonical: String::from_utf8(signed.package.canonical()).unwrap(),
        signed: json.clone(),
        altered,
    };
    std::fs::write(
        VECTORS,
        serde_json::to_string_pretty(&vectors).unwrap() + "\n",
    )
    .unwrap();
}
