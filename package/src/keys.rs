//! Ed25519 keys: publishers sign packages with them, the store signs its revocation feed and
//! its version records.
//!
//! A key is named by its id, the sha256 of its 32 public-key bytes in hex. Every signature is
//! made over a domain-separated payload (a purpose line, then canonical bytes), so a signature
//! made for one purpose can never be replayed as another; verification is `verify_strict` and
//! refuses weak (small-order) keys.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a signature is for; the payload starts with this line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A package: the canonical manifest with its component's digest and size.
    Package,
    /// A publisher's current key endorsing a new one.
    AddKey,
    /// The store's revocation feed.
    Revocations,
    /// The store's record of a published version: the key that signed it is the
    /// publisher's and in good standing.
    Version,
}

impl Purpose {
    fn domain(self) -> &'static [u8] {
        match self {
            Purpose::Package => b"healthcloud package v1\n",
            Purpose::AddKey => b"healthcloud add-key v1\n",
            Purpose::Revocations => b"healthcloud revocations v1\n",
            Purpose::Version => b"healthcloud version v1\n",
        }
    }

    /// The exact bytes signed for `message`.
    pub fn payload(self, message: &[u8]) -> Vec<u8> {
        [self.domain(), message].concat()
    }
}

/// What a publisher's current key signs ([`Purpose::AddKey`]) to endorse `new_key`: the RFC 8785
/// canonical JSON of `{"key_id": …, "publisher": …}`, so the CLI and the store build the same
/// bytes.
pub fn endorsement_message(publisher: &str, new_key: &KeyId) -> Vec<u8> {
    serde_json_canonicalizer::to_vec(&serde_json::json!({
        "key_id": new_key,
        "publisher": publisher,
    }))
    .expect("a JSON object canonicalizes")
}

/// Why a key or signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not an ed25519 public key.
    #[error("not an ed25519 public key: {0}")]
    Malformed(String),
    /// A small-order key, for which signatures prove nothing.
    #[error("weak ed25519 key refused: generate a new one with 'healthcloud keygen'")]
    Weak,
    /// The signature does not verify.
    #[error("the signature does not verify with key {0}")]
    BadSignature(KeyId),
    /// A signature that is not 64 bytes of base64.
    #[error("malformed signature: {0}")]
    MalformedSignature(String),
}

/// A key's id: the sha256 of its 32 public-key bytes, in lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyId(String);

impl KeyId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for KeyId {
    type Error = KeyError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        let valid = text.len() == 64
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if valid {
            Ok(KeyId(text))
        } else {
            Err(KeyError::Malformed(format!(
                "'{text}' is not a key id (64 lowercase hex characters)"
            )))
        }
    }
}

impl From<KeyId> for String {
    fn from(id: KeyId) -> String {
        id.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An ed25519 public key that is not weak.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.id())
    }
}

impl PublicKey {
    /// The key from its 32 bytes; weak keys are refused.
    pub fn from_bytes(bytes: &[u8]) -> Result<PublicKey, KeyError> {
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| KeyError::Malformed(format!("{} bytes, expected 32", bytes.len())))?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| KeyError::Malformed("not a point on the curve".into()))?;
        if key.is_weak() {
            return Err(KeyError::Weak);
        }
        Ok(PublicKey(key))
    }

    /// The key from base64 of its 32 bytes.
    pub fn from_base64(text: &str) -> Result<PublicKey, KeyError> {
        let bytes = BASE64
            .decode(text.trim())
            .map_err(|e| KeyError::Malformed(format!("not base64: {e}")))?;
        PublicKey::from_bytes(&bytes)
    }

    /// The key from a PEM `PUBLIC KEY` (what `healthcloud keygen` writes to `FILE.pub`).
    pub fn from_pem(pem: &str) -> Result<PublicKey, KeyError> {
        let key = VerifyingKey::from_public_key_pem(pem.trim())
            .map_err(|e| KeyError::Malformed(format!("not an ed25519 PEM public key: {e}")))?;
        PublicKey::from_bytes(key.as_bytes())
    }

    /// The key as PEM.
    pub fn to_pem(&self) -> String {
        self.0
            .to_public_key_pem(LineEnding::LF)
            .expect("an ed25519 key encodes")
    }

    /// The key's 32 bytes in base64.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0.as_bytes())
    }

    /// The key's id.
    pub fn id(&self) -> KeyId {
        KeyId(hex::encode(Sha256::digest(self.0.as_bytes())))
    }

    /// Checks a base64 signature over `message` made for `purpose`.
    pub fn verify(
        &self,
        purpose: Purpose,
        message: &[u8],
        signature: &str,
    ) -> Result<(), KeyError> {
        let bytes = BASE64
            .decode(signature.trim())
            .map_err(|e| KeyError::MalformedSignature(format!("not base64: {e}")))?;
        let signature = Signature::from_slice(&bytes).map_err(|_| {
            KeyError::MalformedSignature(format!("{} bytes, expected 64", bytes.len()))
        })?;
        self.0
            .verify_strict(&purpose.payload(message), &signature)
            .map_err(|_| KeyError::BadSignature(self.id()))
    }
}

/// A private signing key.
pub struct SecretKey(SigningKey);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.public().id())
    }
}

impl SecretKey {
    /// A fresh random key.
    pub fn generate() -> SecretKey {
        SecretKey(SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// The key from its 32-byte seed (test vectors).
    pub fn from_seed(seed: &[u8; 32]) -> SecretKey {
        SecretKey(SigningKey::from_bytes(seed))
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// A base64 signature over `message` for `purpose`.
    pub fn sign(&self, purpose: Purpose, message: &[u8]) -> String {
        BASE64.encode(self.0.sign(&purpose.payload(message)).to_bytes())
    }

    /// Reads a PKCS#8 PEM private key.
    pub fn read(path: &Path) -> anyhow::Result<SecretKey> {
        let pem = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read the key {}: {e}", path.display()))?;
        let key = SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
            anyhow::anyhow!(
                "{} is not an ed25519 private key ({e}): make one with 'healthcloud keygen --out {}'",
                path.display(),
                path.display()
            )
        })?;
        Ok(SecretKey(key))
    }

    /// Writes the private key to `path` (mode 0600, never overwriting) and the public key to
    /// `path.pub`.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        use std::io::Write as _;
        let pem = self
            .0
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| anyhow::anyhow!("encoding the key: {e}"))?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(|e| {
            anyhow::anyhow!(
                "cannot create {}: {e} (an existing key is never overwritten: choose another --out)",
                path.display()
            )
        })?;
        file.write_all(pem.as_bytes())?;
        file.sync_all()?;
        std::fs::write(public_key_path(path), self.public().to_pem())?;
        Ok(())
    }
}

/// Where the public half of the private key at `path` is written: `path.pub`.
pub fn public_key_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".pub");
    name.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_holds_only_for_its_purpose_and_message() {
        let key = SecretKey::from_seed(&[7; 32]);
        let signature = key.sign(Purpose::Package, b"m");
        let public = key.public();
        assert!(public.verify(Purpose::Package, b"m", &signature).is_ok());
        assert!(public.verify(Purpose::AddKey, b"m", &signature).is_err());
        assert!(public.verify(Purpose::Version, b"m", &signature).is_err());
        assert!(public.verify(Purpose::Package, b"n", &signature).is_err());
        let other = SecretKey::from_seed(&[8; 32]).public();
        assert!(other.verify(Purpose::Package, b"m", &signature).is_err());
    }

    #[test]
    fn weak_keys_are_refused() {
        // The identity point (small order), encoded.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(PublicKey::from_bytes(&identity), Err(KeyError::Weak));
        assert!(PublicKey::from_bytes(&[1; 31]).is_err());
    }

    #[test]
    fn keys_round_trip_through_pem_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vendor.key");
        let key = SecretKey::generate();
        key.write(&path).unwrap();
        let read = SecretKey::read(&path).unwrap();
        assert_eq!(read.public(), key.public());
        let pem = std::fs::read_to_string(public_key_path(&path)).unwrap();
        assert_eq!(PublicKey::from_pem(&pem).unwrap().id(), key.public().id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(
            key.write(&path).is_err(),
            "an existing key is not overwritten"
        );
    }

    #[test]
    fn the_endorsement_is_canonical_json_of_publisher_and_key_id() {
        let id = SecretKey::from_seed(&[3; 32]).public().id();
        let message = endorsement_message("acme", &id);
        assert_eq!(
            String::from_utf8(message.clone()).unwrap(),
            format!(r#"{{"key_id":"{id}","publisher":"acme"}}"#)
        );
        let current = SecretKey::from_seed(&[4; 32]);
        let signature = current.sign(Purpose::AddKey, &message);
        assert!(
            current
                .public()
                .verify(Purpose::AddKey, &message, &signature)
                .is_ok()
        );
    }
}
