//! The region admin API, `/admin/v1/regions/{region}/…`: install an app version from the store
//! with a grant ⊆ what it requests, change the grant, upgrade (asking again when the new
//! version wants more), uninstall, and read the region's admin audit log. A region admin's
//! token reaches only its own region. Every action of a region admin of the region, allowed or
//! refused, is audited in `region_audit`; a caller without that role writes nothing there:
//! its refusal goes to the security log (`healthcloud security-log`), and it is slowed down
//! (429) like any refused caller.
//!
//! The same operations are methods of [`RegionAdminService`] (`Runtime::region_admin`) for the
//! admin pages.
//!
//! - [`error`](AdminError): the one error type, and the JSON body of every refusal;
//! - `views`: the JSON bodies answered and accepted;
//! - `http`: routes, extractors and handlers (whose annotations make the OpenAPI document);
//! - `ops`: the operations;
//! - `audit`: the region's admin audit log.

mod audit;
mod error;
pub(crate) mod http;
mod ops;
mod views;

pub use error::{AdminError, ErrorBody};
pub use views::{
    AuditEntry, CapabilityRequest, CapabilityView, InstallRequest, InstallView, PendingView,
    RevokedView, SmartClientView, Uninstalled, UpgradeRequest, UpgradeView,
};

use crate::Runtime;

/// Region administration: a region's installs of app versions from the store, their grants,
/// upgrades and audit log, shared by every node through the database. Made by
/// [`Runtime::region_admin`]; the installs it changes are served by that runtime.
#[derive(Debug, Clone)]
pub struct RegionAdminService {
    /// The runtime whose installs it changes.
    pub(crate) runtime: Runtime,
}

/// A region admin acting on one region: made only by [`RegionAdminService::authorize`] from a
/// verified token, or by [`Admin::system`] for the platform's own start-up work.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Admin {
    /// Who (the token's subject).
    pub actor: String,
    /// The region.
    pub region: String,
}

impl Admin {
    /// The platform itself acting in `region` (e.g. `up` installing the example apps on first
    /// start): never for anything a request asked for.
    pub fn system(actor: &str, region: &str) -> Admin {
        Admin {
            actor: actor.to_owned(),
            region: region.to_owned(),
        }
    }
}
