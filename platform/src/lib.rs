//! # healthcloud-platform
//!
//! What every healthcloud service stands on, and none of them owns: the integration cloud
//! (FHIR API), the app cloud (runtime, region admin API) and the app store meet here instead
//! of in each other's crates.
//!
//! - [`db`]: the database pool (SQLite or PostgreSQL) and the runner of each crate's own
//!   migrations.
//! - [`auth`]: tokens, their issuers and verifier, roles, and the authenticated
//!   [`Principal`](auth::Principal), an axum extractor every service uses.
//! - [`scope`]: SMART App Launch v2 scopes.
//! - [`http`]: the JSON error body, the security headers of pages and cookies.
//!
//! # Examples
//!
//! ```
//! use healthcloud_platform::auth::{Role, TokenIssuer, TokenRequest};
//!
//! let issuer = TokenIssuer::generate("https://issuer.example")
//!     .with_audience(vec!["http://127.0.0.1:8080/fhir/r4".into()]);
//! let token = issuer.mint(Role::Clinician, TokenRequest::default()).map_err(anyhow::Error::msg)?;
//! let principal = issuer.verifier().verify(&token)?;
//! assert_eq!(principal.claims.role, Role::Clinician);
//! # Ok::<(), anyhow::Error>(())
//! ```
#![deny(missing_docs)]

pub mod address;
pub mod auth;
pub mod db;
pub mod http;
pub mod scope;
#[cfg(feature = "testing")]
pub mod testing;
