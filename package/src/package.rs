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
use crate::manifest::{AppInfo, Manifest, ManifestError, RequestedCapability, SmartWebApp};

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
    /// The component's digest and size: for a SMART web app, its registration document's
    /// ([`SmartWebApp::document`]).
    pub component: ComponentRef,
    /// A SMART web app's registration (the manifest's `[smart]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smart: Option<SmartWebApp>,
}

impl Package {
    /// The package of `manifest` for the component `bytes`.
    pub fn new(manifest: &Manifest, bytes: &[u8]) -> Package {
        Package {
            app: manifest.app.clone(),
            requested: manifest.requested.clone(),
            component: ComponentRef::of(bytes),
            smart: manifest.smart.clone(),
        }
    }

    /// The package of a SMART web app's `manifest`: its component is its registration
    /// document.
    pub fn of_smart(manifest: &Manifest) -> Option<(Package, Vec<u8>)> {
        let document = manifest.smart.as_ref()?.document();
        Some((Package::new(manifest, &document), document))
    }

    /// The manifest part.
    pub fn manifest(&self) -> Manifest {
        Manifest {
            app: self.app.clone(),
            requested: self.requested.clone(),
            smart: self.smart.clone(),
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

    /// Checks that `bytes` are the component the package names, and for a SMART web app that
    /// they are its registration document.
    pub fn check_component(&self, bytes: &[u8]) -> Result<(), PackageError> {
        if let Some(smart) = &self.package.smart
            && bytes != smart.document().as_slice()
        {
            return Err(PackageError::ComponentMismatch(
                "a SMART web app's component is its [smart] table as canonical JSON (healthcloud app publish writes it)".into(),
            ));
        }
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

/// The store's word on one published version, signed with the store's key
/// ([`Purpose::Version`]): the package with this canonical digest, signed by `key_id`, was
/// accepted as `publisher/app@version`, and that key is the publisher's and in good standing
/// for it. A runtime trusts a package's publisher only through this record, verified with the
/// store's pinned key: the store's other answers travel unsigned, and anyone between (or a
/// fake store) could say a key of their own belongs to any publisher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionRecord {
    /// The key that signs the record (the store's feed key).
    pub store_key_id: KeyId,
    /// The publisher.
    pub publisher: String,
    /// The app.
    pub app: String,
    /// The version.
    pub version: String,
    /// sha256 of the package's canonical JSON ([`Package::canonical`]): the manifest, the
    /// capabilities and the component's digest and size, exactly as signed.
    pub package_sha256: String,
    /// The publisher's key that signed the package.
    pub key_id: KeyId,
    /// When the store accepted the version.
    pub published_at: String,
    /// When the publisher yanked it (no new installs), if they did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yanked_at: Option<String>,
    /// When this record was made.
    pub issued_at: String,
    /// After this the record proves nothing: ask the store again.
    pub expires_at: String,
}

/// A [`VersionRecord`] with the store's signature over its RFC 8785 canonical JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedVersionRecord {
    /// What is signed.
    pub record: VersionRecord,
    /// base64 ed25519 signature (purpose `healthcloud version v1`).
    pub signature: String,
}

/// Why a version record does not vouch for a package.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecordError {
    /// Not signed by the store's pinned key.
    #[error(
        "its version record is not signed by the app store's pinned key {pinned} ({source}): the answer did not come from that store"
    )]
    Signature {
        /// The pinned key's id.
        pinned: KeyId,
        /// Why the signature does not hold.
        source: KeyError,
    },
    /// Past its expiry (or with an unreadable one).
    #[error("its version record expired at {0}: ask the store again")]
    Expired(String),
    /// A record about another package.
    #[error("the store's version record is about {0}, not this package")]
    OtherPackage(String),
}

impl VersionRecord {
    /// The record of `signed`, published at `published_at`, valid from `issued` for `ttl`.
    pub fn of(
        signed: &SignedPackage,
        store_key_id: KeyId,
        (published_at, yanked_at): (String, Option<String>),
        issued: chrono::DateTime<chrono::Utc>,
        ttl: chrono::Duration,
    ) -> VersionRecord {
        let stamp = |at: chrono::DateTime<chrono::Utc>| {
            at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        };
        VersionRecord {
            store_key_id,
            publisher: signed.package.app.publisher.clone(),
            app: signed.package.app.id.clone(),
            version: signed.package.app.version.to_string(),
            package_sha256: digest(&signed.package.canonical()),
            key_id: signed.signature.key_id.clone(),
            published_at,
            yanked_at,
            issued_at: stamp(issued),
            expires_at: stamp(issued + ttl),
        }
    }

    /// The canonical JSON that is signed.
    fn canonical(&self) -> Vec<u8> {
        serde_json_canonicalizer::to_vec(self).expect("a record serializes")
    }

    /// Signs the record with the store's key.
    pub fn sign(self, store_key: &SecretKey) -> SignedVersionRecord {
        SignedVersionRecord {
            signature: store_key.sign(Purpose::Version, &self.canonical()),
            record: self,
        }
    }
}

impl SignedVersionRecord {
    /// Checks that the store's pinned key signed this record, that it has not expired at
    /// `now`, and that it is about exactly `signed` (the same id, version, canonical package
    /// and signing key). Then the store vouches that `signed`'s key is its publisher's.
    pub fn vouches_for(
        &self,
        store_key: &PublicKey,
        signed: &SignedPackage,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), RecordError> {
        store_key
            .verify(Purpose::Version, &self.record.canonical(), &self.signature)
            .map_err(|source| RecordError::Signature {
                pinned: store_key.id(),
                source,
            })?;
        let record = &self.record;
        let expired = chrono::DateTime::parse_from_rfc3339(&record.expires_at)
            .map(|at| at <= now)
            .unwrap_or(true);
        if expired {
            return Err(RecordError::Expired(record.expires_at.clone()));
        }
        let app = &signed.package.app;
        if (&record.publisher, &record.app) != (&app.publisher, &app.id)
            || record.version != app.version.to_string()
        {
            return Err(RecordError::OtherPackage(format!(
                "{}/{}@{}",
                record.publisher, record.app, record.version
            )));
        }
        if record.key_id != signed.signature.key_id {
            return Err(RecordError::OtherPackage(format!(
                "a package signed by key {}",
                record.key_id
            )));
        }
        if record.package_sha256 != digest(&signed.package.canonical()) {
            return Err(RecordError::OtherPackage(format!(
                "the package with digest {}",
                record.package_sha256
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

    #[test]
    fn a_smart_web_apps_component_is_its_registration_document() {
        let manifest = Manifest::parse(
            r#"
            [app]
            publisher = "acme"
            id = "bp-diary"
            version = "1.0.0"
            name = "BP diary"
            description = "d"
            audience = ["patient"]
            [smart]
            launch_url = "https://bp-diary.example/launch"
            redirect_uris = ["https://bp-diary.example/callback"]
            "#,
        )
        .unwrap();
        let (package, document) = Package::of_smart(&manifest).unwrap();
        let key = SecretKey::generate();
        let signed = package.sign(&key);
        let parsed = SignedPackage::from_json(signed.to_json().as_bytes()).unwrap();
        parsed.verify().unwrap();
        parsed.check_component(&document).unwrap();
        assert_eq!(parsed.package.smart, manifest.smart);
        // Any other bytes, even a document of other URLs, are not the signed registration.
        let mut other = manifest.smart.clone().unwrap();
        other.redirect_uris = vec!["https://attacker.example/cb".into()];
        assert!(parsed.check_component(&other.document()).is_err());
    }

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
    fn a_version_record_vouches_only_for_its_package_under_the_store_key() {
        let store = SecretKey::from_seed(&[9; 32]);
        let publisher = SecretKey::from_seed(&[1; 32]);
        let signed = Package::new(&manifest(), b"component bytes").sign(&publisher);
        let now = chrono::Utc::now();
        let record = |signed: &SignedPackage| {
            VersionRecord::of(
                signed,
                store.public().id(),
                ("2026-01-01T00:00:00Z".into(), None),
                now,
                chrono::Duration::minutes(5),
            )
        };
        let good = record(&signed).sign(&store);
        assert_eq!(good.vouches_for(&store.public(), &signed, now), Ok(()));

        let forged = record(&signed).sign(&SecretKey::from_seed(&[2; 32]));
        let error = forged
            .vouches_for(&store.public(), &signed, now)
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("not signed by the app store's pinned key"),
            "{error}"
        );

        let later = now + chrono::Duration::minutes(6);
        assert!(matches!(
            good.vouches_for(&store.public(), &signed, later),
            Err(RecordError::Expired(_))
        ));

        // The same manifest and bytes, signed by another key: the record is not about it.
        let self_signed =
            Package::new(&manifest(), b"component bytes").sign(&SecretKey::from_seed(&[3; 32]));
        let error = good
            .vouches_for(&store.public(), &self_signed, now)
            .unwrap_err();
        assert!(error.to_string().contains("signed by key"), "{error}");

        let mut other = manifest();
        other.requested.clear();
        let other = Package::new(&other, b"component bytes").sign(&publisher);
        let error = good.vouches_for(&store.public(), &other, now).unwrap_err();
        assert!(error.to_string().contains("digest"), "{error}");

        // A signature over the record made for another purpose does not hold.
        let mut moved = good.clone();
        moved.signature = store.sign(Purpose::Revocations, &good.record.canonical());
        assert!(moved.vouches_for(&store.public(), &signed, now).is_err());
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
