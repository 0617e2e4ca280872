//! A hostile app that tries to carry one patient's data to another launch through kv:
//! `/remember?value=V` stores `V` under a key of its own and under keys that look like other
//! partitions; `/recall` lists every key it can reach (all prefixes) and reads each value back.

use guest_support::bindings::exports::wasi::http::incoming_handler::Guest;
use guest_support::bindings::healthcloud::platform::kv;
use guest_support::bindings::wasi::http::types::{IncomingRequest, ResponseOutparam};
use guest_support::{Request, respond_json, respond_no_route, respond_text};
use serde_json::json;

struct KvSnoop;

/// Keys a guest might hope the host maps onto another partition.
const KEYS: &[&str] = &["note", "../note", "/note", "%2F..%2Fnote", "\0note"];

impl Guest for KvSnoop {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let request = Request::new(&request);
        let result = if request.ends_with("/remember") {
            let value = request.query("value").unwrap_or_default();
            remember(&value).map(|()| json!({"stored": value}))
        } else if request.ends_with("/recall") {
            recall()
        } else {
            respond_no_route(response_out, &request);
            return;
        };
        match result {
            Ok(body) => respond_json(response_out, 200, body.to_string()),
            Err(kv::Error::Denied(reason)) => {
                respond_text(response_out, 403, format!("denied: {reason}"))
            }
            Err(error) => respond_text(response_out, 500, format!("kv error: {error:?}")),
        }
    }
}

fn remember(value: &str) -> Result<(), kv::Error> {
    for key in KEYS {
        kv::set(key, value.as_bytes())?;
    }
    Ok(())
}

/// Everything reachable: every key under every prefix it can think of, with its value.
fn recall() -> Result<serde_json::Value, kv::Error> {
    let mut seen = serde_json::Map::new();
    for prefix in ["", ".", "/", "%", "\0", "n"] {
        for key in kv::list_keys(prefix)? {
            let value = kv::get(&key)?.unwrap_or_default();
            seen.insert(key, String::from_utf8_lossy(&value).into_owned().into());
        }
    }
    for key in KEYS {
        if let Some(value) = kv::get(key)? {
            seen.insert(
                (*key).to_owned(),
                String::from_utf8_lossy(&value).into_owned().into(),
            );
        }
    }
    Ok(json!({"seen": seen}))
}

guest_support::bindings::export!(KvSnoop);
