//! `healthcloud:platform/fhir`: patient data through the integration cloud's
//! [`FhirService`], the same policy engine, consent check and audit trail as the FHIR API.
//! There is no second implementation: the host call only builds the [`AccessContext`] (the
//! app's identity and the region's live grant) and maps errors to the WIT variant.

mod host;
mod host_v0_1;

use std::sync::Arc;
use std::time::Duration;

use healthcloud_integration::FhirService;
use healthcloud_integration::policy::{AccessContext, AppIdentity};
use healthcloud_package::manifest::Capability;
use healthcloud_platform::auth::Principal;
use wasmtime::component::Linker;

use super::{Grant, Host, HostCapability, ImportRule, InstallContext, Launch, StateOf};
use crate::bindings::{fhir, v0_1};
use crate::install::InstallError;

/// The data capability: every call through the one [`FhirService`], within the per-request
/// call budget and the per-call time and result limits.
#[derive(Debug)]
pub struct Fhir {
    service: FhirService,
    /// [`Limits::search_results`](crate::Limits::search_results).
    search_results: u32,
    /// [`Limits::host_call_timeout`](crate::Limits::host_call_timeout).
    timeout: Duration,
    /// [`Limits::host_calls`](crate::Limits::host_calls).
    max_calls: u32,
}

impl HostCapability for Fhir {
    /// Importing `fhir` needs at least one data scope.
    const IMPORTS: &'static [ImportRule] = &[ImportRule {
        interface: "healthcloud:platform/fhir",
        needs: "a data capability (a SMART v2 scope such as patient/Observation.rs)",
        allowed: |requested| requested.iter().any(|c| matches!(c, Capability::Data(_))),
    }];

    type InstallState = ();
    type InstanceState = FhirCtx;

    fn new(host: &Host<'_>) -> Self {
        Fhir {
            service: host.service.clone(),
            search_results: host.limits.search_results,
            timeout: host.limits.host_call_timeout,
            max_calls: host.limits.host_calls,
        }
    }

    fn link<T: Send + 'static>(
        linker: &mut Linker<T>,
        state: fn(&mut T) -> &mut FhirCtx,
    ) -> wasmtime::Result<()> {
        fhir::add_to_linker::<_, StateOf<Self>>(linker, state)?;
        v0_1::fhir::add_to_linker::<_, StateOf<Self>>(linker, state)
    }

    fn configure(&self, _: &InstallContext<'_>) -> Result<(), InstallError> {
        Ok(())
    }

    fn instance(&self, _: &(), launch: &Launch<'_>) -> FhirCtx {
        FhirCtx {
            service: self.service.clone(),
            principal: launch.principal.clone(),
            app: launch.app.clone(),
            grant: launch.grant.clone(),
            search_results: self.search_results,
            timeout: self.timeout,
            calls: 0,
            max_calls: self.max_calls,
        }
    }
}

/// What a `fhir` host call needs.
#[derive(Debug, Clone)]
pub struct FhirCtx {
    /// The front door to data.
    pub service: FhirService,
    /// The verified user.
    pub principal: Arc<Principal>,
    /// The app, as the audit trail and consents name it.
    pub app: Arc<AppIdentity>,
    /// The install's live grant.
    pub grant: Grant,
    /// Resources per search call.
    pub search_results: u32,
    /// Time one call may take.
    pub timeout: Duration,
    /// Data calls made in this request so far.
    pub calls: u32,
    /// Data calls one request may make.
    pub max_calls: u32,
}

impl FhirCtx {
    /// The policy engine's view of this call: the user, the app, and what the region grants
    /// it right now, confined to the patient in context.
    pub(crate) fn access(&self) -> AccessContext {
        AccessContext {
            principal: Principal::clone(&self.principal),
            app: Some(AppIdentity::clone(&self.app)),
            grant: Some(self.grant.patient_scopes()),
            purpose: None,
        }
    }
}
