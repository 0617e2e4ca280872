//! Packages: a manifest bound to its component's digest and size, signed by the publisher.
//!
//! What is signed is [`Purpose::Package`]'s line followed by the RFC 8785 (JCS) canonical JSON
//! of [`Package`]: the whole manifest (id, version, publisher, capabilities with their
//! justifications, …) plus the component's sha256 and size. Change any of it, or the bytes,
//! and the signature no longer holds; a signature moved onto another id, version or set of
//! capabilities signs a different payload.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::keys::{KeyError, KeyId, PublicKey, Purpose, SecretKey};
use crate::manifest::{AppInfo, Manifest, ManifestError, RequestedCapability};

/// The envelope format written by `healthcloud app sign` and accepted by the store.
pub const FORMAT: &str = "healthcloud-package-v1";

/// The largest integer a JSON number holds exactly (2^53 - 1): canonical JSON writes numbers
/// as IEEE doubles.
pub const MAX_EXACT_JSON_INTEGER: u64 = (1 << 53) - 1;

/// The component a package is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentRef {
    /// sha256 of the component bytes, lowercase hex.
    pub sha256: String,
    /// Its length in bytes.
    pub size: u64,
}

impl ComponentRef {
    /// Names `bytes`.
    pub fn of(bytes: &[u8]) -> ComponentRef {
        ComponentRef {
            sha256: digest(bytes),
            size: bytes.len() as u64,
        }
    }
}

/// The sha256 of `bytes`, lowercase hex: how components are named everywhere.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The signed statement: a manifest and the component it describes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    /// Who the app is (the manifest's `[app]`).
    pub app: AppInfo,
    /// What it asks for (the manifest's `[[capability]]`).
    #[serde(rename = "capability", default)]
    pub requested: Vec<RequestedCapability>,
    /// The component's digest and size.
    pub component: ComponentRef,
}

impl Package {
    /// The package of `manifest` for the component `bytes`.
    pub fn new(manifest: &Manifest, bytes: &[u8]) -> Package {
        Package {
            app: manifest.app.clone(),
            requested: manifest.requested.clone(),
            component: ComponentRef::of(bytes),
        }
    }

    /// The manifest part.
    pub fn manifest(&self) -> Manifest {
        Manifest {
            app: self.app.clone(),
            requested: self.requested.clone(),
        }
    }

    /// The canonical (RFC 8785) JSON that is signed.
    pub fn canonical(&self) -> Vec<u8> {
        serde_json_canonicalizer::to_vec(self).expect("a package serializes")
    }

    /// Signs the package.
    pub fn sign(self, key: &SecretKey) -> SignedPackage {
        let public = key.public();
        let signature = PackageSignature {
            key_id: public.id(),
            public_key: public.to_base64(),
            value: key.sign(Purpose::Package, &self.canonical()),
        };
        SignedPackage {
            format: FORMAT.into(),
            package: self,
            signature,
        }
    }
}

/// Who signed a package, and the signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageSignature {
    /// The signing key's id (sha256 of `public_key`'s bytes).
    pub key_id: KeyId,
    /// The signing key's 32 bytes, base64.
    pub public_key: String,
    /// The ed25519 signature, base64.
    pub value: String,
}

/// A package with its signature: the `.sig.json` file beside a component, and what the store
/// keeps for every version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedPackage {
    /// Always [`FORMAT`].
    pub format: String,
    /// The signed statement.
    pub package: Package,
    /// The signature.
    pub signature: PackageSignature,
}

/// Why a package was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PackageError {
    /// The JSON is not a package; `path` names the field.
    #[error("{0}")]
    Manifest(#[from] ManifestError),
    /// Another envelope format.
    #[error(
        "format '{0}' is not {FORMAT}: sign the package with this version's 'healthcloud app sign'"
    )]
    Format(String),
    /// The key or signature is refused.
    #[error("{0}")]
    Key(#[from] KeyError),
    /// `key_id` is not the id of `public_key`.
    #[error("the signature names key {named} but carries key {actual}")]
    KeyIdMismatch {
        /// The id the envelope names.
        named: KeyId,
        /// The id of the key it carries.
        actual: KeyId,
    },
    /// The bytes are not the ones that were signed.
    #[error("the component is not the one that was signed: {0}")]
    ComponentMismatch(String),
}

impl SignedPackage {
    /// Parses an envelope from JSON, checking the manifest inside it; errors name the field.
    pub fn from_json(text: &[u8]) -> Result<SignedPackage, PackageError> {
        let mut deserializer = serde_json::Deserializer::from_slice(text);
        let signed: SignedPackage =
            serde_path_to_error::deserialize(&mut deserializer).map_err(|e| ManifestError {
                path: match e.path().to_string() {
                    path if path == "." => "(document)".into(),
                    path => path,
                },
                message: e.inner().to_string(),
            })?;
        deserializer.end().map_err(|e| ManifestError {
            path: "(document)".into(),
            message: format!("trailing data after the package: {e}"),
        })?;
        if signed.format != FORMAT {
            return Err(PackageError::Format(signed.format));
        }
        signed
            .package
            .manifest()
            .check()
            .map_err(|e| ManifestError {
                path: format!("package.{}", e.path),
                ..e
            })?;
        let component = &signed.package.component;
        if KeyId::try_from(component.sha256.clone()).is_err() {
            return Err(ManifestError {
                path: "package.component.sha256".into(),
                message: "expected the component's sha256 as 64 lowercase hex characters".into(),
            }
            .into());
        }
        if component.size == 0 {
            return Err(ManifestError {
                path: "package.component.size".into(),
                message: "a component is never empty".into(),
            }
            .into());
        }
        // The canonical JSON that is signed writes numbers as doubles (RFC 8785): a larger
        // size would be signed rounded, so two sizes would share one signature.
        if component.size > MAX_EXACT_JSON_INTEGER {
            return Err(ManifestError {
                path: "package.component.size".into(),
                message: format!(
                    "{} is above {MAX_EXACT_JSON_INTEGER}, the largest size canonical JSON signs exactly",
                    component.size
                ),
            }
            .into());
        }
        Ok(signed)
    }

    /// The envelope as pretty JSON (the `.sig.json` file).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a package serializes")
    }

    /// Checks the signature and returns the key that made it. Whether that key belongs to the
    /// publisher and is still trusted is the store's and the runtime's question.
    pub fn verify(&self) -> Result<PublicKey, PackageError> {
        let key = PublicKey::from_base64(&self.signature.public_key)?;
        if key.id() != self.signature.key_id {
            return Err(PackageError::KeyIdMismatch {
                named: self.signature.key_id.clone(),
                actual: key.id(),
            });
        }
        key.verify(
            Purpose::Package,
            &self.package.canonical(),
            &self.signature.value,
        )?;
        Ok(key)
    }

    /// Checks that `bytes` are the component the package names.
    pub fn check_component(&self, bytes: &[u8]) -> Result<(), PackageError> {
        let signed = &self.package.component;
        if bytes.len() as u64 != signed.size {
            return Err(PackageError::ComponentMismatch(format!(
                "{} bytes, signed {}",
                bytes.len(),
                signed.size
            )));
        }
        let actual = digest(bytes);
        if actual != signed.sha256 {
            return Err(PackageError::ComponentMismatch(format!(
                "sha256 {actual}, signed {}",
                signed.sha256
            )));
        }
        Ok(())
    }
}

/// Where `healthcloud app sign` writes the envelope for the component at `wasm`:
/// `wasm` with `.sig.json` appended to its name.
pub fn signature_path(wasm: &std::path::Path) -> std::path::PathBuf {
    let mut name = wasm.as_os_str().to_owned();
    name.push(".sig.json");
    name.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest::parse(
            r#"
            [app]
            publisher = "acme"
            id = "notes"
            version = "1.0.0"
            name = "Notes"
            description = "d"
            audience = ["clinician"]

            [[capability]]
            name = "kv"
            justification = "keeps notes"
        "#,
        )
        .unwrap()
    }

    #[test]
    fn a_signed_package_round_trips_and_verifies() {
        let key = SecretKey::from_seed(&[1; 32]);
        let signed = Package::new(&manifest(), b"component bytes").sign(&key);
        let parsed = SignedPackage::from_json(signed.to_json().as_bytes()).unwrap();
        assert_eq!(parsed.verify().unwrap(), key.public());
        assert!(parsed.check_component(b"component bytes").is_ok());
        assert!(parsed.check_component(b"component byteS").is_err());
    }

    #[test]
    fn malformed_envelopes_name_the_field() {
        let key = SecretKey::from_seed(&[1; 32]);
        let mut json: serde_json::Value =
            serde_json::to_value(Package::new(&manifest(), b"c").sign(&key)).unwrap();
        json["package"]["capability"][0]["name"] = "patient/Nothing.zz".into();
        let error = SignedPackage::from_json(json.to_string().as_bytes()).unwrap_err();
        assert!(
            matches!(&error, PackageError::Manifest(e) if e.path == "package.capability[0].name"),
            "{error}"
        );
        json["package"]["app"]["version"] = "one".into();
        let error = SignedPackage::from_json(json.to_string().as_bytes()).unwrap_err();
        assert!(
            matches!(&error, PackageError::Manifest(e) if e.path == "package.app.version"),
            "{error}"
        );
        json["package"]["app"]["version"] = "1.0.0".into();
        let trailing = format!("{json} {{\"more\": 1}}");
        let error = SignedPackage::from_json(trailing.as_bytes()).unwrap_err();
        assert!(error.to_string().contains("trailing data"), "{error}");
        json["package"]["app"]["extra"] = "x".into();
        let error = SignedPackage::from_json(json.to_string().as_bytes()).unwrap_err();
        assert!(
            matches!(&error, PackageError::Manifest(e) if e.path.starts_with("package.app")),
            "{error}"
        );
    }

    #[test]
    fn a_size_that_canonical_json_would_round_is_refused() {
        // 2^53 + 1 is written as 2^53 in the signed bytes: the signature of one size would
        // hold for another.
        let key = SecretKey::from_seed(&[1; 32]);
        let mut json: serde_json::Value =
            serde_json::to_value(Package::new(&manifest(), b"c").sign(&key)).unwrap();
        json["package"]["component"]["size"] = (MAX_EXACT_JSON_INTEGER + 2).into();
        let error = SignedPackage::from_json(json.to_string().as_bytes()).unwrap_err();
        assert!(
            matches!(&error, PackageError::Manifest(e) if e.path == "package.component.size"
                && e.message.contains("the largest size canonical JSON signs exactly")),
            "{error}"
        );
        json["package"]["component"]["size"] = MAX_EXACT_JSON_INTEGER.into();
        assert!(SignedPackage::from_json(json.to_string().as_bytes()).is_ok());
    }
}
