//! Installing an app in a region: validation (the store's publish path reuses it), the
//! pre-instantiated component, and the region's live grant.

use std::sync::Arc;

use healthcloud_integration::policy::AppIdentity;
use healthcloud_store::manifest::{Capability, Manifest};
use tokio::sync::Semaphore;
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::capability::{Grant, PLATFORM_VERSION, import_rules};

/// Why an app was not installed. Each message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The bytes are wasmtime's precompiled machine code, which is never accepted.
    #[error(
        "these bytes are a precompiled wasmtime artifact, not a component: install the .wasm file the app's build produced"
    )]
    Precompiled,
    /// A core module instead of a component.
    #[error(
        "these bytes are a core WebAssembly module, not a component: build the app for wasm32-wasip2 (`healthcloud app build`)"
    )]
    CoreModule,
    /// Not WebAssembly at all.
    #[error(
        "these bytes are not WebAssembly: install the .wasm component the app's build produced"
    )]
    NotWasm,
    /// The component failed to compile or link.
    #[error("the component is not valid: {0}")]
    Invalid(String),
    /// An import the manifest does not request.
    #[error(
        "the component imports {import}, which needs {needs} in its manifest: request it (with a justification) or remove the import"
    )]
    ImportNotRequested {
        /// The import's name.
        import: String,
        /// What the manifest would have to request.
        needs: &'static str,
    },
    /// An import no capability provides.
    #[error("the component imports {import}, which this platform does not provide{hint}")]
    UnknownImport {
        /// The import's name.
        import: String,
        /// How to do without it.
        hint: String,
    },
    /// The component does not serve HTTP.
    #[error(
        "the component does not export wasi:http/incoming-handler@0.2: an app is built for the world healthcloud:platform/app ({0})"
    )]
    NotAnApp(String),
    /// A signed package whose signature or component does not hold.
    #[error("the package does not verify: {0}")]
    Package(#[from] healthcloud_store::package::PackageError),
    /// A region granted something the app never asked for.
    #[error(
        "'{0}' is not among the capabilities the app's manifest requests; a region grants a subset of them"
    )]
    NotRequested(String),
    /// An `outbound-http:` destination inside the network without the region admin's
    /// allowance.
    #[error(
        "'{capability}' reaches {host}, an address inside your network ({why}): a region admin allows it only explicitly, with `healthcloud region install|grant … --allow-internal-address` (API field allow_internal_addresses; recorded in the region's audit log); otherwise leave this capability out of the grant"
    )]
    InternalAddress {
        /// The capability.
        capability: String,
        /// Its host.
        host: String,
        /// Why the host is internal.
        why: String,
    },
}

pub use healthcloud_store::package::digest;

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
/// *empty* interface nobody linked, so linking alone proves nothing.
pub fn check_imports(imports: &[String], requested: &[Capability]) -> Result<(), InstallError> {
    let rules = import_rules();
    for import in imports {
        let (interface, version) = import.split_once('@').unwrap_or((import, ""));
        let unknown = |hint: &str| InstallError::UnknownImport {
            import: import.clone(),
            hint: hint.to_owned(),
        };
        if interface.starts_with("healthcloud:platform/") && version != PLATFORM_VERSION {
            return Err(unknown(&format!(
                ": this host serves healthcloud:platform@{PLATFORM_VERSION}; build against that version"
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

/// Refuses `outbound-http:` destinations inside the network (loopback, private, link-local,
/// metadata, …: [`healthcloud_store::address`]) unless the region admin allowed them.
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
    pub(crate) pre: Arc<crate::engine::Prepared>,
    /// Instances running now, at most the concurrency limit.
    pub(crate) slots: Arc<Semaphore>,
    /// Instances kept for reuse (only with `Limits::reuse_instances`).
    pub(crate) idle: crate::reuse::IdleInstances,
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
        let fhir = names(&["healthcloud:platform/fhir@0.1.0"]);
        assert!(check_imports(&fhir, &caps(&["patient/Observation.rs"])).is_ok());
        let refused = check_imports(&fhir, &caps(&["kv"])).unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("healthcloud:platform/fhir@0.1.0"),
            "{refused}"
        );
        let kv = names(&["healthcloud:platform/kv@0.1.0"]);
        assert!(matches!(
            check_imports(&kv, &caps(&["patient/Observation.rs"])),
            Err(InstallError::ImportNotRequested { .. })
        ));
        let outgoing = names(&["wasi:http/outgoing-handler@0.2.12"]);
        assert!(check_imports(&outgoing, &[]).is_err());
        assert!(check_imports(&outgoing, &caps(&["outbound-http:example.org"])).is_ok());
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

    #[test]
    fn sockets_unknown_interfaces_and_other_versions_are_refused() {
        for import in [
            "wasi:sockets/tcp@0.2.12",
            "acme:spy/keylogger@1.0.0",
            "healthcloud:platform/fhir@0.2.0",
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
    }
}
