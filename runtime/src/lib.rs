//! # healthcloud-runtime
//!
//! The app cloud: a wasmtime (component model) host that runs third-party health apps.
//!
//! A request to `/apps/{region}/{publisher}/{app}/…` flows like this:
//!
//! 1. **listener** ([`serve`]): the bearer token (or launch cookie) is verified as the FHIR
//!    API does, and must be for this app cloud or this install (`aud`), name the install's
//!    region and a role the manifest's audience declares; the install is looked up; a
//!    launch-cookie request that changes something must come from this origin (403); the
//!    app's concurrency slot is taken (503 when full).
//! 2. **instance**: a fresh instance from the install's pre-instantiated component, with a
//!    new store holding the launch context from the token (never from the guest), an
//!    epoch deadline, a memory cap and a handle limit. Nothing survives into the next
//!    request (unless `Limits::reuse_instances` is set: then an instance may serve the next
//!    request of the identical launch context under the same grant, never another).
//! 3. **host calls** ([`capability`]): each call checks the region's grant *now*; data calls
//!    go through the integration cloud's `FhirService` (user scopes ∩ grant ∩ consent ∩
//!    compartment), which writes the AuditEvent, naming the app, its version, digest and
//!    publisher key, before answering.
//! 4. **response**: collected up to its size cap, its headers confined to what an app may set
//!    on the origin it shares with the platform (an allow-list; private caching; redirects
//!    on its own path or a granted host; the platform's framing policy); a trap, a deadline
//!    or an exhausted limit fails only that request, with a status and a body naming the
//!    cause.
//!
//! # Examples
//!
//! ```no_run
//! # async fn example(runtime: healthcloud_runtime::Runtime) -> anyhow::Result<()> {
//! use healthcloud_package::manifest::{Capability, Manifest};
//!
//! let manifest = Manifest::parse(&std::fs::read_to_string("example-apps/bp-monitor/healthcloud.toml")?)?;
//! let component = std::fs::read("bp_monitor.wasm")?;
//! let grant = vec![Capability::parse("patient/Observation.rs?category=vital-signs")?];
//! runtime.install("hovedstaden", manifest, &component, "local", grant)?;
//! let app = axum::Router::new().merge(runtime.router());
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod bindings;
pub mod capability;
pub mod engine;
pub mod install;
mod instance;
pub mod limits;
mod origin;
pub mod regions;
mod reuse;
pub mod serve;
#[cfg(feature = "testing")]
pub mod testing;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use healthcloud_integration::FhirService;
use healthcloud_integration::policy::AppIdentity;
use healthcloud_package::manifest::Manifest;
use healthcloud_package::package::SignedPackage;
use healthcloud_platform::auth::TokenVerifier;
use healthcloud_platform::db::{Database, Migrations};
use tokio::sync::Semaphore;

pub use capability::Grant;
pub use engine::AppEngine;
pub use install::{Install, InstallError};
pub use limits::Limits;
pub use regions::{RegionsConfig, Revoked};

/// What the runtime is built from.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// The integration cloud's data service: every data host call goes through it.
    pub service: FhirService,
    /// The database the runtime keeps its own tables in (apps' key-value data, region
    /// installs, the revocation feed's cursor): the integration cloud's, handed in by the
    /// composition. Patient data is never read from it, only through `service`.
    pub database: Database,
    /// Verifies bearer tokens (the same verifier as the FHIR API).
    pub verifier: TokenVerifier,
    /// The public base URL apps are served under (`{public_url}/apps/…`): tokens must name
    /// the app cloud (`{public_url}/apps/`) or the one app they open as their audience.
    pub public_url: String,
    /// Containment limits.
    pub limits: Limits,
    /// Where compiled code is cached (`None`: compile on every install).
    pub cache_dir: Option<PathBuf>,
}

/// The app cloud: the engine and every region's installs.
#[derive(Debug, Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    engine: AppEngine,
    /// By region, then app id (borrowed names look them up on every request).
    installs: RwLock<BTreeMap<String, BTreeMap<String, Arc<Install>>>>,
    service: FhirService,
    /// See [`RuntimeConfig::database`].
    database: Database,
    verifier: TokenVerifier,
    /// See [`RuntimeConfig::public_url`].
    public_url: String,
    /// Every host capability's runtime-wide part.
    capabilities: capability::Capabilities,
    limits: Limits,
    /// Durable region installs and the revocation feed, once [`Runtime::serve_regions`] ran.
    regions: std::sync::OnceLock<regions::Regions>,
    /// The regions' SMART web apps, registered as OAuth clients ([`regions::smart`]).
    smart: healthcloud_platform::auth::smart::Clients,
}

impl Inner {
    /// Every install, by region and app.
    fn installs(&self) -> Vec<Arc<Install>> {
        self.installs
            .read()
            .expect("installs lock poisoned")
            .values()
            .flat_map(|apps| apps.values().cloned())
            .collect()
    }
}

impl Runtime {
    /// Creates the engine and the runtime's tables (next to the integration cloud's).
    pub async fn new(config: RuntimeConfig) -> anyhow::Result<Self> {
        let db = config.database.clone();
        migrate(&db).await?;
        let engine = AppEngine::new(&config.limits, config.cache_dir.as_deref())?;
        let reuse = config.limits.reuse_instances;
        let capabilities = capability::Capabilities::new(&capability::Host {
            service: &config.service,
            db: &db,
            limits: &config.limits,
        });
        let inner = Arc::new(Inner {
            engine,
            installs: Default::default(),
            service: config.service,
            database: config.database,
            verifier: config.verifier,
            public_url: config.public_url.trim_end_matches('/').to_owned(),
            capabilities,
            limits: config.limits,
            regions: Default::default(),
            smart: Default::default(),
        });
        if reuse {
            reuse::start_sweeper(Arc::downgrade(&inner));
        }
        Ok(Runtime { inner })
    }

    /// The containment limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Resolves the hosts apps call out to with `resolver` from now on (the operating
    /// system's resolver by default). Whatever it answers, the connection goes to an address
    /// from that one answer, and internal addresses are refused.
    pub fn set_outbound_resolver(&self, resolver: Arc<dyn capability::outbound::Resolve>) {
        self.inner.capabilities.outbound.set_resolver(resolver);
    }

    /// The audience of a launch token for `app_id` in `region`: that install's URL, which
    /// no other app and not the FHIR API accepts.
    pub fn app_audience(&self, region: &str, app_id: &str) -> String {
        healthcloud_platform::auth::app_audience(&self.inner.public_url, region, app_id)
    }

    /// The audience of tokens for every app of this app cloud (`{public_url}/apps/`).
    pub fn audience(&self) -> String {
        healthcloud_platform::auth::apps_audience(&self.inner.public_url)
    }

    /// Validates a component against its manifest without installing it: a SMART web app's
    /// "component" must be its registration document.
    pub fn validate(&self, manifest: &Manifest, component: &[u8]) -> Result<(), InstallError> {
        if let Some(smart) = &manifest.smart {
            if component != smart.document().as_slice() {
                return Err(InstallError::NotTheRegistration);
            }
            return Ok(());
        }
        self.inner.engine.validate(manifest, component)
    }

    /// Installs (or replaces) an app in `region` with `grant` ⊆ the manifest's requested
    /// capabilities, in this process only (a region's durable installs go through the admin
    /// API). `outbound-http:` destinations inside the network are refused unless the grant
    /// allows them ([`Grant::allowing_internal_addresses`]). Compiles, or loads cached code:
    /// call it off the async executor when that matters.
    pub fn install(
        &self,
        region: &str,
        manifest: Manifest,
        component: &[u8],
        publisher_key: &str,
        grant: impl Into<Grant>,
    ) -> Result<Arc<Install>, InstallError> {
        let install = self.build(region, manifest, component, publisher_key, grant.into())?;
        self.put_install(install.clone());
        Ok(install)
    }

    /// Validates and compiles an install without serving it.
    fn build(
        &self,
        region: &str,
        manifest: Manifest,
        component: &[u8],
        publisher_key: &str,
        grant: Grant,
    ) -> Result<Arc<Install>, InstallError> {
        if manifest.smart.is_some() {
            return Err(InstallError::SmartWebApp);
        }
        install::check_grant(&manifest, &grant.capabilities())?;
        let capabilities = self
            .inner
            .capabilities
            .configure(&capability::InstallContext {
                manifest: &manifest,
                grant: &grant,
            })?;
        let (pre, digest) = self.inner.engine.prepare(&manifest, component)?;
        let app_id = manifest.full_id();
        Ok(Arc::new(Install {
            identity: Arc::new(AppIdentity {
                id: app_id,
                version: manifest.app.version.to_string(),
                digest,
                publisher_key: publisher_key.to_owned(),
                region: region.to_owned(),
            }),
            manifest,
            grant,
            pre,
            capabilities,
            slots: Arc::new(Semaphore::new(self.inner.limits.concurrent_instances)),
            idle: reuse::IdleInstances::new(self.inner.limits.reuse_idle),
            stop: Default::default(),
        }))
    }

    /// Serves `install` from now on, in place of the same app's install in its region (whose
    /// in-flight requests finish).
    fn put_install(&self, install: Arc<Install>) {
        let identity = &install.identity;
        tracing::info!(
            region = identity.region,
            app = identity.id,
            version = identity.version,
            digest = identity.digest,
            "installed"
        );
        self.inner
            .installs
            .write()
            .expect("installs lock poisoned")
            .entry(identity.region.clone())
            .or_default()
            .insert(identity.id.clone(), install.clone());
    }

    /// Records the app of `install` as the FHIR Device consents and audit records name
    /// (`Device/<publisher>.<app>`), when it is new or newer than the one recorded. A failure
    /// is logged: the app serves regardless, and the next install or start records it.
    async fn record_app(&self, install: &Install) {
        let app = &install.manifest.app;
        let (id, version) = (app.full_id(), app.version.to_string());
        let record = healthcloud_integration::service::AppRecord {
            id: &id,
            name: &app.name,
            version: &version,
            description: &app.description,
        };
        if let Err(error) = self.inner.service.register_app(&record).await {
            tracing::error!(app = id, %error, "the app's Device could not be recorded");
        }
    }

    /// Serves `install` and records its app ([`Runtime::record_app`]).
    pub(crate) async fn serve_install(&self, install: Arc<Install>) {
        self.put_install(install.clone());
        self.record_app(&install).await;
    }

    /// Stops serving an install and returns it.
    fn take_install(&self, region: &str, app: &str) -> Option<Arc<Install>> {
        let mut installs = self.inner.installs.write().expect("installs lock poisoned");
        let apps = installs.get_mut(region)?;
        let install = apps.remove(app);
        if apps.is_empty() {
            installs.remove(region);
        }
        install
    }

    /// Installs a signed package: the signature must verify and `component` must be the
    /// bytes it names; what is installed is the signed manifest, and the signing key's id is
    /// recorded as the publisher key on every audit record. Whether the key still belongs to
    /// the publisher and is trusted is the store's answer, checked by the caller.
    pub fn install_package(
        &self,
        region: &str,
        signed: &SignedPackage,
        component: &[u8],
        grant: impl Into<Grant>,
    ) -> Result<Arc<Install>, InstallError> {
        let install = self.build_package(region, signed, component, grant.into())?;
        self.put_install(install.clone());
        Ok(install)
    }

    /// Verifies and compiles a signed package without serving it.
    fn build_package(
        &self,
        region: &str,
        signed: &SignedPackage,
        component: &[u8],
        grant: Grant,
    ) -> Result<Arc<Install>, InstallError> {
        let key = signed.verify()?;
        signed.check_component(component)?;
        self.build(
            region,
            signed.package.manifest(),
            component,
            key.id().as_str(),
            grant,
        )
    }

    /// The install of `app` (`publisher/app`) in `region`.
    pub fn installed(&self, region: &str, app: &str) -> Option<Arc<Install>> {
        self.inner
            .installs
            .read()
            .expect("installs lock poisoned")
            .get(region)?
            .get(app)
            .cloned()
    }

    /// Every install, by region and app.
    pub fn installs(&self) -> Vec<Arc<Install>> {
        self.inner.installs()
    }

    /// Removes an install in this process: its next request is a 404 and its in-flight
    /// requests are interrupted. Returns whether it existed.
    pub fn uninstall(&self, region: &str, app: &str) -> bool {
        let install = self.take_install(region, app);
        if let Some(install) = &install {
            install.stop.cancel();
        }
        install.is_some()
    }

    /// The `/apps/…` routes and the region admin API (`/admin/v1/regions/…`, its OpenAPI
    /// document at `/admin/v1/openapi.json`).
    pub fn router(&self) -> axum::Router {
        serve::router(self.clone())
            .merge(regions::admin::http::router(self.region_admin()))
            .merge(regions::openapi::router())
    }

    /// Region administration: the region admin API's operations on this runtime's installs
    /// (for the admin pages).
    pub fn region_admin(&self) -> regions::admin::RegionAdminService {
        regions::admin::RegionAdminService {
            runtime: self.clone(),
        }
    }
}

/// Request handlers learn their caller with the platform's `Principal` extractor.
impl axum::extract::FromRef<Runtime> for TokenVerifier {
    fn from_ref(runtime: &Runtime) -> TokenVerifier {
        runtime.inner.verifier.clone()
    }
}

pub(crate) async fn migrate(db: &Database) -> anyhow::Result<()> {
    let migrations = Migrations {
        sqlite: sqlx::migrate!("./migrations/sqlite"),
        postgres: sqlx::migrate!("./migrations/postgres"),
    };
    db.apply(migrations, "app runtime").await
}
