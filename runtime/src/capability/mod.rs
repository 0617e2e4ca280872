//! The host capabilities, one module each with the same shape:
//!
//! - a [`ImportRule`]: the WIT interface it serves and whether a manifest's requested
//!   capabilities allow importing it (checked by name when an app is installed);
//! - `add_to_linker`: linked once per engine;
//! - a `…Ctx` built per instance from the launch context and the install's live grant;
//! - `host.rs`: the generated host trait implemented on that context, checking the grant
//!   again at call time (a grant removed mid-request denies the very next call).

pub mod context;
pub mod fhir;
pub mod kv;
pub mod log;
pub mod outbound;

use std::sync::{Arc, RwLock};

use healthcloud_package::manifest::Capability;
use healthcloud_platform::scope::{Scope, ScopeContext};

/// Which imports a capability serves and what a manifest must request to import them.
#[derive(Debug, Clone, Copy)]
pub struct ImportRule {
    /// The interface, without version: `healthcloud:platform/fhir`.
    pub interface: &'static str,
    /// What the manifest must request, in words for the error message.
    pub needs: &'static str,
    /// Whether `requested` allows the import.
    pub allowed: fn(&[Capability]) -> bool,
}

/// The capabilities a region granted one install. Shared by the install and every instance
/// serving it, and read at each host call, so a change applies to the very next call.
#[derive(Debug, Clone, Default)]
pub struct Grant(
    Arc<RwLock<Vec<Capability>>>,
    Arc<std::sync::atomic::AtomicU64>,
    /// The region admin's allowance for `outbound-http:` destinations inside the network.
    Arc<std::sync::atomic::AtomicBool>,
);

impl Grant {
    /// A grant of `capabilities`, without internal addresses.
    pub fn new(capabilities: Vec<Capability>) -> Self {
        Grant(
            Arc::new(RwLock::new(capabilities)),
            Default::default(),
            Default::default(),
        )
    }

    /// This grant, with `allowed` as the region admin's allowance for `outbound-http:`
    /// destinations inside the network (loopback, private, link-local, metadata, …).
    pub fn allowing_internal_addresses(self, allowed: bool) -> Self {
        self.set_internal_addresses(allowed);
        self
    }

    /// Whether the region admin allowed this install's internal `outbound-http:` destinations.
    pub fn allows_internal_addresses(&self) -> bool {
        self.2.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Changes the allowance for internal addresses; applies to the next request.
    pub fn set_internal_addresses(&self, allowed: bool) {
        if self.2.swap(allowed, std::sync::atomic::Ordering::SeqCst) != allowed {
            self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// The granted capabilities now.
    pub fn capabilities(&self) -> Vec<Capability> {
        self.0.read().expect("grant lock poisoned").clone()
    }

    /// Replaces the granted capabilities.
    pub fn replace(&self, capabilities: Vec<Capability>) {
        *self.0.write().expect("grant lock poisoned") = capabilities;
        self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Counts changes: an instance kept for reuse serves again only under the grant it
    /// was created with.
    pub fn version(&self) -> u64 {
        self.1.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether `capability` is granted now.
    pub fn allows(&self, capability: &Capability) -> bool {
        self.0
            .read()
            .expect("grant lock poisoned")
            .iter()
            .any(|granted| granted == capability)
    }

    /// The granted data scopes, confined to the patient in context: an app acts only on the
    /// patient it was opened for, whatever context the region wrote in its grant.
    pub fn patient_scopes(&self) -> Vec<Scope> {
        self.0
            .read()
            .expect("grant lock poisoned")
            .iter()
            .filter_map(|capability| match capability {
                Capability::Data(scope) => {
                    let mut scope = scope.clone();
                    scope.context = ScopeContext::Patient;
                    Some(scope)
                }
                _ => None,
            })
            .collect()
    }

    /// The granted outgoing HTTP hosts (`host` or `host:port`).
    pub fn outbound_hosts(&self) -> Vec<String> {
        self.0
            .read()
            .expect("grant lock poisoned")
            .iter()
            .filter_map(|capability| match capability {
                Capability::OutboundHttp(host) => Some(host.clone()),
                _ => None,
            })
            .collect()
    }
}

impl From<Vec<Capability>> for Grant {
    fn from(capabilities: Vec<Capability>) -> Self {
        Grant::new(capabilities)
    }
}

impl Grant {
    /// Whether an `outbound-http` entry allows `host` on `port`.
    pub fn allows_outbound_host(&self, host: &str, port: u16) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        granted_host(&self.outbound_hosts(), host, port).is_some()
    }
}

/// The `outbound-http` entry of `granted` that allows `host` (IPv6 literals without brackets)
/// on `port`: `host` (any port) or `host:port`, compared as parsed authorities.
pub(crate) fn granted_host<'a>(granted: &'a [String], host: &str, port: u16) -> Option<&'a String> {
    granted.iter().find(|grant| {
        let Ok(authority) = grant.parse::<http::uri::Authority>() else {
            return false;
        };
        let granted_host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        granted_host.eq_ignore_ascii_case(host) && authority.port_u16().is_none_or(|p| p == port)
    })
}

/// Every import rule, platform and WASI: an import no rule allows is refused at install.
pub(crate) fn import_rules() -> Vec<ImportRule> {
    let mut rules = vec![
        context::IMPORT_RULE,
        fhir::IMPORT_RULE,
        kv::IMPORT_RULE,
        log::IMPORT_RULE,
        outbound::IMPORT_RULE,
    ];
    rules.extend(WASI_ALWAYS.iter().map(|interface| ImportRule {
        interface,
        needs: "nothing",
        allowed: |_| true,
    }));
    rules
}

/// Standard WASI interfaces every app may import: Rust's standard library imports most of
/// them. The host backs them with nothing to leak: no preopened directories, no environment,
/// no arguments. Sockets are absent on purpose (outgoing HTTP is the way out).
const WASI_ALWAYS: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:http/types",
];

/// The platform package version this host serves.
pub const PLATFORM_VERSION: &str = "0.1.0";
