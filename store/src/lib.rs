//! # healthcloud-store
//!
//! The app store: packages and their manifests. It never runs guest code.
//!
//! [`manifest`] reads an app's `healthcloud.toml`: who publishes it, its version, its
//! audience and the capabilities it requests, each with a justification. The runtime checks a
//! component's imports against those capabilities when it installs it, and regions grant a
//! subset of them.
//!
//! # Examples
//!
//! ```
//! use healthcloud_store::manifest::{Capability, Manifest};
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
//! # Ok::<(), healthcloud_store::manifest::ManifestError>(())
//! ```
#![deny(missing_docs)]

pub mod keys;
pub mod manifest;
pub mod package;
pub mod service;
