//! The smallest healthcloud app: answers every request with a greeting.
//!
//! It uses only the SDK's HTTP layer, so the component imports nothing but standard WASI
//! (`wasi:http` and what Rust's standard library needs) and no `healthcloud:platform`
//! interface: it needs no capability, and `wasmtime serve` runs the very same bytes.

use healthcloud_sdk::{Request, Response};

healthcloud_sdk::serve!(handle);

fn handle(_request: Request) -> Response {
    Response::text("Hello from healthcloud")
}

#[cfg(test)]
mod tests {
    use healthcloud_sdk::Method;

    use super::*;

    #[test]
    fn greets_on_every_path() {
        for path in [
            "/apps/r/examples/hello",
            "/apps/r/examples/hello/any/thing",
            "/",
        ] {
            let response = handle(Request::new(Method::Get, path));
            assert_eq!(response.status, 200);
            assert_eq!(response.body_text(), "Hello from healthcloud");
            assert_eq!(
                response.header("content-type"),
                Some("text/plain; charset=utf-8")
            );
        }
    }
}
