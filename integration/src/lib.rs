//! # healthcloud-integration
//!
//! The integration cloud: patients' data exposed as FHIR R4, with SMART App Launch v2 scopes,
//! patient consent (opt-outs) and an audit trail every citizen can read.
//!
//! - [`FhirService`] is the one front door to patient data. It runs the policy engine
//!   ([`policy`]: region grant ∩ token scopes ∩ patient compartment ∩ consent) on every
//!   access and writes an AuditEvent before answering. The FHIR API ([`api`]) and the app
//!   runtime both call it.
//! - [`store::EmbeddedStore`] keeps resources as JSON with search-index rows on SQLite
//!   (default) or PostgreSQL (the platform's database, brought to this crate's schema by
//!   [`open_database`]): the home of the data the platform itself holds.
//! - [`sources::Sources`] are the organizations' own FHIR servers ([`upstream`]), read through
//!   for each patient's compartment ([`federation`]), patients matched by CPR number
//!   ([`patient_index`]); nothing they hold is copied.
//!   They are configured in the data directory's `sources.toml` ([`sources_file`]) and
//!   managed by platform operators through `/admin/v1/sources` ([`admin`]).
//! - Tokens, scopes and the database itself are the platform's (`healthcloud_platform`),
//!   shared with the app cloud and the store.
//! - [`import`] loads FHIR Bundles, and synthetic patients from `healthcloud-synth`.
//!
//! # Examples
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> anyhow::Result<()> {
//! use healthcloud_integration::Integration;
//! use healthcloud_platform::auth::{Role, TokenRequest};
//!
//! let dir = tempfile::tempdir()?;
//! let url = format!("sqlite://{}", dir.path().join("fhir.db").display());
//! let integration = Integration::open(&url, "http://127.0.0.1:8080", dir.path()).await?;
//! let token = integration.issuer.mint(Role::Clinician, TokenRequest::default()).map_err(anyhow::Error::msg)?;
//! let principal = integration.state.verifier.verify(&token)?;
//! assert_eq!(principal.claims.role, Role::Clinician);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod admin;
pub mod api;
pub mod audit;
pub mod consent;
pub mod date;
pub mod deidentify;
pub mod elements;
pub mod error;
pub mod evaluate;
pub mod federation;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod import;
pub mod params;
pub mod patient_index;
pub mod policy;
pub mod profiles;
pub mod query;
pub mod ratelimit;
pub mod security;
pub mod service;
pub mod shape;
pub mod sources;
pub mod sources_file;
pub mod store;
pub mod text;
pub mod topics;
pub mod upstream;
pub mod validate;
pub mod webhook;

use std::path::Path;
use std::sync::Arc;

use healthcloud_platform::auth;
use healthcloud_platform::auth::keys::SigningKeys;
use healthcloud_platform::auth::smart::{AuthorizationEndpoints, Clients};
use healthcloud_platform::db::{Database, Migrations};

pub use error::FhirError;
pub use service::FhirService;

/// Largest FHIR request body accepted by default (1 MiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

/// An opened integration cloud: database, service, token verifier and API state.
#[derive(Debug)]
pub struct Integration {
    /// The database, for the services the composition hands it to (the app runtime's and the
    /// store's own tables). Patient data in it is read and written only through
    /// [`FhirService`], whose policy engine judges every access.
    pub database: Database,
    /// State for [`api::router`].
    pub state: api::FhirState,
    /// The development token issuer of this data directory; its tokens are for this FHIR
    /// API and the app cloud under the same public URL unless a request names others.
    pub issuer: auth::TokenIssuer,
    /// The public base URL, e.g. `http://127.0.0.1:8080`.
    pub public_url: String,
}

impl Integration {
    /// Opens the database at `database_url`, with the development issuer key of `data_dir`,
    /// serving links under `public_url` (e.g. `http://127.0.0.1:8080`).
    pub async fn open(
        database_url: &str,
        public_url: &str,
        data_dir: &Path,
    ) -> anyhow::Result<Self> {
        let db = open_database(database_url).await?;
        let public_url = public_url.trim_end_matches('/').to_owned();
        let fhir_audience = auth::fhir_audience(&public_url);
        let issuer = auth::TokenIssuer::dev(data_dir)?.with_audience(vec![
            fhir_audience.clone(),
            auth::apps_audience(&public_url),
        ]);
        let service = FhirService::new(
            store::EmbeddedStore::new(db.clone()),
            query::PageLimits::default(),
        );
        let state = api::FhirState {
            service,
            verifier: issuer.verifier(),
            config: Arc::new(api::FhirConfig {
                base_url: fhir_audience.clone(),
                audience: fhir_audience,
                max_body_bytes: DEFAULT_MAX_BODY_BYTES,
                cors_origins: Vec::new(),
                authorization: None,
                subscription_endpoints: webhook::EndpointPolicy::default(),
            }),
        };
        Ok(Integration {
            database: db,
            state,
            issuer,
            public_url,
        })
    }

    /// This FHIR API taking the tokens of healthcloud's authorization server at `endpoints`
    /// (signed with `keys`, issued to `clients`), and advertising it to SMART clients.
    pub fn with_authorization_server(
        mut self,
        endpoints: AuthorizationEndpoints,
        keys: SigningKeys,
        clients: Clients,
    ) -> Self {
        self.state.verifier = self.state.verifier.clone().with_authorization_server(
            endpoints.issuer(),
            keys,
            clients,
        );
        let mut config = (*self.state.config).clone();
        config.authorization = Some(endpoints);
        self.state.config = Arc::new(config);
        self
    }

    /// The HTTP routes of the integration cloud (`/fhir/r4/…`).
    pub fn router(&self) -> axum::Router {
        api::mount(self.state.clone())
    }
}

/// Connects to the database at `database_url` (`sqlite://PATH` or `postgres://…`) and brings
/// it to the integration cloud's schema: its migrations, then the reindexing of resources a
/// migration queued, with the code that indexes every write, before anything is served.
pub async fn open_database(database_url: &str) -> anyhow::Result<Database> {
    let database = Database::connect(database_url).await?;
    let migrations = Migrations {
        sqlite: sqlx::migrate!("./migrations/sqlite"),
        postgres: sqlx::migrate!("./migrations/postgres"),
    };
    database.apply(migrations, "FHIR store").await?;
    let reindexed = store::EmbeddedStore::new(database.clone())
        .reindex_queued()
        .await
        .map_err(|e| anyhow::anyhow!("reindexing after a database migration failed: {e}"))?;
    if reindexed > 0 {
        tracing::info!(reindexed, "resources reindexed after a database migration");
    }
    Ok(database)
}
