//! `healthcloud:platform/context`: the launch context, from the verified token and the
//! install serving the request, never from the guest.

mod host;

use healthcloud_integration::auth::Principal;
use wasmtime::component::{HasData, Linker};

use super::ImportRule;
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
    /// The region whose install serves the request.
    pub region: String,
    /// `publisher/app`.
    pub app_id: String,
    /// The serving version.
    pub app_version: String,
    /// The verified user.
    pub principal: Principal,
    /// The region's data grant when the instance started, as scope strings.
    pub granted_scopes: Vec<String>,
}

struct HasContext;

impl HasData for HasContext {
    type Data<'a> = &'a mut LaunchContext;
}

/// Links `context` into the engine's linker.
pub(crate) fn add_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
    context::add_to_linker::<_, HasContext>(linker, |state| &mut state.launch)
}
