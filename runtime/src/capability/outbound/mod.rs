//! `wasi:http/outgoing-handler`: outgoing HTTP only to hosts the manifest requested and the
//! region granted (`outbound-http:<host>`), and only to public addresses.
//!
//! - A granted name is resolved **once** per request ([`Resolve`]); every address in the
//!   answer is checked, and the connection goes to a checked address, for http and https
//!   alike. The name is used only for TLS (SNI, certificate) and the `Host` header, so a DNS
//!   answer that changes between check and connect (rebinding) cannot lead inside.
//! - An address inside the network (loopback, private, link-local, cloud metadata, shared,
//!   unique-local: `healthcloud_package::address`) is refused, unless the grant entry itself
//!   names an internal destination and the region admin installed it allowing internal
//!   addresses (the install-time check refuses such a grant otherwise).
//! - Every failure to connect (refused, unreachable, timed out, TLS, handshake) is the one
//!   error code `destination-unavailable`, so a guest cannot tell a closed port from a
//!   filtered or a non-HTTP one; the host log has the cause.

mod connect;
mod hooks;
mod resolve;

use healthcloud_package::manifest::Capability;

pub use hooks::OutboundHooks;
pub use resolve::{Resolution, Resolve, SystemResolver};

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
