//! A harness for a capability's unit tests: builds its per-instance context as the runtime
//! would for one request (runtime-wide part, install configuration, launch), on a fresh
//! SQLite integration cloud, without a guest component or an engine. Host calls are then
//! made on the context directly, so quotas, budgets and grant rules are tested where they
//! are written. Modelled on Spin's `spin-factors-test` `TestEnvironment`.

use std::sync::Arc;

use healthcloud_integration::FhirService;
use healthcloud_integration::policy::AppIdentity;
use healthcloud_integration::query::PageLimits;
use healthcloud_integration::store::EmbeddedStore;
use healthcloud_package::manifest::{Capability, Manifest};
use healthcloud_platform::auth::{Principal, Role, TokenIssuer, TokenRequest};
use healthcloud_platform::db::Database;

use super::{Grant, Host, HostCapability, InstallContext, Launch};
use crate::install::InstallError;
use crate::limits::Limits;

/// The region every test install belongs to.
pub(crate) const REGION: &str = "testregion";

/// One app, its manifest's requests, the region's grant, the limits and the launching user.
pub(crate) struct TestEnvironment {
    pub service: FhirService,
    pub db: Database,
    pub limits: Limits,
    /// What the manifest requests (`[[capability]]` names).
    pub requested: Vec<String>,
    /// What the region grants; `None`: everything requested.
    pub granted: Option<Vec<String>>,
    /// The launching user's role and patient in context.
    pub launch: (Role, Option<String>),
    issuer: TokenIssuer,
    _dir: tempfile::TempDir,
}

impl TestEnvironment {
    /// A fresh integration cloud with the runtime's tables, an app requesting nothing, and a
    /// clinician launching it without a patient.
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("fhir.db").display());
        let db = healthcloud_integration::open_database(&url)
            .await
            .expect("the integration cloud opens on SQLite");
        let store = EmbeddedStore::new(db.clone());
        crate::migrate(&db)
            .await
            .expect("the runtime's migrations apply");
        TestEnvironment {
            service: FhirService::new(store, PageLimits::default()),
            db,
            limits: Limits::default(),
            requested: Vec::new(),
            granted: None,
            launch: (Role::Clinician, None),
            issuer: TokenIssuer::generate("test-issuer"),
            _dir: dir,
        }
    }

    /// The manifest requests `capabilities` (and the region grants them all, unless
    /// [`granting`](Self::granting) says otherwise).
    pub fn requesting(mut self, capabilities: &[&str]) -> Self {
        self.requested = capabilities.iter().map(|c| c.to_string()).collect();
        self
    }

    /// The region grants only `capabilities`.
    pub fn granting(mut self, capabilities: &[&str]) -> Self {
        self.granted = Some(capabilities.iter().map(|c| c.to_string()).collect());
        self
    }

    /// Changes the limits.
    pub fn limits(mut self, change: impl FnOnce(&mut Limits)) -> Self {
        change(&mut self.limits);
        self
    }

    /// A user of `role` launches the app, for `patient` when given.
    pub fn launched_by(mut self, role: Role, patient: Option<&str>) -> Self {
        self.launch = (role, patient.map(str::to_owned));
        self
    }

    /// The app's manifest.
    pub fn manifest(&self) -> Manifest {
        let mut toml = String::from(
            "[app]\npublisher = \"tests\"\nid = \"harness\"\nversion = \"0.1.0\"\n\
             name = \"harness\"\ndescription = \"A capability under test.\"\n\
             audience = [\"clinician\", \"patient\", \"citizen\"]\n",
        );
        for name in &self.requested {
            toml.push_str(&format!(
                "\n[[capability]]\nname = \"{name}\"\njustification = \"Under test.\"\n"
            ));
        }
        Manifest::parse(&toml).expect("the harness writes a valid manifest")
    }

    /// The region's grant.
    pub fn grant(&self) -> Grant {
        let names = self.granted.as_ref().unwrap_or(&self.requested);
        Grant::new(
            names
                .iter()
                .map(|name| Capability::parse(name).expect("a capability"))
                .collect(),
        )
    }

    /// The app as the install names it.
    pub fn app(&self) -> Arc<AppIdentity> {
        let manifest = self.manifest();
        Arc::new(AppIdentity {
            id: manifest.full_id(),
            version: manifest.app.version.to_string(),
            digest: "0".repeat(64),
            publisher_key: "test-key".into(),
            region: REGION.into(),
        })
    }

    /// The verified launching user.
    pub fn principal(&self) -> Arc<Principal> {
        let (role, patient) = &self.launch;
        let token = self
            .issuer
            .mint(
                *role,
                TokenRequest {
                    sub: Some(format!("{}-user", role.as_str())),
                    patient: patient.clone(),
                    region: Some(REGION.into()),
                    audience: vec![healthcloud_platform::auth::apps_audience(
                        "http://apps.test",
                    )],
                    ..Default::default()
                },
            )
            .expect("the harness mints a valid token");
        self.issuer
            .verifier()
            .verify_shared(&token)
            .expect("the harness's token verifies")
    }

    /// `C`'s runtime-wide part, from these limits.
    pub fn capability<C: HostCapability>(&self) -> C {
        C::new(&Host {
            service: &self.service,
            db: &self.db,
            limits: &self.limits,
        })
    }

    /// `C`'s configuration of the install, or its refusal.
    pub fn configure<C: HostCapability>(&self) -> Result<C::InstallState, InstallError> {
        let (manifest, grant) = (self.manifest(), self.grant());
        self.capability::<C>().configure(&InstallContext {
            manifest: &manifest,
            grant: &grant,
        })
    }

    /// `C`'s context in a new instance, as a request's host calls see it.
    pub fn instance<C: HostCapability>(&self) -> Result<C::InstanceState, InstallError> {
        let (manifest, grant) = (self.manifest(), self.grant());
        let capability = self.capability::<C>();
        let install = capability.configure(&InstallContext {
            manifest: &manifest,
            grant: &grant,
        })?;
        Ok(capability.instance(
            &install,
            &Launch {
                app: &self.app(),
                grant: &grant,
                principal: &self.principal(),
            },
        ))
    }
}
