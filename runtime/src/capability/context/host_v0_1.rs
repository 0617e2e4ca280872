//! `healthcloud:platform/context@0.1.0`, for apps built against that version: the current
//! launch context, in the frozen version's types (the same fields).

use super::LaunchContext;
use crate::bindings::context as current;
use crate::bindings::v0_1::context::{self, LaunchContext as Launch, Role, User};

impl context::Host for &mut LaunchContext {
    fn launch(&mut self) -> Launch {
        let launch = current::Host::launch(self);
        Launch {
            region: launch.region,
            app_id: launch.app_id,
            app_version: launch.app_version,
            user: User {
                id: launch.user.id,
                role: match launch.user.role {
                    current::Role::Clinician => Role::Clinician,
                    current::Role::Patient => Role::Patient,
                    current::Role::Citizen => Role::Citizen,
                    current::Role::RegionAdmin => Role::RegionAdmin,
                    current::Role::StoreAdmin => Role::StoreAdmin,
                    current::Role::Publisher => Role::Publisher,
                },
                fhir_user: launch.user.fhir_user,
            },
            patient: launch.patient,
            granted_scopes: launch.granted_scopes,
            user_scopes: launch.user_scopes,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::bindings::v0_1::context::{Host as _, Role};
    use crate::capability::context::Context;
    use crate::capability::testing::{REGION, TestEnvironment};
    use healthcloud_platform::auth::Role as UserRole;

    #[tokio::test]
    async fn an_app_built_against_0_1_learns_the_same_launch() {
        let env = TestEnvironment::new()
            .await
            .requesting(&["patient/Observation.rs", "patient/Condition.rs"])
            .granting(&["patient/Observation.rs"])
            .launched_by(UserRole::Clinician, Some("p1"));
        let mut ctx = env.instance::<Context>().unwrap();
        let launch = (&mut ctx).launch();
        assert_eq!(launch.region, REGION);
        assert_eq!(launch.user.id, "clinician-user");
        assert!(matches!(launch.user.role, Role::Clinician));
        assert_eq!(launch.patient.as_deref(), Some("p1"));
        assert_eq!(launch.granted_scopes, ["patient/Observation.rs"]);
    }
}
