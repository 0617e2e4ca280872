//! `healthcloud:platform/log`, and the guest's stdout/stderr: lines go to the host log
//! attributed to app, version and region, within a per-request line budget, and only for an
//! app that holds the `log` capability (without it, stdout and stderr are dropped).

mod host;
mod output;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use healthcloud_integration::policy::AppIdentity;
use healthcloud_package::manifest::Capability;
use wasmtime::component::{HasData, Linker};

pub use output::GuestOutput;

use super::{Grant, ImportRule};
use crate::bindings::log;
use crate::instance::InstanceState;

/// Importing `log` needs the `log` capability.
pub const IMPORT_RULE: ImportRule = ImportRule {
    interface: "healthcloud:platform/log",
    needs: "the log capability",
    allowed: |requested| requested.contains(&Capability::Log),
};

/// Lines one request may still write; the rest are counted and reported once.
#[derive(Debug, Clone)]
pub struct LineBudget(Arc<(AtomicU32, AtomicU32)>);

impl LineBudget {
    /// A budget of `lines`.
    pub fn new(lines: u32) -> Self {
        LineBudget(Arc::new((AtomicU32::new(lines), AtomicU32::new(0))))
    }

    /// Takes one line from the budget; false (and counted) once it is spent.
    pub fn take(&self) -> bool {
        let (remaining, dropped) = &*self.0;
        let taken = remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        if !taken {
            dropped.fetch_add(1, Ordering::Relaxed);
        }
        taken
    }

    /// Starts a new request's budget of `lines` (for a reused instance).
    pub fn reset(&self, lines: u32) {
        self.0.0.store(lines, Ordering::Relaxed);
        self.0.1.store(0, Ordering::Relaxed);
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u32 {
        self.0.1.load(Ordering::Relaxed)
    }
}

/// What a `log` host call needs.
#[derive(Debug, Clone)]
pub struct LogCtx {
    /// Who writes: app, version and region.
    pub app: Arc<AppIdentity>,
    /// The install's live grant.
    pub grant: Grant,
    /// Whether the app's manifest requests `log`.
    pub requested: bool,
    /// Shared with stdout/stderr.
    pub budget: LineBudget,
}

impl LogCtx {
    /// Whether the app may write to the host log now: `log` requested by its manifest and
    /// granted by the region at this moment.
    pub fn allowed(&self) -> bool {
        self.requested && self.grant.allows(&Capability::Log)
    }
}

/// Guest text fit for the host log: at most `max_chars` characters, control characters
/// (newlines, terminal escapes) shown as `\u{..}` so a guest cannot forge log lines.
pub(crate) fn clean(text: &str, max_chars: usize) -> String {
    let mut cleaned = String::with_capacity(text.len().min(max_chars));
    for c in text.chars().take(max_chars) {
        if c.is_control() {
            cleaned.extend(c.escape_unicode());
        } else {
            cleaned.push(c);
        }
    }
    cleaned
}

struct HasLog;

impl HasData for HasLog {
    type Data<'a> = &'a mut LogCtx;
}

/// Links `log` into the engine's linker.
pub(crate) fn add_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
    log::add_to_linker::<_, HasLog>(linker, |state| &mut state.log)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_text_cannot_forge_log_lines() {
        assert_eq!(
            clean("ok\n2026 INFO forged\x1b[0m", 100),
            "ok\\u{a}2026 INFO forged\\u{1b}[0m"
        );
        assert_eq!(clean("abcdef", 3), "abc");
    }

    #[test]
    fn a_budget_runs_out_and_counts_what_it_drops() {
        let budget = LineBudget::new(2);
        assert!(budget.take());
        assert!(budget.take());
        assert!(!budget.take());
        assert!(!budget.take());
        assert_eq!(budget.dropped(), 2);
    }
}
