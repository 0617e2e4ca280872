//! # healthcloud-package
//!
//! The app package contract: what a vendor publishes, what the store signs, and what a
//! runtime checks before it installs or keeps serving an app. The store service, the runtime
//! and the CLI share it; it holds no server and never runs guest code.
//!
//! - [`manifest`] reads an app's `healthcloud.toml`: who publishes it, its version, its
//!   audience and the capabilities it requests, each with a justification and a plain-language
//!   explanation. The runtime checks a component's imports against those capabilities when it
//!   installs it, and regions grant a subset of them.
//! - [`address`] tells destinations inside a network (loopback, private, link-local,
//!   metadata, …) from public ones, for publish, install and the runtime's connect-time check.
//! - [`keys`] and [`package`]: ed25519 keys (id = sha256 of the public key) and packages
//!   signed over the canonical JSON of the manifest plus the component's digest and size. The
//!   CLI signs with them, the store and the runtime verify with them.
//! - [`feed`]: the store's signed revocation feed as it travels, and how a runtime verifies it.
//! - [`catalog`]: the store API's catalog answers.
//! - [`client`]: the HTTP client of the store API (and of the server's other JSON APIs).
//!
//! # Examples
//!
//! ```
//! use healthcloud_package::manifest::{Capability, Manifest};
//!
//! let manifest = Manifest::parse(r#"
//!     [app]
//!     publisher = "examples"
//!     id = "bp-monitor"
//!     version = "0.1.0"
//!     name = "Blood pressure monitor"
//!     description = "Blood-pressure trend for heart patients."
//!     audience = ["clinician"]
//!
//!     [[capability]]
//!     name = "patient/Observation.rs?category=vital-signs"
//!     justification = "Shows the patient's blood-pressure readings."
//! "#)?;
//! assert_eq!(manifest.full_id(), "examples/bp-monitor");
//! assert!(matches!(manifest.capabilities()[0], Capability::Data(_)));
//!
//! // Signed by the vendor; verified by anyone against the bytes.
//! use healthcloud_package::keys::SecretKey;
//! use healthcloud_package::package::Package;
//! let component = b"\0asm\x0d\0\x01\0";
//! let key = SecretKey::generate();
//! let signed = Package::new(&manifest, component).sign(&key);
//! assert_eq!(signed.verify().unwrap(), key.public());
//! assert!(signed.check_component(component).is_ok());
//! assert!(signed.check_component(b"other bytes").is_err());
//! # Ok::<(), healthcloud_package::manifest::ManifestError>(())
//! ```
#![deny(missing_docs)]

pub use healthcloud_platform::address;
pub mod catalog;
pub mod client;
pub mod feed;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod keys;
pub mod manifest;
pub mod package;
