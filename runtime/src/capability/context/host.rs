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
                    // No manifest audience admits a security officer or a platform
                    // operator, so serve.rs refuses them before any instance exists; the
                    // frozen WIT has no such role.
                    Role::SecurityOfficer | Role::PlatformOperator | Role::System => {
                        context::Role::RegionAdmin
                    }
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

#[cfg(test)]
mod tests {
    use crate::bindings::context::{Host as _, Role as LaunchRole};
    use crate::capability::context::Context;
    use crate::capability::testing::{REGION, TestEnvironment};
    use healthcloud_platform::auth::Role;

    #[tokio::test]
    async fn the_app_learns_who_launched_it_and_the_grant_as_enforced() {
        let env = TestEnvironment::new()
            .await
            .requesting(&["patient/Observation.rs", "patient/Condition.rs", "kv"])
            .granting(&["patient/Observation.rs", "kv"])
            .launched_by(Role::Patient, Some("p1"));
        let mut ctx = env.instance::<Context>().unwrap();
        let launch = (&mut ctx).launch();
        assert_eq!(launch.region, REGION);
        assert_eq!(launch.app_id, "tests/harness");
        assert_eq!(launch.user.id, "patient-user");
        assert!(matches!(launch.user.role, LaunchRole::Patient));
        assert_eq!(launch.patient.as_deref(), Some("p1"));
        // Data scopes only, and only what the region granted.
        assert_eq!(launch.granted_scopes, ["patient/Observation.rs"]);
    }

    #[tokio::test]
    async fn a_grant_removed_mid_request_is_gone_from_the_next_answer() {
        let env = TestEnvironment::new()
            .await
            .requesting(&["patient/Observation.rs"])
            .launched_by(Role::Clinician, Some("p1"));
        let mut ctx = env.instance::<Context>().unwrap();
        assert_eq!((&mut ctx).launch().granted_scopes.len(), 1);
        ctx.grant.replace(Vec::new());
        assert!((&mut ctx).launch().granted_scopes.is_empty());
    }
}
