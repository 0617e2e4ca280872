//! # healthcloud-store
//!
//! The app store service: publishers and their keys, publishing, the catalog, and the signed
//! revocation feed, on the shared database. It never runs guest code. What it stores and
//! signs (manifests, keys, signed packages, the feed's wire types) is the package contract,
//! `healthcloud_package`, which the runtime and the CLI share without this service.
//!
//! - [`service`]: the store's HTTP API (`/store/v1`), catalog pages (`/store`) and signed
//!   revocation feed.
#![deny(missing_docs)]

pub mod service;
