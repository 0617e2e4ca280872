//! # healthcloud-sdk
//!
//! What an app vendor depends on to write a healthcloud app: the guest bindings of the WIT
//! contract in `wit/`. It never depends on the host crates. Not built yet: this crate marks
//! its place in the workspace.
#![deny(missing_docs)]
