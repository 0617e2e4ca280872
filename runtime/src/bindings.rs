//! Host bindings of the `platform` world (context, fhir, log, kv), one `bindgen!` per released
//! version of the contract in `wit/`: the host serves every version an installed app may have
//! been built against. WASI and wasi:http bindings come from wasmtime-wasi and
//! wasmtime-wasi-http.
//!
//! The current version's interfaces are re-exported here; a frozen version's are under its
//! own module ([`v0_1`]) and each capability answers them by forwarding to its current host
//! calls. Two versions are two `bindgen!`s rather than one over both folders because each
//! version folder carries its own copy of the WASI packages, and one WIT resolve refuses a
//! package twice.

#[allow(missing_docs, reason = "bindgen-generated")]
mod generated {
    /// `healthcloud:platform@0.2.0`, the current contract.
    pub mod current {
        wasmtime::component::bindgen!({
            path: "../wit/0.2.0",
            world: "healthcloud:platform/platform",
            imports: {
                "healthcloud:platform/fhir": async,
                "healthcloud:platform/kv": async,
                default: tracing,
            },
        });
    }

    /// `healthcloud:platform@0.1.0`, frozen.
    pub mod v0_1 {
        wasmtime::component::bindgen!({
            path: "../wit/0.1.0",
            world: "healthcloud:platform/platform",
            imports: {
                "healthcloud:platform/fhir": async,
                "healthcloud:platform/kv": async,
                default: tracing,
            },
        });
    }
}

pub use generated::current::healthcloud::platform::{context, fhir, kv, log};

/// `healthcloud:platform@0.1.0`: frozen, served for apps built against it. It differs from the
/// current version only in `fhir`'s `search-page`, which has no `incomplete`.
pub mod v0_1 {
    pub use super::generated::v0_1::healthcloud::platform::{context, fhir, kv, log};
}
