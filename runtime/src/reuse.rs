//! Optional instance reuse: an instance that served a request successfully may serve the next
//! request with exactly the same launch context, never another. Off by default.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use healthcloud_integration::auth::Principal;
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::Proxy;

use crate::instance::InstanceState;

/// How long an idle instance (and the patient data its memory may hold) is kept.
const IDLE_FOR: Duration = Duration::from_secs(30);

/// Idle instances of one install, each for one launch context.
#[derive(Default)]
pub(crate) struct IdleInstances(Mutex<Vec<Idle>>);

struct Idle {
    context: String,
    since: Instant,
    store: Store<InstanceState>,
    proxy: Proxy,
}

impl IdleInstances {
    /// An idle instance for exactly `context`, if one is kept.
    pub fn take(&self, context: &str) -> Option<(Store<InstanceState>, Proxy)> {
        let mut idle = self.0.lock().expect("idle instances lock poisoned");
        idle.retain(|i| i.since.elapsed() < IDLE_FOR);
        let position = idle.iter().position(|i| i.context == context)?;
        let Idle { store, proxy, .. } = idle.swap_remove(position);
        Some((store, proxy))
    }

    /// Keeps an instance that just served `context` successfully, at most `max` per install.
    pub fn put(&self, context: String, store: Store<InstanceState>, proxy: Proxy, max: usize) {
        let mut idle = self.0.lock().expect("idle instances lock poisoned");
        idle.retain(|i| i.since.elapsed() < IDLE_FOR);
        if idle.len() >= max {
            idle.remove(0);
        }
        idle.push(Idle {
            context,
            since: Instant::now(),
            store,
            proxy,
        });
    }
}

/// Everything that makes up a launch context, except the token's timestamps, and the version
/// of the region's grant: two requests share an instance only if all of it is equal, so data
/// an instance read before a grant was changed is never served after.
pub(crate) fn launch_context_key(principal: &Principal, grant_version: u64) -> String {
    let c = &principal.claims;
    serde_json::json!([
        c.iss,
        c.sub,
        c.role.as_str(),
        c.patient,
        c.scope,
        c.region,
        c.fhir_user,
        c.org,
        grant_version
    ])
    .to_string()
}
