//! `healthcloud:platform/fhir`: patient data through the integration cloud's
//! [`FhirService`], the same policy engine, consent check and audit trail as the FHIR API.
//! There is no second implementation: the host call only builds the [`AccessContext`] (the
//! app's identity and the region's live grant) and maps errors to the WIT variant.

mod host;

use std::sync::Arc;
use std::time::Duration;

use healthcloud_integration::FhirService;
use healthcloud_integration::policy::{AccessContext, AppIdentity};
use healthcloud_package::manifest::Capability;
use healthcloud_platform::auth::Principal;
use wasmtime::component::{HasData, Linker};

use super::{Grant, ImportRule};
use crate::bindings::fhir;
use crate::instance::InstanceState;

/// Importing `fhir` needs at least one data scope.
pub const IMPORT_RULE: ImportRule = ImportRule {
    interface: "healthcloud:platform/fhir",
    needs: "a data capability (a SMART v2 scope such as patient/Observation.rs)",
    allowed: |requested| requested.iter().any(|c| matches!(c, Capability::Data(_))),
};

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
        }
    }
}

struct HasFhir;

impl HasData for HasFhir {
    type Data<'a> = &'a mut FhirCtx;
}

/// Links `fhir` into the engine's linker.
pub(crate) fn add_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
    fhir::add_to_linker::<_, HasFhir>(linker, |state| &mut state.fhir)
}
