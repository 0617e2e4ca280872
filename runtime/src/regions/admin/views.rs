//! What the region admin API answers and accepts: the JSON bodies, with their schemas for the
//! OpenAPI document.

use serde::{Deserialize, Serialize};

/// One requested capability and what the region does with it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CapabilityView {
    /// The capability, e.g. `patient/Observation.rs`.
    pub capability: String,
    /// Why the app says it needs it.
    pub justification: String,
    /// What it allows, in plain language.
    pub explanation: String,
    /// Whether the region grants it.
    pub granted: bool,
}

/// An upgrade waiting for approval.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PendingView {
    /// The version waiting.
    pub version: String,
    /// What it asks for beyond the installed version.
    pub added: Vec<CapabilityView>,
    /// For a SMART web app: whether its client registration (launch URL, redirect URIs,
    /// keys) differs from the installed version's.
    #[serde(default)]
    pub registration_changed: bool,
}

/// A version the store revoked.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RevokedView {
    /// Why.
    pub reason: String,
    /// When.
    pub at: String,
}

/// An install as the admin API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InstallView {
    /// The region.
    pub region: String,
    /// `publisher/app`.
    pub app: String,
    /// The app's display name.
    pub name: String,
    /// The installed version.
    pub version: String,
    /// sha256 of its component.
    pub sha256: String,
    /// The key that signed it.
    pub key_id: String,
    /// Every capability the version requests, granted or not.
    pub requested: Vec<CapabilityView>,
    /// The granted capabilities.
    pub granted: Vec<String>,
    /// Whether the region admin allowed `outbound-http:` destinations inside the network.
    #[serde(default)]
    pub allow_internal_addresses: bool,
    /// When it was installed, and last changed.
    pub installed_at: String,
    /// When its version or grant last changed.
    pub updated_at: String,
    /// Whether it serves now on the node that answered: loaded there and not revoked (other
    /// nodes catch up within seconds).
    pub serving: bool,
    /// The store's revocation of this version.
    pub revoked: Option<RevokedView>,
    /// An upgrade waiting for approval.
    pub pending: Option<PendingView>,
    /// Where it is served: for a SMART web app, where an EHR launches it.
    pub url: String,
    /// A SMART web app's client registration in this region (absent for hosted apps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smart_client: Option<SmartClientView>,
}

/// A SMART web app as installed: the OAuth client its vendor configures for this region.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SmartClientView {
    /// Its client id at healthcloud's authorization server, `publisher.app@region`.
    pub client_id: String,
    /// Where it is launched (none for a backend service).
    pub launch_url: Option<String>,
    /// Where its authorizations may return.
    pub redirect_uris: Vec<String>,
}

/// What an upgrade did.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UpgradeView {
    /// `upgraded`, or `pending` when the new version asks for more and waits for approval.
    pub status: String,
    /// The install now.
    pub install: InstallView,
}

/// One audited admin action.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// When.
    pub at: String,
    /// Who (the token's subject).
    pub actor: String,
    /// `install`, `grant`, `revoke`, `upgrade`, `approve`, `decline` or `uninstall` (callers
    /// who are not region admins of the region are in the security log instead).
    pub action: String,
    /// The app.
    pub app: Option<String>,
    /// What was asked.
    pub detail: String,
    /// `allowed`, or `refused: …`.
    pub outcome: String,
}

/// What `DELETE …/installs/{publisher}/{app}` answers.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Uninstalled {
    /// The region.
    pub region: String,
    /// `publisher/app`.
    pub app: String,
    /// Always true.
    pub uninstalled: bool,
}

/// `POST …/installs`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallRequest {
    /// `publisher/app@version`.
    #[schema(
        example = "examples/hello@0.1.0",
        pattern = r"^[a-z0-9][a-z0-9-]{0,63}/[a-z0-9][a-z0-9-]{0,63}@(0|[1-9][0-9]{0,17})\.(0|[1-9][0-9]{0,17})\.(0|[1-9][0-9]{0,17})(-(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)(\.(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$"
    )]
    pub app: String,
    /// The capabilities to grant: a subset of what the version requests.
    #[serde(default)]
    pub grant: Vec<String>,
    /// Allows `outbound-http:` destinations inside the network (loopback, private,
    /// link-local, metadata, …) among `grant`, which are refused otherwise. Recorded in the
    /// region's audit log.
    #[serde(default)]
    pub allow_internal_addresses: bool,
}

/// `POST …/grant` and `…/revoke`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CapabilityRequest {
    /// The capability.
    pub capability: String,
    /// With a grant of an `outbound-http:` destination inside the network: allows it (it is
    /// refused otherwise). Recorded in the region's audit log.
    #[serde(default)]
    pub allow_internal_addresses: bool,
}

/// `POST …/upgrade`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpgradeRequest {
    /// The version to upgrade to.
    #[schema(
        example = "0.2.0",
        pattern = r"^(0|[1-9][0-9]{0,17})\.(0|[1-9][0-9]{0,17})\.(0|[1-9][0-9]{0,17})(-(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)(\.(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$"
    )]
    pub version: String,
    /// Approves what the new version asks for beyond the installed one; without it, such an
    /// upgrade waits.
    #[serde(default)]
    pub approve: bool,
    /// With `approve`: which of the new version's requested capabilities to grant besides
    /// those carried over from the installed version.
    #[serde(default)]
    pub grant: Vec<String>,
    /// With `approve`: allows `outbound-http:` destinations inside the network among what the
    /// new version is granted. Recorded in the region's audit log.
    #[serde(default)]
    pub allow_internal_addresses: bool,
}
