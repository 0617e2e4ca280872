//! Allocates and touches memory on `/grow` until an allocation fails, so the host's memory
//! cap must stop it. `/grow?mb=N` stops after N MiB instead and answers 200, to show that
//! memory below the cap is usable.

use std::hint::black_box;

use guest_support::bindings::exports::wasi::http::incoming_handler::Guest;
use guest_support::bindings::wasi::http::types::{IncomingRequest, ResponseOutparam};
use guest_support::{Request, respond_bad_number, respond_no_route, respond_text};

const MIB: usize = 1 << 20;

struct MemoryBomb;

impl Guest for MemoryBomb {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let request = Request::new(&request);
        if request.ends_with("/ok") {
            respond_text(response_out, 200, "ok");
        } else if request.ends_with("/grow") {
            match request.query_number("mb", usize::MAX) {
                Ok(limit) => {
                    let held = grow(limit);
                    respond_text(response_out, 200, format!("grew {held} MiB"));
                }
                Err(text) => respond_bad_number(response_out, "mb", &text),
            }
        } else {
            respond_no_route(response_out, &request);
        }
    }
}

/// Holds `limit` chunks of 1 MiB, each written all through (a fresh page that is only
/// reserved would cost the host nothing). Without a limit it ends when an allocation fails,
/// which aborts: a trap.
fn grow(limit: usize) -> usize {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    while chunks.len() < limit {
        let mut chunk = Vec::with_capacity(MIB);
        // The fill value depends on the count so no two chunks are alike.
        chunk.resize(MIB, (chunks.len() as u8) | 1);
        // Opaque to the optimizer: the allocation and the writes must happen.
        chunks.push(black_box(chunk));
    }
    black_box(&chunks).len()
}

guest_support::bindings::export!(MemoryBomb);
