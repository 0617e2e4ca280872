//! Containment: what one request of one app may consume. Every limit has a default and can
//! be configured; exceeding one fails only that request, with a status and body naming it.

use std::time::Duration;

use serde::Deserialize;

/// Per-request and per-app limits. In a configuration file, durations are milliseconds
/// (`deadline_ms = 2000`) and every field is optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Wall-clock time a request may run guest code, enforced by epoch interruption
    /// (default 2 s). Exceeded: 504.
    #[serde(rename = "deadline_ms", with = "millis")]
    pub deadline: Duration,
    /// Linear memory per instance, all its memories together (default 64 MiB). Exceeded: 500.
    pub memory_bytes: usize,
    /// Response body size (default 8 MiB). Exceeded: 502.
    pub response_bytes: usize,
    /// Request body size (default 1 MiB). Exceeded: 413.
    pub request_bytes: usize,
    /// FHIR resources returned by one search call (default 100).
    pub search_results: u32,
    /// Handles (WASI resources) one instance may hold at once (default 1,000).
    pub table_entries: usize,
    /// Bytes of keys plus values in one install's kv store (default 1 MiB).
    pub kv_quota_bytes: u64,
    /// Instances of one install running at once (default 16); more requests get 503 with
    /// `Retry-After`.
    pub concurrent_instances: usize,
    /// Time one host call (a FHIR search, a kv write, an outgoing request) may take
    /// (default 5 s). A call past it is cancelled, with its database work (an uncommitted
    /// write rolls back), and answers `unavailable`.
    #[serde(rename = "host_call_timeout_ms", with = "millis")]
    pub host_call_timeout: Duration,
    /// Log lines (log interface plus stdout/stderr) one request may write (default 200);
    /// the rest are counted and dropped. Apps without the `log` capability write none.
    pub log_lines: u32,
    /// Instance slots of the pooling allocator across all apps (default 1,000).
    pub pool_instances: u32,
    /// Data host calls (FHIR) one request may make (default 200); further calls fail with
    /// `unavailable`, unaudited, since they reach no data.
    pub host_calls: u32,
    /// Outgoing HTTP requests one instance may have open at once (default 8).
    pub outbound_requests: usize,
    /// Reuse an instance for the next request with the same launch context (same user,
    /// role, patient, scopes and region, on the same installed version), never across
    /// contexts, and never after the region's grant or the patient's consents changed. Off
    /// by default: a fresh instance per request, so nothing of one request can survive into
    /// the next.
    pub reuse_instances: bool,
    /// How long a reused instance (and the patient data in its memory) may sit idle before
    /// it is dropped (default 30 s).
    #[serde(rename = "reuse_idle_ms", with = "millis")]
    pub reuse_idle: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: Duration::from_secs(2),
            memory_bytes: 64 << 20,
            response_bytes: 8 << 20,
            request_bytes: 1 << 20,
            search_results: 100,
            table_entries: 1_000,
            kv_quota_bytes: 1 << 20,
            concurrent_instances: 16,
            host_call_timeout: Duration::from_secs(5),
            log_lines: 200,
            pool_instances: 1_000,
            host_calls: 200,
            outbound_requests: 8,
            reuse_instances: false,
            reuse_idle: Duration::from_secs(30),
        }
    }
}

/// How often the engine's epoch advances: how often a running guest yields and its deadline
/// is checked.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }
}
