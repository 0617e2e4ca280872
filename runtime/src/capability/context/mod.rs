//! `healthcloud:platform/context`: the launch context, from the verified token and the
//! install serving the request, never from the guest.

mod host;

use std::sync::Arc;

use healthcloud_integration::policy::AppIdentity;
use healthcloud_platform::auth::Principal;
use wasmtime::component::{HasData, Linker};

use super::{Grant, ImportRule};
use crate::bindings::context;
use crate::instance::InstanceState;

/// Every app may read its launch context.
pub const IMPORT_RULE: ImportRule = ImportRule {
    interface: "healthcloud:platform/context",
    needs: "nothing",
    allowed: |_| true,
};

/// The launch context of one request.
#[derive(Debug, Clone)]
pub struct LaunchContext {
    /// The install serving the request: app, version and region.
    pub app: Arc<AppIdentity>,
    /// The verified user.
    pub principal: Arc<Principal>,
    /// The install's live grant, whose data scopes the app is told.
    pub grant: Grant,
}

struct HasContext;

impl HasData for HasContext {
    type Data<'a> = &'a mut LaunchContext;
}

/// Links `context` into the engine's linker.
pub(crate) fn add_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
    context::add_to_linker::<_, HasContext>(linker, |state| &mut state.launch)
}
