//! Structured log lines to the host's log, attributed to the app, its version and region.
//! Needs the `log` capability; without it the host drops the lines.
//!
//! Never log patient data (names, identifiers, values): operators read the host log,
//! clinicians do not, and it is outside the patient's consent and audit trail. Lines are
//! rate-limited per request.
//!
//! ```no_run
//! healthcloud_sdk::log::warn("FHIR search unavailable", &[("reason", "timeout")]);
//! ```

pub use crate::bindings::healthcloud::platform::log::Level;

/// Writes one line at `level` with key-value `fields`.
pub fn write(level: Level, message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    crate::bindings::healthcloud::platform::log::write(level, message, &fields);
}

/// Writes a `trace` line: fine-grained detail for tracing a request.
pub fn trace(message: &str, fields: &[(&str, &str)]) {
    write(Level::Trace, message, fields);
}

/// Writes a `debug` line.
pub fn debug(message: &str, fields: &[(&str, &str)]) {
    write(Level::Debug, message, fields);
}

/// Writes an `info` line: normal operation.
pub fn info(message: &str, fields: &[(&str, &str)]) {
    write(Level::Info, message, fields);
}

/// Writes a `warn` line: something unexpected that the app handled.
pub fn warn(message: &str, fields: &[(&str, &str)]) {
    write(Level::Warn, message, fields);
}

/// Writes an `error` line: something failed.
pub fn error(message: &str, fields: &[(&str, &str)]) {
    write(Level::Error, message, fields);
}
