//! `healthcloud:platform/kv`: small app-private state of a region install, with a quota per
//! partition. A launch for a patient reaches only that patient's partition (capability `kv`):
//! the patient's consent applies and every call is filed in the patient's log, through
//! [`FhirService::app_state`]. A launch without a patient reaches the install-wide partition,
//! and only if the manifest requests and the region grants `kv-install`.

mod host;
mod host_v0_1;
mod store;

use std::sync::Arc;
use std::time::Duration;

use healthcloud_integration::FhirService;
use healthcloud_integration::policy::{AccessContext, AppIdentity};
use healthcloud_package::manifest::Capability;
use healthcloud_platform::auth::Principal;
use wasmtime::component::Linker;

pub use store::KvStore;

use super::{Grant, Host, HostCapability, ImportRule, InstallContext, Launch, StateOf};
use crate::bindings::{kv, v0_1};
use crate::install::InstallError;

/// The kv capability: one store for every install, partitioned, with a quota per partition.
#[derive(Debug)]
pub struct Kv {
    store: KvStore,
    service: FhirService,
    /// [`Limits::kv_quota_bytes`](crate::Limits::kv_quota_bytes).
    quota: u64,
    /// [`Limits::host_call_timeout`](crate::Limits::host_call_timeout).
    timeout: Duration,
}

impl HostCapability for Kv {
    /// Importing `kv` needs the `kv` or the `kv-install` capability.
    const IMPORTS: &'static [ImportRule] = &[ImportRule {
        interface: "healthcloud:platform/kv",
        needs: "the kv capability (or kv-install)",
        allowed: |requested| {
            requested.contains(&Capability::Kv) || requested.contains(&Capability::KvInstall)
        },
    }];

    type InstallState = ();
    type InstanceState = KvCtx;

    fn new(host: &Host<'_>) -> Self {
        Kv {
            store: KvStore::new(host.db.clone()),
            service: host.service.clone(),
            quota: host.limits.kv_quota_bytes,
            timeout: host.limits.host_call_timeout,
        }
    }

    fn link<T: Send + 'static>(
        linker: &mut Linker<T>,
        state: fn(&mut T) -> &mut KvCtx,
    ) -> wasmtime::Result<()> {
        kv::add_to_linker::<_, StateOf<Self>>(linker, state)?;
        v0_1::kv::add_to_linker::<_, StateOf<Self>>(linker, state)
    }

    fn configure(&self, _: &InstallContext<'_>) -> Result<(), InstallError> {
        Ok(())
    }

    fn instance(&self, _: &(), launch: &Launch<'_>) -> KvCtx {
        KvCtx {
            store: self.store.clone(),
            service: self.service.clone(),
            principal: launch.principal.clone(),
            app: launch.app.clone(),
            grant: launch.grant.clone(),
            quota: self.quota,
            timeout: self.timeout,
        }
    }
}

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 256;

/// What a `kv` host call needs.
#[derive(Debug, Clone)]
pub struct KvCtx {
    /// Where values live.
    pub store: KvStore,
    /// Consent and audit for a patient's partition.
    pub service: FhirService,
    /// The verified user; the patient in context picks the partition.
    pub principal: Arc<Principal>,
    /// The install: its region and app id name the partitions.
    pub app: Arc<AppIdentity>,
    /// The install's live grant.
    pub grant: Grant,
    /// Bytes of keys plus values allowed.
    pub quota: u64,
    /// Time one call may take.
    pub timeout: Duration,
}

impl KvCtx {
    /// The policy engine's view of this call: the user and the app (kv needs no data grant).
    pub(crate) fn access(&self) -> AccessContext {
        AccessContext {
            principal: Principal::clone(&self.principal),
            app: Some(AppIdentity::clone(&self.app)),
            grant: Some(Vec::new()),
            purpose: None,
        }
    }
}
