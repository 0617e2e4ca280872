//! `wasi:http/outgoing-handler`: outgoing HTTP only to hosts the manifest requested and the
//! region granted (`outbound-http:<host>`), and only to public addresses: a name that
//! resolves to a loopback, private, link-local (cloud metadata) or otherwise internal address
//! is refused unless the grant names that address literally.

mod hooks;

use healthcloud_store::manifest::Capability;

pub use hooks::OutboundHooks;

use super::ImportRule;

/// Importing the outgoing handler needs at least one `outbound-http:<host>`.
pub const IMPORT_RULE: ImportRule = ImportRule {
    interface: "wasi:http/outgoing-handler",
    needs: "an outbound-http:<host> capability",
    allowed: |requested| {
        requested
            .iter()
            .any(|c| matches!(c, Capability::OutboundHttp(_)))
    },
};
