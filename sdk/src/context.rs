//! The launch context of the request being served: region, app, user and role, the patient
//! in context and the effective scopes. Always available; no capability needed.
//!
//! It comes from the host (the verified bearer token and the install serving the request),
//! never from the request itself: an app cannot choose its user, patient or region.

pub use crate::bindings::healthcloud::platform::context::{LaunchContext, Role, User};

/// Returns the launch context of the current request.
pub fn launch() -> LaunchContext {
    crate::bindings::healthcloud::platform::context::launch()
}

impl Role {
    /// The role's name as in tokens and manifests, e.g. `clinician`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Clinician => "clinician",
            Role::Patient => "patient",
            Role::Citizen => "citizen",
            Role::RegionAdmin => "region-admin",
            Role::StoreAdmin => "store-admin",
            Role::Publisher => "publisher",
        }
    }

    /// Whether the user is looking at their own record (a patient or a citizen).
    pub fn is_own_record(self) -> bool {
        matches!(self, Role::Patient | Role::Citizen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_have_their_wit_names() {
        assert_eq!(Role::RegionAdmin.as_str(), "region-admin");
        assert!(Role::Citizen.is_own_record());
        assert!(!Role::Clinician.is_own_record());
    }
}
