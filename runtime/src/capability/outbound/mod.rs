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

use std::sync::{Arc, RwLock};
use std::time::Duration;

use healthcloud_package::manifest::Capability;

pub use hooks::OutboundHooks;
pub use resolve::{Resolution, Resolve, SystemResolver};

use super::{Host, HostCapability, ImportRule, InstallContext, Launch};
use crate::install::InstallError;

/// The outgoing HTTP capability. It links nothing of its own: wasi:http is linked with WASI,
/// and every outgoing request goes through the instance's [`OutboundHooks`].
#[derive(Debug)]
pub struct Outbound {
    /// Resolves the hosts apps call out to (see [`Outbound::set_resolver`]).
    resolver: RwLock<Arc<dyn Resolve>>,
    /// [`Limits::host_call_timeout`](crate::Limits::host_call_timeout).
    timeout: Duration,
    /// [`Limits::outbound_requests`](crate::Limits::outbound_requests).
    open_requests: usize,
}

impl Outbound {
    /// Resolves the hosts apps call out to with `resolver` from now on.
    pub(crate) fn set_resolver(&self, resolver: Arc<dyn Resolve>) {
        *self.resolver.write().expect("resolver lock poisoned") = resolver;
    }

    /// The resolver new instances use.
    fn resolver(&self) -> Arc<dyn Resolve> {
        self.resolver
            .read()
            .expect("resolver lock poisoned")
            .clone()
    }
}

impl HostCapability for Outbound {
    /// Importing the outgoing handler needs at least one `outbound-http:<host>`.
    const IMPORTS: &'static [ImportRule] = &[ImportRule {
        interface: "wasi:http/outgoing-handler",
        needs: "an outbound-http:<host> capability",
        allowed: |requested| {
            requested
                .iter()
                .any(|c| matches!(c, Capability::OutboundHttp(_)))
        },
    }];

    type InstallState = ();
    type InstanceState = OutboundHooks;

    fn new(host: &Host<'_>) -> Self {
        Outbound {
            resolver: RwLock::new(Arc::new(SystemResolver)),
            timeout: host.limits.host_call_timeout,
            open_requests: host.limits.outbound_requests,
        }
    }

    /// Refuses granted destinations inside the network unless the region admin allowed them.
    fn configure(&self, install: &InstallContext<'_>) -> Result<(), InstallError> {
        let grant = install.grant;
        check_destinations(&grant.capabilities(), grant.allows_internal_addresses())
    }

    fn instance(&self, _: &(), launch: &Launch<'_>) -> OutboundHooks {
        OutboundHooks {
            grant: launch.grant.clone(),
            app: launch.app.clone(),
            timeout: self.timeout,
            open_requests: Arc::new(tokio::sync::Semaphore::new(self.open_requests)),
            resolver: self.resolver(),
        }
    }
}

/// Refuses `outbound-http:` destinations inside the network (loopback, private, link-local,
/// metadata, …: [`healthcloud_package::address`]) unless the region admin allowed them.
pub fn check_destinations(
    grant: &[Capability],
    allow_internal_addresses: bool,
) -> Result<(), InstallError> {
    if allow_internal_addresses {
        return Ok(());
    }
    match grant
        .iter()
        .find_map(|c| c.internal_destination().map(|(host, why)| (c, host, why)))
    {
        Some((capability, host, why)) => Err(InstallError::InternalAddress {
            capability: capability.to_string(),
            host: host.to_owned(),
            why: why.to_string(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::capability::testing::TestEnvironment;

    #[tokio::test]
    async fn an_install_granting_an_internal_destination_needs_the_allowance() {
        let env = TestEnvironment::new()
            .await
            .requesting(&["outbound-http:10.0.0.5:8080", "outbound-http:api.example.org"]);
        let refused = env.configure::<Outbound>().unwrap_err();
        assert!(
            matches!(refused, InstallError::InternalAddress { ref host, .. } if host == "10.0.0.5")
                && refused.to_string().contains("--allow-internal-address"),
            "{refused}"
        );
        let public = env.granting(&["outbound-http:api.example.org"]);
        assert!(public.configure::<Outbound>().is_ok());
    }

    fn caps(names: &[&str]) -> Vec<Capability> {
        names
            .iter()
            .map(|n| Capability::parse(n).unwrap())
            .collect()
    }

    #[test]
    fn internal_destinations_need_the_region_admins_allowance() {
        for internal in [
            "outbound-http:169.254.169.254",
            "outbound-http:10.0.0.5",
            "outbound-http:127.0.0.1:8080",
            "outbound-http:[::1]",
            "outbound-http:[::ffff:7f00:1]",
            "outbound-http:localhost",
            "outbound-http:metadata.google.internal",
            "outbound-http:100.64.0.1",
            "outbound-http:[fd12::1]",
        ] {
            let grant = caps(&["kv", internal]);
            let refused = check_destinations(&grant, false).unwrap_err();
            assert!(
                matches!(refused, InstallError::InternalAddress { .. })
                    && refused.to_string().contains("--allow-internal-address"),
                "{internal}: {refused}"
            );
            assert!(check_destinations(&grant, true).is_ok(), "{internal}");
        }
        assert!(check_destinations(&caps(&["outbound-http:api.example.org"]), false).is_ok());
    }
}
