//! Optional instance reuse: an instance that served a request successfully may serve the next
//! request with exactly the same launch context, never another. Off by default.
//!
//! An idle instance may hold patient data in its memory, which it could answer from without a
//! host call (where consent and grant are checked). So the launch context it is kept under
//! includes the region's grant version and the patient's consent version: after a grant
//! change or a Consent written for the patient it never serves again, and it is dropped at the
//! next lookup (or sweep) instead of waiting out its idle time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use healthcloud_integration::store::ConsentVersion;
use healthcloud_platform::auth::{Claims, Principal};
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::Proxy;

use crate::instance::InstanceState;

/// Idle instances of one install, each for one launch context, kept at most `keep`.
pub(crate) struct IdleInstances {
    idle: Mutex<Vec<Idle>>,
    keep: Duration,
}

struct Idle {
    context: LaunchKey,
    since: Instant,
    store: Store<InstanceState>,
    proxy: Proxy,
}

impl IdleInstances {
    /// Keeps idle instances for at most `keep`.
    pub fn new(keep: Duration) -> Self {
        IdleInstances {
            idle: Mutex::new(Vec::new()),
            keep,
        }
    }

    /// An idle instance for exactly `context`, if one is kept. Instances that `context`
    /// shows to be outdated (made under an older grant, or before a consent change of the
    /// same patient) are retired on the way.
    pub fn take(&self, context: &LaunchKey) -> Option<(Store<InstanceState>, Proxy)> {
        let mut idle = self.idle.lock().expect("idle instances lock poisoned");
        idle.retain(|i| i.since.elapsed() < self.keep && !i.context.outdated_by(context));
        let position = idle.iter().position(|i| i.context.same(context))?;
        let Idle { store, proxy, .. } = idle.swap_remove(position);
        Some((store, proxy))
    }

    /// Drops the instances idle for longer than they may be kept, and those made under a
    /// grant older than `grant_version`.
    pub fn sweep(&self, grant_version: u64) {
        let mut idle = self.idle.lock().expect("idle instances lock poisoned");
        idle.retain(|i| i.since.elapsed() < self.keep && i.context.grant_version == grant_version);
    }

    /// Keeps an instance that just served `context` successfully, at most `max` per install.
    pub fn put(&self, context: LaunchKey, store: Store<InstanceState>, proxy: Proxy, max: usize) {
        let mut idle = self.idle.lock().expect("idle instances lock poisoned");
        idle.retain(|i| i.since.elapsed() < self.keep);
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

/// Drops expired idle instances of every install every few seconds, so an idle instance (and
/// the patient data in its memory) is gone on time even if its app gets no more requests.
/// Ends with the runtime.
pub(crate) fn start_sweeper(runtime: std::sync::Weak<crate::Inner>) {
    tokio::spawn(async move {
        let Some(keep) = runtime.upgrade().map(|inner| inner.limits.reuse_idle) else {
            return;
        };
        let mut tick = tokio::time::interval((keep / 4).max(Duration::from_millis(10)));
        loop {
            tick.tick().await;
            let Some(inner) = runtime.upgrade() else {
                break;
            };
            for install in inner.installs() {
                install.idle.sweep(install.grant.version());
            }
        }
    });
}

/// A launch context as instance reuse compares it: everything the token says except its
/// timestamps, the version of the region's grant, and the version of the consents of the
/// patient in context. Two requests share an instance only if all of it is equal, so data an
/// instance read before a grant or a consent was changed is never served after.
pub(crate) struct LaunchKey {
    principal: Arc<Principal>,
    grant_version: u64,
    consent_version: Option<ConsentVersion>,
}

impl LaunchKey {
    /// The key of a request by `principal`, under the grant at `grant_version` and the
    /// consents of the token's patient at `consent_version` (`None`: no patient in context).
    pub fn new(
        principal: &Arc<Principal>,
        grant_version: u64,
        consent_version: Option<ConsentVersion>,
    ) -> Self {
        LaunchKey {
            principal: principal.clone(),
            grant_version,
            consent_version,
        }
    }

    /// Whether an instance kept under `self` must not serve anyone any more, judged by a
    /// request arriving now with `now`: the grant changed since, or the consents of the same
    /// patient did.
    fn outdated_by(&self, now: &LaunchKey) -> bool {
        self.grant_version != now.grant_version
            || (self.principal.claims.patient == now.principal.claims.patient
                && self.consent_version != now.consent_version)
    }

    fn same(&self, other: &LaunchKey) -> bool {
        // Exhaustive, so a new claim must be decided on here.
        let Claims {
            iss,
            sub,
            exp: _,
            iat: _,
            role,
            scope,
            patient,
            region,
            fhir_user,
            org,
            practitioner,
            aud,
            client_id,
            encounter,
            jti: _,
        } = &self.principal.claims;
        let theirs = &other.principal.claims;
        self.grant_version == other.grant_version
            && self.consent_version == other.consent_version
            && (practitioner, aud) == (&theirs.practitioner, &theirs.aud)
            && (client_id, encounter) == (&theirs.client_id, &theirs.encounter)
            && (iss, sub, role, scope, patient, region, fhir_user, org)
                == (
                    &theirs.iss,
                    &theirs.sub,
                    &theirs.role,
                    &theirs.scope,
                    &theirs.patient,
                    &theirs.region,
                    &theirs.fhir_user,
                    &theirs.org,
                )
    }
}
