//! Installing an app in a region: validation (the store's publish path reuses it), the
//! pre-instantiated component, and the region's live grant.

use std::sync::Arc;

use healthcloud_integration::policy::AppIdentity;
use healthcloud_package::manifest::{Capability, Manifest};
use tokio::sync::Semaphore;
use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::capability::{Grant, InstallStates, PLATFORM_VERSION, PLATFORM_VERSIONS, import_rules};
use crate::instance::InstanceState;
use crate::reuse::IdleInstances;

mod error;

pub use crate::capability::outbound::check_destinations;
pub use error::InstallError;
pub use healthcloud_package::package::digest;

/// Checks that `bytes` are a component (not a core module, not precompiled code) whose
/// imports the manifest's capabilities allow, by name, and compiles it.
pub fn validate(
    compile: impl FnOnce(&[u8]) -> anyhow::Result<Component>,
    engine: &Engine,
    bytes: &[u8],
    manifest: &Manifest,
) -> Result<Component, InstallError> {
    if Engine::detect_precompiled(bytes).is_some() {
        return Err(InstallError::Precompiled);
    }
    let is_text = bytes.first().is_some_and(|b| *b == b'(');
    if !is_text {
        if wasmparser::Parser::is_core_wasm(bytes) {
            return Err(InstallError::CoreModule);
        }
        if !wasmparser::Parser::is_component(bytes) {
            return Err(InstallError::NotWasm);
        }
    }
    let component = compile(bytes).map_err(|e| {
        if is_text && e.to_string().contains("expected") {
            InstallError::NotWasm
        } else {
            InstallError::Invalid(format!("{e:#}"))
        }
    })?;
    check_component_imports(engine, &component, manifest)?;
    Ok(component)
}

/// Checks a compiled component's imports against what `manifest` requests.
pub fn check_component_imports(
    engine: &Engine,
    component: &Component,
    manifest: &Manifest,
) -> Result<(), InstallError> {
    let imports: Vec<String> = component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    check_imports(&imports, &manifest.capabilities())
}

/// Every import must be allowed by name: wasmtime would instantiate a component importing an
/// *empty* interface nobody linked, so linking alone proves nothing. A platform interface is
/// known by its name and one of the served versions ([`PLATFORM_VERSIONS`]); the same import
/// rule applies to it in every version.
pub fn check_imports(imports: &[String], requested: &[Capability]) -> Result<(), InstallError> {
    let rules = import_rules();
    for import in imports {
        let (interface, version) = import.split_once('@').unwrap_or((import, ""));
        let unknown = |hint: &str| InstallError::UnknownImport {
            import: import.clone(),
            hint: hint.to_owned(),
        };
        if interface.starts_with("healthcloud:platform/") && !PLATFORM_VERSIONS.contains(&version) {
            return Err(unknown(&format!(
                ": this host serves healthcloud:platform@{}; build against {PLATFORM_VERSION}",
                PLATFORM_VERSIONS.join(" and @")
            )));
        }
        if interface.starts_with("wasi:") && !version.starts_with("0.2.") {
            return Err(unknown(": this host serves WASI 0.2 (wasm32-wasip2)"));
        }
        let Some(rule) = rules.iter().find(|rule| rule.interface == interface) else {
            let hint = if interface.starts_with("wasi:sockets/") {
                ": apps have no sockets; make HTTP requests through wasi:http/outgoing-handler with an outbound-http:<host> capability"
            } else {
                ""
            };
            return Err(unknown(hint));
        };
        if !(rule.allowed)(requested) {
            return Err(InstallError::ImportNotRequested {
                import: import.clone(),
                needs: rule.needs,
            });
        }
    }
    Ok(())
}

/// Refuses a grant that is not a subset of what the manifest requests.
pub fn check_grant(manifest: &Manifest, grant: &[Capability]) -> Result<(), InstallError> {
    let requested = manifest.capabilities();
    match grant.iter().find(|g| !requested.contains(g)) {
        Some(extra) => Err(InstallError::NotRequested(extra.to_string())),
        None => Ok(()),
    }
}

/// An app installed in a region: ready to instantiate, with the region's grant.
pub struct Install {
    /// The app's manifest.
    pub manifest: Manifest,
    /// The app as audit records and consents name it (id, version, digest, publisher key,
    /// region).
    pub identity: Arc<AppIdentity>,
    /// What the region granted; changes apply to the next host call.
    pub grant: Grant,
    /// Shared by every install of the same component bytes.
    pub(crate) pre: Arc<Prepared>,
    /// Each capability's configuration of this install, from its manifest and grant.
    pub(crate) capabilities: InstallStates,
    /// Instances running now, at most the concurrency limit.
    pub(crate) slots: Arc<Semaphore>,
    /// Instances kept for reuse (only with `Limits::reuse_instances`).
    pub(crate) idle: IdleInstances,
    /// Cancelled when the install stops serving (uninstalled, or its version revoked): its
    /// in-flight requests are interrupted.
    pub(crate) stop: tokio_util::sync::CancellationToken,
}

impl std::fmt::Debug for Install {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Install")
            .field("identity", &self.identity)
            .field("grant", &self.grant)
            .finish_non_exhaustive()
    }
}

/// A compiled component, linked and ready to instantiate: what every install of the same
/// bytes shares.
pub(crate) struct Prepared {
    pub(crate) component: Component,
    pub(crate) pre: ProxyPre<InstanceState>,
}

impl std::ops::Deref for Prepared {
    type Target = ProxyPre<InstanceState>;

    fn deref(&self) -> &Self::Target {
        &self.pre
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(names: &[&str]) -> Vec<Capability> {
        names
            .iter()
            .map(|n| Capability::parse(n).unwrap())
            .collect()
    }

    fn names(imports: &[&str]) -> Vec<String> {
        imports.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn imports_are_checked_by_name_against_the_request() {
        let std_imports = [
            "wasi:cli/environment@0.2.6",
            "wasi:io/streams@0.2.12",
            "wasi:http/types@0.2.12",
        ];
        assert!(check_imports(&names(&std_imports), &[]).is_ok());
        // Every served version of a platform interface, under the same rule.
        for version in ["0.1.0", "0.2.0"] {
            let fhir = names(&[&format!("healthcloud:platform/fhir@{version}")]);
            assert!(check_imports(&fhir, &caps(&["patient/Observation.rs"])).is_ok());
            let refused = check_imports(&fhir, &caps(&["kv"])).unwrap_err();
            assert!(
                refused
                    .to_string()
                    .contains(&format!("healthcloud:platform/fhir@{version}")),
                "{refused}"
            );
            let kv = names(&[&format!("healthcloud:platform/kv@{version}")]);
            assert!(matches!(
                check_imports(&kv, &caps(&["patient/Observation.rs"])),
                Err(InstallError::ImportNotRequested { .. })
            ));
        }
        let outgoing = names(&["wasi:http/outgoing-handler@0.2.12"]);
        assert!(check_imports(&outgoing, &[]).is_err());
        assert!(check_imports(&outgoing, &caps(&["outbound-http:example.org"])).is_ok());
    }

    #[test]
    fn sockets_unknown_interfaces_and_other_versions_are_refused() {
        for import in [
            "wasi:sockets/tcp@0.2.12",
            "acme:spy/keylogger@1.0.0",
            "healthcloud:platform/fhir@0.3.0",
            "healthcloud:platform/fhir@0.1.1",
            "healthcloud:platform/fhir",
            "healthcloud:platform/billing@0.2.0",
            "wasi:http/types@0.3.0",
        ] {
            let all = caps(&["patient/Observation.rs", "kv", "log"]);
            assert!(
                matches!(
                    check_imports(&names(&[import]), &all),
                    Err(InstallError::UnknownImport { .. })
                ),
                "{import}"
            );
        }
        let other_version = names(&["healthcloud:platform/fhir@0.3.0"]);
        let refused = check_imports(&other_version, &caps(&["patient/Observation.rs"]))
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("serves healthcloud:platform@0.1.0 and @0.2.0; build against 0.2.0"),
            "{refused}"
        );
    }
}
