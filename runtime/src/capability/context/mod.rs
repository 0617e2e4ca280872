//! `healthcloud:platform/context`: the launch context, from the verified token and the
//! install serving the request, never from the guest.

mod host;
mod host_v0_1;

use std::sync::Arc;

use healthcloud_integration::policy::AppIdentity;
use healthcloud_platform::auth::Principal;
use wasmtime::component::Linker;

use super::{Grant, Host, HostCapability, ImportRule, InstallContext, Launch, StateOf};
use crate::bindings::{context, v0_1};
use crate::install::InstallError;

/// The launch context capability: every app may read it; it needs nothing per install.
#[derive(Debug)]
pub struct Context;

impl HostCapability for Context {
    const IMPORTS: &'static [ImportRule] = &[ImportRule {
        interface: "healthcloud:platform/context",
        needs: "nothing",
        allowed: |_| true,
    }];

    type InstallState = ();
    type InstanceState = LaunchContext;

    fn new(_: &Host<'_>) -> Self {
        Context
    }

    fn link<T: Send + 'static>(
        linker: &mut Linker<T>,
        state: fn(&mut T) -> &mut LaunchContext,
    ) -> wasmtime::Result<()> {
        context::add_to_linker::<_, StateOf<Self>>(linker, state)?;
        v0_1::context::add_to_linker::<_, StateOf<Self>>(linker, state)
    }

    fn configure(&self, _: &InstallContext<'_>) -> Result<(), InstallError> {
        Ok(())
    }

    fn instance(&self, _: &(), launch: &Launch<'_>) -> LaunchContext {
        LaunchContext {
            app: launch.app.clone(),
            principal: launch.principal.clone(),
            grant: launch.grant.clone(),
        }
    }
}

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
