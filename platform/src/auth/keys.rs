//! The authorization server's signing keys: ES256 (ECDSA P-256) key pairs, each named by a key
//! id (`kid`) derived from its public key, kept as PKCS#8 files (mode 0600) in one directory
//! so every restart signs and verifies with the same keys (nodes that share the directory share
//! them, and [`SigningKeys::reload`] picks up what another node's rotation wrote). A new key
//! verifies at once but signs only once it is [`PROPAGATION`] old, so every node has read it
//! before a token it signed reaches them; the older ones still verify until they are retired,
//! so tokens signed before a rotation stay valid for their lifetime. The public keys are
//! published as a JWK set (RFC 7517) for anyone who verifies the tokens elsewhere.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// How many keys are kept: the signing one and the ones before it. A rotation beyond that
/// retires the oldest, and tokens it signed stop verifying.
pub const KEPT_KEYS: usize = 3;

/// How long a new key only verifies before it signs: longer than the nodes' reload interval.
pub const PROPAGATION: Duration = Duration::from_secs(120);

/// One key pair.
struct Key {
    kid: String,
    /// When it was made, microseconds since the epoch (its file name's sequence).
    created: i64,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// The public point's coordinates, base64url.
    x: String,
    y: String,
}

/// The key set. Cheap to clone (shared).
#[derive(Clone)]
pub struct SigningKeys {
    dir: PathBuf,
    /// Oldest first.
    keys: Arc<RwLock<Vec<Key>>>,
    /// How old a key must be to sign (see [`PROPAGATION`]).
    propagation: Duration,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys")
            .field("dir", &self.dir)
            .field("kids", &self.kids())
            .finish()
    }
}

impl SigningKeys {
    /// The keys in `dir`, creating the directory and a first key when there are none.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        let set = SigningKeys {
            dir: dir.to_owned(),
            keys: Arc::new(RwLock::new(read_keys(dir)?)),
            propagation: PROPAGATION,
        };
        if set.kids().is_empty() {
            set.rotate()?;
        }
        Ok(set)
    }

    /// These keys, a new one signing once it is `propagation` old (for a single node, or
    /// tests: zero).
    pub fn propagating_within(mut self, propagation: Duration) -> Self {
        self.propagation = propagation;
        self
    }

    /// Reads the directory again: a key another process added (a rotation, on a directory
    /// several nodes share) signs here from now on, and a retired one stops verifying.
    pub fn reload(&self) -> anyhow::Result<()> {
        let keys = read_keys(&self.dir)?;
        if !keys.is_empty() {
            *self.keys.write().expect("keys poisoned") = keys;
        }
        Ok(())
    }

    /// Adds a new key that signs from now on; the previous ones keep verifying, up to
    /// [`KEPT_KEYS`] in all (the oldest beyond that is retired and its file removed). Returns
    /// the new key's id.
    pub fn rotate(&self) -> anyhow::Result<String> {
        let der =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| anyhow::anyhow!("cannot generate a P-256 key"))?;
        let sequence = chrono::Utc::now().timestamp_micros();
        let key = Key::from_pkcs8(der.as_ref(), sequence)?;
        let kid = key.kid.clone();
        super::write_private(
            &self.dir.join(format!("{sequence:020}-{kid}.p8")),
            der.as_ref(),
        )?;
        let mut keys = self.keys.write().expect("keys poisoned");
        keys.push(key);
        while keys.len() > KEPT_KEYS {
            let retired = keys.remove(0);
            for path in std::fs::read_dir(&self.dir)?.filter_map(|entry| entry.ok()) {
                if path
                    .file_name()
                    .to_string_lossy()
                    .ends_with(&format!("-{}.p8", retired.kid))
                {
                    std::fs::remove_file(path.path())?;
                }
            }
        }
        Ok(kid)
    }

    /// The key ids, oldest first.
    pub fn kids(&self) -> Vec<String> {
        let keys = self.keys.read().expect("keys poisoned");
        keys.iter().map(|key| key.kid.clone()).collect()
    }

    /// The id of the key that signs now: the newest one at least [`PROPAGATION`] old (or
    /// the oldest, while none is).
    pub fn signing_kid(&self) -> String {
        let keys = self.keys.read().expect("keys poisoned");
        signing(&keys, self.propagation).kid.clone()
    }

    /// `claims` as a JWT signed with the key that signs now, naming it (`kid`).
    pub fn sign<T: Serialize>(&self, claims: &T) -> String {
        let keys = self.keys.read().expect("keys poisoned");
        let key = signing(&keys, self.propagation);
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding)
            .expect("claims that serialize sign with a valid key")
    }

    /// The public key `kid` verifies with, if it is still kept.
    pub fn decoding_key(&self, kid: &str) -> Option<DecodingKey> {
        let keys = self.keys.read().expect("keys poisoned");
        keys.iter()
            .find(|key| key.kid == kid)
            .map(|key| key.decoding.clone())
    }

    /// The public keys as a JWK set, newest first.
    pub fn jwks(&self) -> Value {
        let keys = self.keys.read().expect("keys poisoned");
        let listed: Vec<Value> = keys
            .iter()
            .rev()
            .map(|key| {
                json!({
                    "kty": "EC", "crv": "P-256", "x": key.x, "y": key.y,
                    "kid": key.kid, "alg": "ES256", "use": "sig", "key_ops": ["verify"],
                })
            })
            .collect();
        json!({ "keys": listed })
    }
}

/// Of `keys` (oldest first, never none), the newest one `propagation` old, else the oldest.
fn signing(keys: &[Key], propagation: Duration) -> &Key {
    let ripe = chrono::Utc::now().timestamp_micros() - propagation.as_micros() as i64;
    keys.iter()
        .rev()
        .find(|key| key.created <= ripe)
        .unwrap_or_else(|| keys.first().expect("a key set always holds a key"))
}

/// The keys in `dir`, oldest first.
fn read_keys(dir: &Path) -> anyhow::Result<Vec<Key>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "p8"))
        .collect();
    // Named `<sequence>-<kid>.p8`: the sequence orders them.
    files.sort();
    files
        .iter()
        .map(|path| {
            let der = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            let created = path
                .file_name()
                .and_then(|name| name.to_str())
                .and_then(|name| name.split('-').next())
                .and_then(|sequence| sequence.parse().ok())
                .unwrap_or(0);
            Key::from_pkcs8(&der, created).map_err(|e| {
                anyhow::anyhow!(
                    "{} is not an ES256 private key ({e}): remove it to retire it",
                    path.display()
                )
            })
        })
        .collect()
}

impl Key {
    fn from_pkcs8(der: &[u8], created: i64) -> anyhow::Result<Key> {
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &SystemRandom::new())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        // An uncompressed point: 0x04, then x and y, 32 bytes each.
        let point = pair.public_key().as_ref();
        anyhow::ensure!(
            point.len() == 65 && point[0] == 4,
            "not an uncompressed P-256 point"
        );
        let x = URL_SAFE_NO_PAD.encode(&point[1..33]);
        let y = URL_SAFE_NO_PAD.encode(&point[33..]);
        let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(point)[..16]);
        Ok(Key {
            kid,
            created,
            encoding: EncodingKey::from_ec_der(der),
            decoding: DecodingKey::from_ec_components(&x, &y)
                .map_err(|e| anyhow::anyhow!("{e}"))?,
            x,
            y,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_survive_a_restart_rotate_and_retire_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let keys = SigningKeys::open(dir.path()).unwrap();
        let first = keys.kids();
        assert_eq!(first.len(), 1);
        let token = keys.sign(&json!({"sub": "x"}));
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some(first[0].as_str()));
        assert_eq!(header.alg, Algorithm::ES256);
        assert_eq!(
            SigningKeys::open(dir.path()).unwrap().kids(),
            first,
            "reopened"
        );

        // A new key verifies at once on every node sharing the directory, and signs only
        // once it is old enough for all of them to have read it.
        let other_node = SigningKeys::open(dir.path()).unwrap();
        let second = keys.rotate().unwrap();
        assert_eq!(keys.signing_kid(), first[0], "not yet: it propagates first");
        other_node.reload().unwrap();
        assert!(
            other_node.decoding_key(&second).is_some(),
            "read by the other node"
        );
        let keys = keys.propagating_within(Duration::ZERO);
        let newer = keys.sign(&json!({"sub": "x"}));
        // Both verify: the old one until it is retired.
        let mut validation = jsonwebtoken::Validation::new(Algorithm::ES256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        for (token, kid) in [(&token, &first[0]), (&newer, &second)] {
            let key = keys.decoding_key(kid).unwrap();
            jsonwebtoken::decode::<Value>(token, &key, &validation).unwrap();
        }
        assert_eq!(
            keys.jwks()["keys"][0]["kid"],
            second.as_str(),
            "newest first"
        );
        keys.rotate().unwrap();
        keys.rotate().unwrap();
        assert_eq!(keys.kids().len(), KEPT_KEYS);
        assert!(keys.decoding_key(&first[0]).is_none(), "retired");
        let reopened = SigningKeys::open(dir.path()).unwrap();
        assert_eq!(
            reopened.kids(),
            keys.kids(),
            "the retired key's file is gone too"
        );
    }
}
