//! The store service: publishers and keys, publishing, the catalog and the revocation feed,
//! under `/store/v1` (JSON) and `/store` (HTML).
//!
//! The store never runs guest code. It checks a component with the runtime's install-time
//! check, handed in as a [`ComponentCheck`] (which compiles but never instantiates).

mod blobs;
mod catalog;
mod error;
mod openapi;
mod pages;
mod publish;
mod publishers;
mod revocations;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::FromRef;
use healthcloud_platform::auth::{AuthError, Principal, Role, TokenVerifier};
use healthcloud_platform::db::{Database, Migrations};
use sqlx::Row;

pub use blobs::Recovered;
pub use error::StoreError;

use healthcloud_package::keys::SecretKey;
use healthcloud_package::manifest::Manifest;

/// The runtime's install-time check of a component against its manifest: `Err` says why it
/// would not install.
pub type ComponentCheck = Arc<dyn Fn(&Manifest, &[u8]) -> Result<(), String> + Send + Sync>;

/// Limits and timings of the store, each with a default.
#[derive(Debug, Clone)]
pub struct StoreLimits {
    /// The largest component accepted, in bytes.
    pub max_component_bytes: u64,
    /// How long a component upload may take.
    pub upload_time: Duration,
    /// How long a signed revocation feed is valid; a runtime holding an older one knows the
    /// feed is frozen, not quiet.
    pub feed_ttl: Duration,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            max_component_bytes: 32 * 1024 * 1024,
            upload_time: Duration::from_secs(600),
            feed_ttl: Duration::from_secs(300),
        }
    }
}

/// What the store needs to run.
pub struct StoreConfig {
    /// The database (shared with the rest of the system).
    pub db: Database,
    /// Where components and the store's feed key live (`<dir>/blobs`, `<dir>/store.key`).
    pub dir: PathBuf,
    /// Verifies bearer tokens.
    pub verifier: TokenVerifier,
    /// The runtime's install-time check.
    pub check: ComponentCheck,
    /// Limits.
    pub limits: StoreLimits,
}

/// The running store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    blobs: blobs::Blobs,
    verifier: TokenVerifier,
    check: ComponentCheck,
    limits: StoreLimits,
    feed_key: SecretKey,
    /// Counts committed revocations, for followers in this process.
    revoked: tokio::sync::watch::Sender<u64>,
    /// Crash testing: the publish step at which to stop and wait to be killed.
    pause_at: Option<String>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("feed_key", &self.inner.feed_key)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Migrates the database, recovers from an interrupted publish (temporaries and
    /// unreferenced blobs are removed) and loads or creates the feed signing key.
    pub async fn open(config: StoreConfig) -> anyhow::Result<(Store, Recovered)> {
        migrate(&config.db).await?;
        std::fs::create_dir_all(&config.dir)?;
        let blobs = blobs::Blobs::open(&config.dir.join("blobs"))?;
        let referenced: HashSet<String> = sqlx::query("SELECT DISTINCT sha256 FROM store_versions")
            .fetch_all(config.db.pool())
            .await?
            .iter()
            .map(|row| row.get::<String, _>(0))
            .collect();
        let recovered = blobs.recover(&referenced)?;
        if recovered != Recovered::default() {
            tracing::warn!(
                temporaries = recovered.temporaries,
                orphans = recovered.orphans,
                "removed what an interrupted publish left behind"
            );
        }
        for sha256 in &referenced {
            if !blobs.path(sha256).exists() {
                tracing::error!(%sha256, "a published component is missing from the store's disk");
            }
        }
        let feed_key = load_or_create_key(&config.dir.join("store.key"))?;
        let store = Store {
            inner: Arc::new(Inner {
                db: config.db,
                blobs,
                verifier: config.verifier,
                check: config.check,
                limits: config.limits,
                feed_key,
                revoked: tokio::sync::watch::Sender::new(0),
                pause_at: std::env::var(PAUSE_AT).ok(),
            }),
        };
        Ok((store, recovered))
    }

    /// The store's routes: `/store/v1/…` (JSON API, OpenAPI at `/store/v1/openapi.json`) and
    /// `/store` (catalog pages).
    pub fn router(&self) -> Router {
        let api = Router::new()
            .merge(publishers::router())
            .merge(publish::router(&self.inner.limits))
            .merge(catalog::router())
            .merge(revocations::router())
            .merge(openapi::router());
        Router::new()
            .nest("/store/v1", api)
            .merge(pages::router())
            .with_state(self.clone())
    }

    /// The public key that signs the revocation feed.
    pub fn feed_key(&self) -> healthcloud_package::keys::PublicKey {
        self.inner.feed_key.public()
    }

    fn db(&self) -> &Database {
        &self.inner.db
    }
}

/// The caller of a request: the platform's [`Principal`] extractor, taken as a `Result` so
/// each handler decides where among its checks a missing or bad token is refused.
type Caller = Result<Principal, AuthError>;

impl FromRef<Store> for TokenVerifier {
    fn from_ref(store: &Store) -> TokenVerifier {
        store.inner.verifier.clone()
    }
}

/// The caller, who must have sent a valid token.
fn authenticated(caller: Caller) -> Result<Principal, StoreError> {
    caller.map_err(|e| StoreError::Unauthorized(e.to_string()))
}

/// The caller, who must be a store admin.
fn store_admin(caller: Caller) -> Result<Principal, StoreError> {
    let principal = authenticated(caller)?;
    if principal.claims.role != Role::StoreAdmin {
        return Err(StoreError::Forbidden(format!(
            "this needs a store-admin token; yours is for role {}",
            principal.claims.role.as_str()
        )));
    }
    Ok(principal)
}

/// The caller, who must be `publisher` (a publisher token whose subject is the publisher id)
/// or, when `or_admin`, a store admin.
fn publisher_or_admin(
    caller: Caller,
    publisher: &str,
    or_admin: bool,
) -> Result<Principal, StoreError> {
    let principal = authenticated(caller)?;
    acts_for(&principal, publisher, or_admin)?;
    Ok(principal)
}

/// Whether `principal` may act for `publisher`, as [`publisher_or_admin`] checks it.
fn acts_for(principal: &Principal, publisher: &str, or_admin: bool) -> Result<(), StoreError> {
    let claims = &principal.claims;
    let allowed = (claims.role == Role::Publisher && claims.sub == publisher)
        || (or_admin && claims.role == Role::StoreAdmin);
    if !allowed {
        return Err(StoreError::Forbidden(format!(
            "only publisher '{publisher}' may do this (your token is {} '{}'): use a publisher token whose user is '{publisher}'",
            claims.role.as_str(),
            claims.sub
        )));
    }
    Ok(())
}

/// Crash testing: set to a publish step (`uploading`, `uploaded`, `validated`, `placed`,
/// `recorded`, `committed`) and every publish stops there for good, after saying so on
/// stderr, so a test can kill the process at exactly that point.
pub const PAUSE_AT: &str = "HEALTHCLOUD_STORE_PAUSE_AT";

impl Store {
    async fn pause_point(&self, step: &str) {
        if self.inner.pause_at.as_deref() == Some(step) {
            eprintln!("store: publish paused at step '{step}' ({PAUSE_AT})");
            std::future::pending::<()>().await;
        }
    }
}

/// Now, as stored: RFC 3339 UTC with microseconds (so times compare as text).
fn now() -> String {
    timestamp(chrono::Utc::now())
}

fn timestamp(time: chrono::DateTime<chrono::Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Serializes writers of `key` across store nodes ([`Database::lock`]).
async fn lock(
    db: &Database,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    key: &str,
) -> sqlx::Result<()> {
    db.lock(tx, &format!("store:{key}")).await
}

fn load_or_create_key(path: &Path) -> anyhow::Result<SecretKey> {
    if path.exists() {
        return SecretKey::read(path);
    }
    let key = SecretKey::generate();
    key.write(path)?;
    tracing::info!(key_id = %key.public().id(), "created the store's feed signing key");
    Ok(key)
}

async fn migrate(db: &Database) -> anyhow::Result<()> {
    let migrations = Migrations {
        sqlite: sqlx::migrate!("./migrations/sqlite"),
        postgres: sqlx::migrate!("./migrations/postgres"),
    };
    db.apply(migrations, "app store").await
}
