//! The host capabilities. Each lives in its own folder, `capability/<name>/`, and is one line
//! in the `capabilities!` list at the end of this file; nothing else in the runtime names it.
//! The shape follows Spin's factors (`spin-factors`), adapted: a capability implements
//! [`HostCapability`], that is
//!
//! - **its import rules** ([`HostCapability::IMPORTS`]): the WIT interfaces it serves and what a
//!   manifest must request to import them, checked by name when an app is installed;
//! - **its runtime-wide part** ([`HostCapability::new`]): built once per runtime from the
//!   [`Host`] (the data service, the database) and **its limits** (the fields of
//!   [`Limits`] it reads, taken here);
//! - **linking** ([`HostCapability::link`]): its host functions added to the engine's linker,
//!   once per engine;
//! - **per-install configuration** ([`HostCapability::configure`]): what it keeps for one
//!   install, from the manifest and the region's grant, refusing the install when the grant
//!   cannot be honoured;
//! - **per-instance state** ([`HostCapability::instance`], [`HostCapability::renew`]): the
//!   context its host calls run on, built for every request from the launch (verified user,
//!   app, the install's live grant), never from the guest;
//! - `host.rs`: the generated host trait implemented on that context, checking the grant
//!   again at call time (a grant removed mid-request denies the very next call);
//!   `host_v0_1.rs`: the same interface as the frozen `healthcloud:platform@0.1.0` has it,
//!   answered by the `host.rs` calls, so apps built against that version keep running;
//! - its unit tests beside it, on a context built by `testing` without a guest component.
//!
//! # Adding a capability
//!
//! A folder `capability/clock/` whose `mod.rs` defines `pub struct Clock` implementing
//! [`HostCapability`] (and `host.rs` the bindgen host trait on `&mut` its instance state),
//! and one line in the list below:
//!
//! ```text
//! capabilities! {
//!     …
//!     pub mod clock; use clock::Clock;
//! }
//! ```

use std::fmt::Debug;
use std::marker::PhantomData;
use std::sync::{Arc, RwLock};

use healthcloud_integration::FhirService;
use healthcloud_integration::policy::AppIdentity;
use healthcloud_package::manifest::{Capability, Manifest};
use healthcloud_platform::auth::Principal;
use healthcloud_platform::db::Database;
use healthcloud_platform::scope::{Scope, ScopeContext};
use wasmtime::component::{HasData, Linker};

use crate::install::InstallError;
use crate::limits::Limits;

/// One host capability: see the [module documentation](self) for what each part is for.
pub trait HostCapability: Debug + Send + Sync + Sized + 'static {
    /// The interfaces it serves and what a manifest must request to import each.
    const IMPORTS: &'static [ImportRule];

    /// What it keeps for one install.
    type InstallState: Debug + Send + Sync + 'static;

    /// What one instance holds in its store: the context of its host calls.
    type InstanceState: Send + 'static;

    /// Its runtime-wide part, with its limits taken from `host.limits`.
    fn new(host: &Host<'_>) -> Self;

    /// Adds its host functions to `linker`, for every served platform version
    /// ([`PLATFORM_VERSIONS`]), reaching its instance state through `state`. Capabilities
    /// served by the WASI linking (outgoing HTTP) add nothing.
    fn link<T: Send + 'static>(
        linker: &mut Linker<T>,
        state: fn(&mut T) -> &mut Self::InstanceState,
    ) -> wasmtime::Result<()> {
        let _ = (linker, state);
        Ok(())
    }

    /// Its configuration of one install, or why the install is refused.
    fn configure(&self, install: &InstallContext<'_>) -> Result<Self::InstallState, InstallError>;

    /// The state of a new instance of the install configured as `install`, for `launch`.
    fn instance(&self, install: &Self::InstallState, launch: &Launch<'_>) -> Self::InstanceState;

    /// Prepares a reused instance's state for its next request: `fresh` is what
    /// [`instance`](Self::instance) built for it. By default the fresh state replaces the old.
    fn renew(&self, state: &mut Self::InstanceState, fresh: Self::InstanceState) {
        *state = fresh;
    }
}

/// What a capability's runtime-wide part is built from.
#[derive(Debug, Clone, Copy)]
pub struct Host<'a> {
    /// The integration cloud's data service: the one door to patient data.
    pub service: &'a FhirService,
    /// The runtime's database (its own tables beside the integration cloud's).
    pub db: &'a Database,
    /// The containment limits; each capability takes its own.
    pub limits: &'a Limits,
}

/// What a capability configures an install from.
#[derive(Debug, Clone, Copy)]
pub struct InstallContext<'a> {
    /// The app's manifest: what it requests.
    pub manifest: &'a Manifest,
    /// The region's live grant (a subset of what the manifest requests).
    pub grant: &'a Grant,
}

/// What one request brings to a new instance.
#[derive(Debug, Clone, Copy)]
pub struct Launch<'a> {
    /// The install serving the request: app, version, digest, publisher key and region.
    pub app: &'a Arc<AppIdentity>,
    /// The install's live grant.
    pub grant: &'a Grant,
    /// The verified user, from the token (never from the guest).
    pub principal: &'a Arc<Principal>,
}

/// Links a capability's bindgen-generated `add_to_linker` to its instance state: the host
/// trait is implemented on `&mut` that state.
pub(crate) struct StateOf<C>(PhantomData<C>);

impl<C: HostCapability> HasData for StateOf<C> {
    type Data<'a> = &'a mut C::InstanceState;
}

/// A store's data that holds every capability's instance state.
pub(crate) trait HasCapabilities: Send + 'static {
    /// Every capability's state in this instance.
    fn capabilities(&mut self) -> &mut InstanceStates;
}

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
    let mut rules = capability_imports();
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

/// The platform package version apps are built against now: the SDK's and the template's.
pub const PLATFORM_VERSION: &str = "0.2.0";

/// Every platform package version this host serves: released versions are frozen and stay
/// served, so an app keeps installing and running after a new version is released. Each
/// capability links its interfaces once per version (`host.rs` the current one,
/// `host_v0_1.rs` 0.1.0).
pub const PLATFORM_VERSIONS: &[&str] = &["0.1.0", PLATFORM_VERSION];

/// Declares the capabilities and what the runtime keeps of each: one line per capability, its
/// module and the type in it that implements [`HostCapability`].
macro_rules! capabilities {
    ($(pub mod $name:ident; use $module:ident::$capability:ident;)*) => {
        $(pub mod $name;)*

        /// Every capability's runtime-wide part.
        #[derive(Debug)]
        pub(crate) struct Capabilities {
            $(pub(crate) $name: $module::$capability,)*
        }

        /// Every capability's configuration of one install.
        #[derive(Debug)]
        pub(crate) struct InstallStates {
            $(pub(crate) $name: <$module::$capability as HostCapability>::InstallState,)*
        }

        /// Every capability's state in one instance.
        pub(crate) struct InstanceStates {
            $(pub(crate) $name: <$module::$capability as HostCapability>::InstanceState,)*
        }

        impl Capabilities {
            /// Every capability's runtime-wide part.
            pub(crate) fn new(host: &Host<'_>) -> Self {
                Capabilities {
                    $($name: $module::$capability::new(host),)*
                }
            }

            /// Links every capability into `linker`.
            pub(crate) fn link<T: HasCapabilities>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
                $({
                    fn state<T: HasCapabilities>(
                        data: &mut T,
                    ) -> &mut <$module::$capability as HostCapability>::InstanceState {
                        &mut data.capabilities().$name
                    }
                    $module::$capability::link(linker, state::<T>)?;
                })*
                Ok(())
            }

            /// Every capability's configuration of an install, or the first refusal.
            pub(crate) fn configure(
                &self,
                install: &InstallContext<'_>,
            ) -> Result<InstallStates, InstallError> {
                Ok(InstallStates {
                    $($name: self.$name.configure(install)?,)*
                })
            }

            /// Every capability's state for a new instance.
            pub(crate) fn instance(&self, install: &InstallStates, launch: &Launch<'_>) -> InstanceStates {
                InstanceStates {
                    $($name: self.$name.instance(&install.$name, launch),)*
                }
            }

            /// Prepares a reused instance's states for its next request.
            pub(crate) fn renew(&self, states: &mut InstanceStates, fresh: InstanceStates) {
                $(self.$name.renew(&mut states.$name, fresh.$name);)*
            }
        }

        /// Every capability's import rules.
        fn capability_imports() -> Vec<ImportRule> {
            let mut rules = Vec::new();
            $(rules.extend_from_slice(<$module::$capability as HostCapability>::IMPORTS);)*
            rules
        }
    };
}

capabilities! {
    pub mod context; use context::Context;
    pub mod fhir; use fhir::Fhir;
    pub mod kv; use kv::Kv;
    pub mod log; use log::Log;
    pub mod outbound; use outbound::Outbound;
}

#[cfg(test)]
pub(crate) mod testing;
