//! Refusals slow a principal down. Each refused request (a policy or consent refusal, a
//! resource not found, a malformed request, a probe about patients out of reach) takes one
//! token from the principal's bucket; the bucket refills one token per `refill_every` up to
//! `burst`. With the bucket empty, every request of that principal is answered 429 with
//! `Retry-After` before any work is done, and writes no audit or security row, so a flood of
//! probes can neither fill the logs nor keep asking.
//!
//! One limiter serves the FHIR API and the app runtime's data host calls (it lives in
//! [`FhirService`](crate::FhirService)), and the region admin API charges it too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use healthcloud_platform::auth::Principal;

use crate::error::FhirError;

/// How many refusals a principal may have before it is slowed down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusalLimits {
    /// Refusals in a burst (default 30).
    pub burst: u32,
    /// One more refusal is allowed after each such interval (default 2 s, i.e. 30 a minute).
    pub refill_every: Duration,
}

impl Default for RefusalLimits {
    fn default() -> Self {
        RefusalLimits {
            burst: 30,
            refill_every: Duration::from_secs(2),
        }
    }
}

/// Principals remembered at most; past this, those whose bucket is full again are forgotten.
const MAX_TRACKED: usize = 100_000;

/// Per-principal refusal budgets, shared by clones.
#[derive(Debug, Clone)]
pub struct RefusalLimiter {
    limits: RefusalLimits,
    buckets: Arc<Mutex<HashMap<String, Bucket>>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A principal that must wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// Whole seconds until one more request is accepted (at least 1).
    pub retry_after_secs: u64,
}

impl From<Limited> for FhirError {
    fn from(limited: Limited) -> Self {
        FhirError::TooManyRequests {
            retry_after_secs: limited.retry_after_secs,
        }
    }
}

impl RefusalLimiter {
    /// A limiter with `limits`.
    pub fn new(limits: RefusalLimits) -> Self {
        RefusalLimiter {
            limits,
            buckets: Default::default(),
        }
    }

    /// The limits applied.
    pub fn limits(&self) -> RefusalLimits {
        self.limits
    }

    /// Whether `principal` may make a request now.
    pub fn check(&self, principal: &Principal) -> Result<(), Limited> {
        let buckets = self.buckets.lock().expect("refusal limiter poisoned");
        match buckets.get(&key(principal)) {
            Some(bucket) => {
                let tokens = self.refilled(bucket, Instant::now());
                if tokens >= 1.0 {
                    Ok(())
                } else {
                    Err(self.limited(tokens))
                }
            }
            None => Ok(()),
        }
    }

    /// Counts one refusal of `principal`. Returns `true` when this refusal used the last of
    /// its budget: from now on it is answered 429 until the bucket refills.
    pub fn charge(&self, principal: &Principal) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("refusal limiter poisoned");
        let key = key(principal);
        if !buckets.contains_key(&key) && buckets.len() >= MAX_TRACKED {
            let burst = f64::from(self.limits.burst);
            buckets.retain(|_, bucket| self.refilled(bucket, now) < burst);
            if buckets.len() >= MAX_TRACKED {
                buckets.clear();
            }
        }
        let full = Bucket {
            tokens: f64::from(self.limits.burst),
            at: now,
        };
        let bucket = buckets.entry(key).or_insert(full);
        let before = self.refilled(bucket, now);
        let after = (before - 1.0).max(0.0);
        *bucket = Bucket {
            tokens: after,
            at: now,
        };
        before >= 1.0 && after < 1.0
    }

    fn refilled(&self, bucket: &Bucket, now: Instant) -> f64 {
        let burst = f64::from(self.limits.burst);
        if self.limits.refill_every.is_zero() {
            return burst;
        }
        let gained = now.saturating_duration_since(bucket.at).as_secs_f64()
            / self.limits.refill_every.as_secs_f64();
        (bucket.tokens + gained).min(burst)
    }

    fn limited(&self, tokens: f64) -> Limited {
        let wait = (1.0 - tokens) * self.limits.refill_every.as_secs_f64();
        Limited {
            retry_after_secs: (wait.ceil() as u64).max(1),
        }
    }
}

impl Default for RefusalLimiter {
    fn default() -> Self {
        RefusalLimiter::new(RefusalLimits::default())
    }
}

/// Whether `error` refuses the caller's request (and so counts against its budget), as
/// opposed to a conflict with another writer or a failure on our side.
pub fn is_refusal(error: &FhirError) -> bool {
    matches!(
        error,
        FhirError::Forbidden(_)
            | FhirError::ConsentDenied
            | FhirError::NotFound(_)
            | FhirError::BadRequest(_)
            | FhirError::Invalid { .. }
            | FhirError::MethodNotAllowed(_)
            | FhirError::NotAcceptable(_)
            | FhirError::PayloadTooLarge(_)
            | FhirError::Unauthorized(_)
    )
}

/// One bucket per user of one issuer.
fn key(principal: &Principal) -> String {
    format!("{}\n{}", principal.claims.iss, principal.claims.sub)
}

#[cfg(test)]
mod tests {
    use super::*;
    use healthcloud_platform::auth::{Claims, Role};

    fn principal(sub: &str) -> Principal {
        Principal {
            claims: Claims {
                iss: "i".into(),
                sub: sub.into(),
                exp: 0,
                iat: 0,
                role: Role::Citizen,
                scope: String::new(),
                patient: Some("p".into()),
                region: None,
                fhir_user: None,
                org: None,
                practitioner: None,
                aud: Vec::new(),
                client_id: None,
                encounter: None,
                jti: None,
            },
            scopes: Vec::new(),
        }
    }

    #[test]
    fn a_burst_of_refusals_then_429_for_that_principal_only() {
        let limiter = RefusalLimiter::new(RefusalLimits {
            burst: 3,
            refill_every: Duration::from_secs(3600),
        });
        let prober = principal("prober");
        for _ in 0..2 {
            assert!(!limiter.charge(&prober));
            assert_eq!(limiter.check(&prober), Ok(()));
        }
        assert!(limiter.charge(&prober), "the third refusal empties it");
        let limited = limiter.check(&prober).unwrap_err();
        assert!(limited.retry_after_secs >= 3599, "{limited:?}");
        assert!(!limiter.charge(&prober), "reported once");
        assert_eq!(limiter.check(&principal("someone-else")), Ok(()));
    }

    #[test]
    fn the_budget_refills() {
        let limiter = RefusalLimiter::new(RefusalLimits {
            burst: 1,
            refill_every: Duration::ZERO,
        });
        let prober = principal("prober");
        limiter.charge(&prober);
        assert_eq!(limiter.check(&prober), Ok(()));
    }
}
