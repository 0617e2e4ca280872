//! Why an app was not installed: one error for every install-time check, each message naming
//! the fix.

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
    Package(#[from] healthcloud_package::package::PackageError),
    /// A SMART web app's package whose component is not its registration document.
    #[error(
        "a SMART web app's component is its [smart] table as canonical JSON: publish it with `healthcloud app publish`, which writes it"
    )]
    NotTheRegistration,
    /// A SMART web app given to the app cloud to run.
    #[error(
        "this is a SMART web app, which its vendor serves: the app cloud does not run it; a region installs it as an OAuth client (`healthcloud region install`)"
    )]
    SmartWebApp,
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
