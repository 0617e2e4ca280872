//! # healthcloud-runtime
//!
//! The app cloud: a WebAssembly (component model) host that runs third-party health apps and
//! lets them reach patient data only through the integration cloud's policy engine
//! (`healthcloud_integration::FhirService`). It is the only
//! crate that will depend on wasmtime. Not built yet: this crate marks its place in the
//! workspace.
#![deny(missing_docs)]
