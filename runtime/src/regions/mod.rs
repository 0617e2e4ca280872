//! Region installs that last and that every runtime node shares.
//!
//! The database is the truth: `region_installs` holds what each region installed (the signed
//! package as verified, the grant, a pending upgrade), `runtime_revocations` what the store
//! revoked. Every node serves from memory and brings its memory in line with those rows
//! ([`Runtime::sync_regions`]) when they change: at once on the node that changed them, through
//! PostgreSQL `NOTIFY` on the others, and by polling one counter row in any case. Component
//! bytes live on each node's disk under their sha256 and are verified against the signed
//! package whenever they are loaded; a node missing them downloads them from the store.
//!
//! - [`admin`]: the region admin API, `/admin/v1/regions/{region}/…`.
//! - [`openapi`]: its OpenAPI document, `/admin/v1/openapi.json`, from the handlers' annotations.
//! - [`feed`]: following the store's revocation feed (push plus poll; fail closed when it
//!   expires).
//! - [`trust`]: what the node believes of the store: only what its pinned key signs, and a
//!   store's key is pinned on first use only on loopback.

pub mod admin;
pub mod feed;
pub mod openapi;
pub mod smart;
pub mod trust;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::Context;
use healthcloud_package::client::{AppVersion, StoreClient};
use healthcloud_package::keys::PublicKey;
use healthcloud_package::manifest::Capability;
use healthcloud_package::package::SignedPackage;
use healthcloud_platform::db::Database;
use sqlx::Row;

use crate::{Grant, Install, Runtime};

/// The PostgreSQL channel notified when `region_installs` changes.
pub const CHANNEL: &str = "healthcloud_regions";

/// How a runtime node reaches the app store and keeps its installs.
pub struct RegionsConfig {
    /// The store's API (`…/store/v1`): packages, components and the revocation feed. Its
    /// download time limit ([`StoreClient::with_download_timeout`]) bounds every version
    /// fetch and component download.
    pub store: StoreClient,
    /// The key the store signs its revocation feed and version records with. `None`: only
    /// for a store on loopback, whose key is pinned in the database from its first answer
    /// (any other key is refused from then on); a store elsewhere is refused
    /// ([`RegionsConfig::check_store_trust`]).
    pub feed_key: Option<PublicKey>,
    /// Where this node keeps component bytes (`<dir>/sha256/<hex>`).
    pub components_dir: PathBuf,
    /// How often the feed and the installs are checked without a push.
    pub poll: Duration,
    /// Pushes from a store in this process: fetch the feed at once.
    pub push: Option<tokio::sync::watch::Receiver<u64>>,
}

/// A version the store revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// Why, as the store said it.
    pub reason: String,
    /// When.
    pub at: String,
}

/// The node's region state beyond what [`Install`] holds.
pub(crate) struct Regions {
    db: Database,
    store: StoreClient,
    components: PathBuf,
    pub(crate) feed: feed::FeedState,
    /// `publisher/app` → version → why it was revoked. Nested so that the check every
    /// request makes looks up borrowed strings, allocating nothing.
    revoked: RwLock<HashMap<String, HashMap<String, Revoked>>>,
    /// Grant changes and removals are applied by one sync at a time.
    syncing: tokio::sync::Mutex<()>,
    /// The change count the last sync saw.
    seen: AtomicI64,
    /// Installs being loaded now, so two syncs never compile the same one twice.
    loading: Mutex<HashSet<(String, String, String)>>,
}

impl std::fmt::Debug for Regions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Regions")
            .field("store", &self.store.server())
            .field("components", &self.components)
            .finish_non_exhaustive()
    }
}

/// One row of `region_installs`.
#[derive(Debug, Clone)]
pub(crate) struct InstallRow {
    pub region: String,
    pub app: String,
    pub version: String,
    pub sha256: String,
    pub package: String,
    pub granted: Vec<Capability>,
    pub installed_at: String,
    pub updated_at: String,
    pub pending: Option<PendingRow>,
    /// The region admin allowed `outbound-http:` destinations inside the network.
    pub allow_internal_addresses: bool,
}

/// An upgrade waiting for a region admin's approval.
#[derive(Debug, Clone)]
pub(crate) struct PendingRow {
    pub version: String,
    pub package: String,
    pub added: Vec<Capability>,
}

const INSTALL_COLUMNS: &str = "region, app, version, sha256, package, granted, installed_at, \
     updated_at, pending_version, pending_sha256, pending_package, pending_added, \
     allow_internal_addresses";

fn install_row(row: &sqlx::any::AnyRow) -> anyhow::Result<InstallRow> {
    let pending_version: Option<String> = row.get(8);
    let pending = match pending_version {
        Some(version) => Some(PendingRow {
            version,
            package: row.get(10),
            added: capabilities_from_json(&row.get::<String, _>(11))?,
        }),
        None => None,
    };
    Ok(InstallRow {
        region: row.get(0),
        app: row.get(1),
        version: row.get(2),
        sha256: row.get(3),
        package: row.get(4),
        granted: capabilities_from_json(&row.get::<String, _>(5))?,
        installed_at: row.get(6),
        updated_at: row.get(7),
        pending,
        allow_internal_addresses: row.get::<i64, _>(12) != 0,
    })
}

pub(crate) fn capabilities_to_json(capabilities: &[Capability]) -> String {
    let names: Vec<String> = capabilities.iter().map(ToString::to_string).collect();
    serde_json::to_string(&names).expect("strings serialize")
}

fn capabilities_from_json(text: &str) -> anyhow::Result<Vec<Capability>> {
    let names: Vec<String> = serde_json::from_str(text).context("a stored grant")?;
    names
        .iter()
        .map(|name| Capability::parse(name).map_err(|e| anyhow::anyhow!("a stored grant: {e}")))
        .collect()
}

impl Regions {
    pub(crate) fn db(&self) -> &Database {
        &self.db
    }

    pub(crate) fn store(&self) -> &StoreClient {
        &self.store
    }

    /// Every install row, or those of one region.
    pub(crate) async fn rows(&self, region: Option<&str>) -> anyhow::Result<Vec<InstallRow>> {
        install_rows(&self.db, region).await
    }

    /// One install row.
    pub(crate) async fn row(&self, region: &str, app: &str) -> anyhow::Result<Option<InstallRow>> {
        let mut select = self.db.sql(&format!(
            "SELECT {INSTALL_COLUMNS} FROM region_installs WHERE region = "
        ));
        select.bind(region).push(" AND app = ").bind(app);
        select
            .query()
            .fetch_optional(self.db.pool())
            .await?
            .as_ref()
            .map(install_row)
            .transpose()
    }

    /// Why `app@version` was revoked, if it was.
    pub(crate) fn revocation(&self, app: &str, version: &str) -> Option<Revoked> {
        self.revoked
            .read()
            .expect("revocations lock poisoned")
            .get(app)?
            .get(version)
            .cloned()
    }

    /// Every version revoked, as (`publisher/app`, version).
    pub(crate) fn revoked_versions(&self) -> Vec<(String, String)> {
        let revoked = self.revoked.read().expect("revocations lock poisoned");
        revoked
            .iter()
            .flat_map(|(app, versions)| {
                versions
                    .keys()
                    .map(|version| (app.clone(), version.clone()))
            })
            .collect()
    }

    fn record_revocation(&self, app: &str, version: &str, revoked: Revoked) {
        self.revoked
            .write()
            .expect("revocations lock poisoned")
            .entry(app.to_owned())
            .or_default()
            .insert(version.to_owned(), revoked);
    }

    /// Where the bytes with digest `sha256` are kept.
    fn component_path(&self, sha256: &str) -> PathBuf {
        self.components.join("sha256").join(sha256)
    }

    /// The bytes of `signed`'s component: from this node's disk, or else downloaded from the
    /// store and kept. Either way they are checked against the signed package, so bytes
    /// altered at rest or in transit are refused.
    pub(crate) async fn component(&self, signed: &SignedPackage) -> anyhow::Result<Vec<u8>> {
        let sha256 = &signed.package.component.sha256;
        let path = self.component_path(sha256);
        if let Ok(bytes) = tokio::fs::read(&path).await {
            match signed.check_component(&bytes) {
                Ok(()) => return Ok(bytes),
                Err(error) => tracing::error!(
                    path = %path.display(),
                    %error,
                    "component bytes on disk do not match their signed package; downloading them again"
                ),
            }
        }
        let manifest = signed.package.manifest();
        let version = AppVersion {
            publisher: manifest.app.publisher.clone(),
            app: manifest.app.id.clone(),
            version: manifest.app.version.clone(),
        };
        let bytes = self
            .store
            .component(&version, signed.package.component.size)
            .await
            .with_context(|| format!("downloading {version} from the store"))?;
        signed
            .check_component(&bytes)
            .with_context(|| format!("the store's bytes of {version}"))?;
        let dir = self.components.join("sha256");
        let (dir, keep) = (dir.clone(), bytes.clone());
        tokio::task::spawn_blocking(move || write_durably(&dir, &path, &keep)).await??;
        Ok(bytes)
    }
}

/// Every install row (of `region`, or of all), ordered by region and app.
pub(crate) async fn install_rows(
    db: &Database,
    region: Option<&str>,
) -> anyhow::Result<Vec<InstallRow>> {
    let mut select = db.sql(&format!("SELECT {INSTALL_COLUMNS} FROM region_installs"));
    if let Some(region) = region {
        select.push(" WHERE region = ").bind(region);
    }
    select.push(" ORDER BY region, app");
    select
        .query()
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(install_row)
        .collect()
}

/// How many changes `region_installs` has seen.
pub(crate) async fn change_count(db: &Database) -> anyhow::Result<i64> {
    Ok(sqlx::query("SELECT seq FROM region_changes WHERE id = 1")
        .fetch_one(db.pool())
        .await?
        .get(0))
}

/// Writes `bytes` to `path` through a temporary file in `dir`: a crash leaves the old file or
/// the whole new one.
fn write_durably(
    dir: &std::path::Path,
    path: &std::path::Path,
    bytes: &[u8],
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

impl Runtime {
    /// Serves the regions' installs from the database from now on and follows the store's
    /// revocation feed: loads what was revoked, brings every install back (verifying each
    /// component from disk, downloading what is missing), then keeps following changes made
    /// by any node. Call once, before serving.
    pub async fn serve_regions(&self, config: RegionsConfig) -> anyhow::Result<()> {
        config.check_store_trust()?;
        let db = self.inner.database.clone();
        // The cursor before the revocations: one saved in between by another node is then
        // read twice (harmless), never skipped.
        let feed = feed::FeedState::load(&db, config.feed_key).await?;
        let mut revoked: HashMap<String, HashMap<String, Revoked>> = HashMap::new();
        for row in sqlx::query("SELECT app, version, reason, at FROM runtime_revocations")
            .fetch_all(db.pool())
            .await?
        {
            revoked.entry(row.get(0)).or_default().insert(
                row.get(1),
                Revoked {
                    reason: row.get(2),
                    at: row.get(3),
                },
            );
        }
        let regions = Regions {
            feed,
            db,
            store: config.store,
            components: config.components_dir,
            revoked: RwLock::new(revoked),
            syncing: Default::default(),
            seen: AtomicI64::new(-1),
            loading: Default::default(),
        };
        if self.inner.regions.set(regions).is_err() {
            anyhow::bail!("serve_regions was called twice");
        }
        // Revocations first: nothing revoked is loaded (or takes a SMART token) even for a
        // moment.
        let follower = feed::FeedFollower::new(self.clone());
        let fetched = follower.fetch().await;
        if let Err(error) = &fetched {
            tracing::error!(%error, "cannot read the store's revocation feed; apps will not start until it can be read");
        }
        let regions = self.regions().expect("set above");
        self.smart_clients()
            .suspend(regions.feed.check_fresh(chrono::Utc::now()).err());
        self.sync_regions().await?;
        follower.start(config.poll, config.push).await?;
        Ok(())
    }

    pub(crate) fn regions(&self) -> Option<&Regions> {
        self.inner.regions.get()
    }

    /// Brings this node's installs in line with `region_installs`: changed grants apply to
    /// the next host call and removed rows stop serving (their in-flight requests are
    /// interrupted) at once; new or upgraded rows are then loaded (verified from disk,
    /// compiled) while the rest keeps being served. Returns how many installs changed.
    pub async fn sync_regions(&self) -> anyhow::Result<usize> {
        let Some(regions) = self.regions() else {
            return Ok(0);
        };
        let mut changed = 0;
        let mut to_load = Vec::new();
        {
            let _one_at_a_time = regions.syncing.lock().await;
            let seq = change_count(&regions.db).await?;
            let rows = regions.rows(None).await?;
            self.sync_smart_clients(regions, &rows);
            let mut wanted = BTreeMap::new();
            // SMART web apps are registered above, never loaded here.
            for row in rows.into_iter().filter(|row| !smart::is_smart(row)) {
                wanted.insert((row.region.clone(), row.app.clone()), ());
                match self.installed(&row.region, &row.app) {
                    Some(install)
                        if install.identity.version == row.version
                            && install.identity.digest == row.sha256 =>
                    {
                        if install.grant.capabilities() != row.granted {
                            install.grant.replace(row.granted.clone());
                            tracing::info!(region = row.region, app = row.app, grant = %capabilities_to_json(&row.granted), "grant changed");
                            changed += 1;
                        }
                        if install.grant.allows_internal_addresses() != row.allow_internal_addresses
                        {
                            install
                                .grant
                                .set_internal_addresses(row.allow_internal_addresses);
                            changed += 1;
                        }
                    }
                    Some(older) => {
                        // Until the new version is loaded the old one serves, under the new
                        // grant as far as the old version requests it: a capability removed
                        // during an upgrade is gone at once.
                        let requested = older.manifest.capabilities();
                        let granted: Vec<Capability> = row
                            .granted
                            .iter()
                            .filter(|c| requested.contains(c))
                            .cloned()
                            .collect();
                        if older.grant.capabilities() != granted {
                            older.grant.replace(granted);
                            changed += 1;
                        }
                        older
                            .grant
                            .set_internal_addresses(row.allow_internal_addresses);
                        to_load.push(row);
                    }
                    None => to_load.push(row),
                }
            }
            for install in self.installs() {
                let id = &install.identity;
                if !wanted.contains_key(&(id.region.clone(), id.id.clone()))
                    && let Some(gone) = self.take_install(&id.region, &id.id)
                {
                    gone.stop.cancel();
                    tracing::info!(region = id.region, app = id.id, "uninstalled");
                    changed += 1;
                }
            }
            regions.seen.store(seq, Ordering::SeqCst);
        }
        for row in to_load {
            let loading = (row.region.clone(), row.app.clone(), row.sha256.clone());
            if !regions
                .loading
                .lock()
                .expect("loading lock poisoned")
                .insert(loading.clone())
            {
                continue;
            }
            let loaded = self.load_row(regions, &row).await;
            regions
                .loading
                .lock()
                .expect("loading lock poisoned")
                .remove(&loading);
            match loaded {
                Ok(install) => {
                    // Still what the region wants? It may have changed while this compiled;
                    // checked and put under the lock, so a concurrent uninstall is not undone.
                    let _one_at_a_time = regions.syncing.lock().await;
                    match regions.row(&row.region, &row.app).await? {
                        Some(now) if now.sha256 == row.sha256 => {
                            install.grant.replace(now.granted);
                            install
                                .grant
                                .set_internal_addresses(now.allow_internal_addresses);
                            self.serve_install(install).await;
                            changed += 1;
                        }
                        _ => {}
                    }
                }
                Err(error) => {
                    // The version serving so far (if any) keeps serving; the next poll tries
                    // again.
                    tracing::error!(
                        region = row.region,
                        app = row.app,
                        version = row.version,
                        error = format!("{error:#}"),
                        "cannot load an install on this node; retrying at the next poll"
                    );
                    regions.seen.store(-1, Ordering::SeqCst);
                }
            }
        }
        Ok(changed)
    }

    /// Whether `region_changes` moved since the last sync.
    pub(crate) async fn regions_changed(&self) -> anyhow::Result<bool> {
        let Some(regions) = self.regions() else {
            return Ok(false);
        };
        Ok(change_count(&regions.db).await? != regions.seen.load(Ordering::SeqCst))
    }

    /// Loads one row: the stored package, verified again, and its component from disk
    /// (downloaded when missing), checked against it and compiled (or taken from the compile
    /// cache).
    async fn load_row(&self, regions: &Regions, row: &InstallRow) -> anyhow::Result<Arc<Install>> {
        let signed = SignedPackage::from_json(row.package.as_bytes())?;
        anyhow::ensure!(
            signed.package.component.sha256 == row.sha256,
            "the stored package names component {} but the install row {}",
            signed.package.component.sha256,
            row.sha256
        );
        let component = regions.component(&signed).await?;
        let grant = Grant::new(row.granted.clone())
            .allowing_internal_addresses(row.allow_internal_addresses);
        self.prepare_package(&row.region, signed, component, grant)
            .await
    }

    /// Verifies and compiles a signed package for `region` off the executor.
    pub(crate) async fn prepare_package(
        &self,
        region: &str,
        signed: SignedPackage,
        component: Vec<u8>,
        grant: Grant,
    ) -> anyhow::Result<Arc<Install>> {
        let (runtime, region) = (self.clone(), region.to_owned());
        Ok(tokio::task::spawn_blocking(move || {
            runtime.build_package(&region, &signed, &component, grant)
        })
        .await??)
    }
}
