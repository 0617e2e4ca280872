//! `healthcloud:platform/log@0.1.0`, for apps built against that version: the current host
//! call (the same levels).

use super::LogCtx;
use crate::bindings::log as current;
use crate::bindings::v0_1::log::{self, Level};

impl log::Host for &mut LogCtx {
    fn write(&mut self, level: Level, message: String, fields: Vec<(String, String)>) {
        let level = match level {
            Level::Trace => current::Level::Trace,
            Level::Debug => current::Level::Debug,
            Level::Info => current::Level::Info,
            Level::Warn => current::Level::Warn,
            Level::Error => current::Level::Error,
        };
        current::Host::write(self, level, message, fields);
    }
}
