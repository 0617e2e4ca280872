//! Traps on request: a Rust panic on `/trap`, a bare `unreachable` instruction on
//! `/unreachable`. The host must answer 500 and serve the next request from a fresh instance.
//! `/count` tells how many requests this instance has served, so a test can see whether the
//! host reused it; `/headers` lists the request header names the host passed on.
//! `/remember?secret=S` leaves S (disguised) in a static buffer, among the first pages the
//! instance writes (reset in place), and all over 2 MiB of heap (returned to the kernel), and
//! `/recall?secret=S` counts the copies it can find anywhere in its linear memory: what one
//! request left behind must be gone for the next one.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use guest_support::bindings::exports::wasi::http::incoming_handler::Guest;
use guest_support::bindings::wasi::http::types::{IncomingRequest, ResponseOutparam};
use guest_support::{Request, respond_no_route, respond_text};

struct Trap;

/// Requests this instance has served.
static SERVED: AtomicU32 = AtomicU32::new(0);

impl Guest for Trap {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        // The header names the host passed on, lower-case, one per line.
        let header_names: Vec<String> = request
            .headers()
            .entries()
            .into_iter()
            .map(|(name, _)| name.to_ascii_lowercase())
            .collect();
        let request = Request::new(&request);
        let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
        if request.ends_with("/headers") {
            respond_text(response_out, 200, header_names.join("\n"));
        } else if request.ends_with("/count") {
            respond_text(response_out, 200, served.to_string());
        } else if request.ends_with("/remember") {
            let secret = disguised(&request.query("secret").unwrap_or_default());
            if secret.is_empty() || secret.len() > NOTE_BYTES {
                return respond_text(response_out, 400, "secret: 1 to 64 bytes");
            }
            NOTE.lock().unwrap()[..secret.len()].copy_from_slice(&secret);
            let mut heap = Vec::with_capacity(REMEMBERED_BYTES);
            while heap.len() + secret.len() <= REMEMBERED_BYTES {
                heap.extend_from_slice(&secret);
            }
            std::mem::forget(heap);
            respond_text(response_out, 200, "remembered");
        } else if request.ends_with("/recall") {
            let needle = disguised(&request.query("secret").unwrap_or_default());
            respond_text(response_out, 200, copies_elsewhere(&needle).to_string());
        } else if request.ends_with("/ok") {
            respond_text(response_out, 200, "ok");
        } else if request.ends_with("/trap") {
            // Panics abort on wasm32-wasip2: the message goes to stderr, then `unreachable`.
            panic!("the trap component panics on purpose");
        } else if request.ends_with("/unreachable") {
            core::arch::wasm32::unreachable();
        } else {
            respond_no_route(response_out, &request);
        }
    }
}

/// Heap `/remember` fills.
const REMEMBERED_BYTES: usize = 2 << 20;

/// A static buffer for the secret: static data sits low in linear memory, in the pages an
/// instance writes first.
static NOTE: Mutex<[u8; NOTE_BYTES]> = Mutex::new([0; NOTE_BYTES]);
const NOTE_BYTES: usize = 64;

/// The secret as it is left in memory: not the bytes of the request's own query string,
/// which `/recall` holds too.
fn disguised(secret: &str) -> Vec<u8> {
    secret.bytes().map(|b| b ^ 0x55).collect()
}

/// Copies of `needle` anywhere in linear memory but `needle` itself, after growing the
/// memory by more than `/remember` wrote, so pages a previous instance used are in view.
fn copies_elsewhere(needle: &[u8]) -> usize {
    if needle.is_empty() {
        return 0;
    }
    core::arch::wasm32::memory_grow(0, (REMEMBERED_BYTES + (1 << 20)) / 65536);
    let size = core::arch::wasm32::memory_size(0) * 65536;
    let own = needle.as_ptr() as usize;
    // SAFETY: every address of a wasm32 linear memory below its size is readable; address 0
    // is left out, being no Rust object.
    let memory =
        unsafe { core::slice::from_raw_parts(std::ptr::without_provenance::<u8>(1), size - 1) };
    memory
        .windows(needle.len())
        .enumerate()
        .filter(|(at, window)| *window == needle && at + 1 != own)
        .count()
}

guest_support::bindings::export!(Trap);
