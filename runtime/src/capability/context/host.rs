use healthcloud_platform::auth::Role;

use super::LaunchContext;
use crate::bindings::context::{self, LaunchContext as Launch, User};

impl context::Host for &mut LaunchContext {
    fn launch(&mut self) -> Launch {
        let claims = &self.principal.claims;
        Launch {
            region: self.app.region.clone(),
            app_id: self.app.id.clone(),
            app_version: self.app.version.clone(),
            user: User {
                id: claims.sub.clone(),
                role: match claims.role {
                    Role::Clinician => context::Role::Clinician,
                    Role::Patient => context::Role::Patient,
                    Role::Citizen => context::Role::Citizen,
                    Role::RegionAdmin => context::Role::RegionAdmin,
                    Role::StoreAdmin => context::Role::StoreAdmin,
                    Role::Publisher => context::Role::Publisher,
                    // No manifest audience admits a security officer, so serve.rs refuses
                    // them before any instance exists; the frozen WIT has no such role.
                    Role::SecurityOfficer => context::Role::RegionAdmin,
                },
                fhir_user: claims.fhir_user.clone(),
            },
            patient: claims.patient.clone(),
            // As enforced: confined to the patient in context.
            granted_scopes: self
                .grant
                .patient_scopes()
                .iter()
                .map(ToString::to_string)
                .collect(),
            user_scopes: self
                .principal
                .scopes
                .iter()
                .map(ToString::to_string)
                .collect(),
        }
    }
}
