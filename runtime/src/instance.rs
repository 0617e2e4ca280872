//! The data of one instance's `Store`: WASI (with nothing to leak), wasi:http, and each
//! capability's per-instance context. Built fresh for every request.

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::capability::log::{GuestOutput, LineBudget};
use crate::capability::{Capabilities, HasCapabilities, InstanceStates};

/// Everything a request's instance may touch.
pub(crate) struct InstanceState {
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub table: ResourceTable,
    /// Every capability's per-instance context.
    pub capabilities: InstanceStates,
    pub memory: MemoryLimit,
}

impl InstanceState {
    pub fn new(capabilities: InstanceStates, memory_bytes: usize, table_entries: usize) -> Self {
        let output = |stream| GuestOutput::new(stream, &capabilities.log);
        // No preopened directories, no environment, no arguments, no network: the builder's
        // defaults, spelled out by what is not called.
        let wasi = WasiCtx::builder()
            .stdout(output("stdout"))
            .stderr(output("stderr"))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(table_entries);
        let mut http = WasiHttpCtx::new();
        // Header sets live in host memory, outside the guest's memory cap: keep each small.
        http.set_field_size_limit(FIELD_BYTES);
        InstanceState {
            wasi,
            http,
            table,
            capabilities,
            memory: MemoryLimit {
                limit: memory_bytes,
                total: 0,
                exceeded: false,
            },
        }
    }

    /// Prepares a reused instance for the next request of the same launch context: fresh
    /// capability contexts (the new token, the grant now, a new line budget), the memory flag
    /// cleared. The guest's own memory is what reuse keeps, by design.
    pub fn renew(&mut self, all: &Capabilities, fresh: InstanceStates) {
        all.renew(&mut self.capabilities, fresh);
        self.memory.exceeded = false;
    }

    /// The request's line budget (to report dropped lines once the request is done).
    pub fn line_budget(&self) -> &LineBudget {
        &self.capabilities.log.budget
    }
}

impl HasCapabilities for InstanceState {
    fn capabilities(&mut self) -> &mut InstanceStates {
        &mut self.capabilities
    }
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.capabilities.outbound,
        }
    }
}

/// Bytes one header set (`fields`) may take in host memory. With the handle limit this
/// bounds what a guest can make the host hold (1,000 × 16 KiB = 16 MiB by default).
const FIELD_BYTES: usize = 16 << 10;

/// Caps linear memory and remembers that the cap was hit, so the failed request can say why
/// (the guest usually aborts on a failed allocation, which on its own reads as a crash).
#[derive(Debug)]
pub(crate) struct MemoryLimit {
    /// The cap, for all of the instance's memories together.
    pub limit: usize,
    /// Bytes of all its memories now.
    pub total: usize,
    pub exceeded: bool,
}

impl ResourceLimiter for MemoryLimit {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.total - current.min(self.total) + desired;
        let allowed = total <= self.limit;
        if allowed {
            self.total = total;
        } else {
            self.exceeded = true;
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}
