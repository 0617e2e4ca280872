//! `healthcloud:platform/kv`: small app-private state, one namespace per region install,
//! with a quota.

mod host;
mod store;

use std::sync::Arc;
use std::time::Duration;

use healthcloud_integration::policy::AppIdentity;
use healthcloud_store::manifest::Capability;
use wasmtime::component::{HasData, Linker};

pub use store::KvStore;

use super::{Grant, ImportRule};
use crate::bindings::kv;
use crate::instance::InstanceState;

/// Importing `kv` needs the `kv` capability.
pub const IMPORT_RULE: ImportRule = ImportRule {
    interface: "healthcloud:platform/kv",
    needs: "the kv capability",
    allowed: |requested| requested.contains(&Capability::Kv),
};

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 256;

/// What a `kv` host call needs.
#[derive(Debug, Clone)]
pub struct KvCtx {
    /// Where values live.
    pub store: KvStore,
    /// The install: its region and app id name the namespace.
    pub app: Arc<AppIdentity>,
    /// The install's live grant.
    pub grant: Grant,
    /// Bytes of keys plus values allowed.
    pub quota: u64,
    /// Time one call may take.
    pub timeout: Duration,
}

struct HasKv;

impl HasData for HasKv {
    type Data<'a> = &'a mut KvCtx;
}

/// Links `kv` into the engine's linker.
pub(crate) fn add_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
    kv::add_to_linker::<_, HasKv>(linker, |state| &mut state.kv)
}
