use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use super::LogCtx;

/// Longest line kept from stdout/stderr before it is cut and flushed.
const MAX_LINE_BYTES: usize = 2_000;

/// A guest's stdout or stderr: complete lines go to the host log, attributed and within
/// the request's line budget, only while the app holds the `log` capability (requested in
/// its manifest and granted by the region, checked at every write as a `log` host call
/// checks it). Without it every byte is dropped: stdout is no side door into the host log.
#[derive(Debug, Clone)]
pub struct GuestOutput {
    stream: &'static str,
    /// The app, its live grant and the line budget; all three stay the same objects when a
    /// reused instance is renewed (the budget is reset in place).
    log: LogCtx,
    pending: Arc<Mutex<Vec<u8>>>,
}

impl GuestOutput {
    /// Output named `stream` ("stdout" or "stderr"), written as `log` writes.
    pub fn new(stream: &'static str, log: &LogCtx) -> Self {
        GuestOutput {
            stream,
            log: log.clone(),
            pending: Default::default(),
        }
    }

    fn write_bytes(&self, bytes: &[u8]) {
        if !self.log.allowed() {
            return;
        }
        let mut pending = self.pending.lock().expect("output lock poisoned");
        pending.extend_from_slice(bytes);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            self.emit(&line[..line.len() - 1]);
        }
        if pending.len() > MAX_LINE_BYTES {
            let line: Vec<u8> = std::mem::take(&mut *pending);
            self.emit(&line[..MAX_LINE_BYTES]);
        }
    }

    fn emit(&self, line: &[u8]) {
        if !self.log.allowed() || !self.log.budget.take() {
            return;
        }
        let line = super::clean(&String::from_utf8_lossy(line), MAX_LINE_BYTES);
        let app = &self.log.app;
        let (app, version, region) = (&app.id, &app.version, &app.region);
        tracing::info!(target: "app", app, version, region, stream = self.stream, "{line}");
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
