//! The bp-monitor app's readings and pages, as plain Rust with no entry point: the app's
//! component (`../bp-monitor`) serves them, and the benchmarks' native handler renders the
//! clinician page with exactly this code, so the two pages can be compared byte for byte.
#![deny(missing_docs)]

pub mod reading;
pub mod view;
