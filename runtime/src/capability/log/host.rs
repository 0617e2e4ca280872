use super::{LogCtx, clean};
use crate::bindings::log::{self, Level};

/// Longest message, and longest set of fields, kept; the rest is cut (a log line is not a
/// data channel).
const MAX_LINE_CHARS: usize = 2_000;

impl log::Host for &mut LogCtx {
    fn write(&mut self, level: Level, message: String, fields: Vec<(String, String)>) {
        if !self.allowed() || !self.budget.take() {
            return;
        }
        let message = clean(&message, MAX_LINE_CHARS);
        let fields = fields
            .iter()
            .take(20)
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        let fields = clean(&fields, MAX_LINE_CHARS);
        let (app, version, region) = (&self.app.id, &self.app.version, &self.app.region);
        match level {
            Level::Trace => {
                tracing::trace!(target: "app", app, version, region, fields, "{message}")
            }
            Level::Debug => {
                tracing::debug!(target: "app", app, version, region, fields, "{message}")
            }
            Level::Info => tracing::info!(target: "app", app, version, region, fields, "{message}"),
            Level::Warn => tracing::warn!(target: "app", app, version, region, fields, "{message}"),
            Level::Error => {
                tracing::error!(target: "app", app, version, region, fields, "{message}")
            }
        }
    }
}
