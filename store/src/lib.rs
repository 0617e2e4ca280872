//! # healthcloud-store
//!
//! The app store: signed packages, publishers and their keys, immutable versions, a
//! revocation feed and the catalog. It never runs guest code. Not built yet: this crate marks
//! its place in the workspace.
#![deny(missing_docs)]
