//! The one `bindgen!` over `wit/`: host bindings of the `platform` world (context, fhir, log,
//! kv). WASI and wasi:http bindings come from wasmtime-wasi and wasmtime-wasi-http.

#[allow(missing_docs, reason = "bindgen-generated")]
mod generated {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "healthcloud:platform/platform",
        imports: {
            "healthcloud:platform/fhir": async,
            "healthcloud:platform/kv": async,
            default: tracing,
        },
    });
}

pub use generated::healthcloud::platform::{context, fhir, kv, log};
