//! Recurses without bound on `/deep`, so the call stack overflows and the host must trap
//! the instance. `/deep?depth=N` stops at depth N instead and answers 200, to show that
//! ordinary recursion works.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use guest_support::bindings::exports::wasi::http::incoming_handler::Guest;
use guest_support::bindings::wasi::http::types::{IncomingRequest, ResponseOutparam};
use guest_support::{Request, respond_bad_number, respond_no_route, respond_text};

/// The depth at which [`descend`] turns back. A global the handler writes, so the optimizer
/// cannot know it and cannot prove the recursion finite or infinite.
static FLOOR: AtomicU64 = AtomicU64::new(u64::MAX);

struct Recursion;

impl Guest for Recursion {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let request = Request::new(&request);
        if request.ends_with("/ok") {
            respond_text(response_out, 200, "ok");
        } else if request.ends_with("/deep") {
            match request.query_number("depth", u64::MAX) {
                Ok(floor) => {
                    FLOOR.store(floor, Ordering::Relaxed);
                    let checksum = descend(black_box(0));
                    respond_text(
                        response_out,
                        200,
                        format!("returned from depth {floor}: {checksum}"),
                    );
                }
                Err(text) => respond_bad_number(response_out, "depth", &text),
            }
        } else {
            respond_no_route(response_out, &request);
        }
    }
}

/// One frame per level. Not a tail call: the result of the call below is rotated and mixed
/// with this frame's `depth`, which must stay alive across the call, so the optimizer cannot
/// turn the recursion into a loop (tail-recursion elimination only handles a call whose
/// result is returned as is, or folded in by one associative operation). Nothing here takes
/// an address, so frames live on the wasm call stack, not on the shadow stack in linear
/// memory: what overflows is the stack the host limits.
#[inline(never)]
fn descend(depth: u64) -> u64 {
    if depth >= FLOOR.load(Ordering::Relaxed) {
        return depth;
    }
    let below = descend(depth + 1);
    below.rotate_left(7) ^ depth
}

guest_support::bindings::export!(Recursion);
