//! `healthcloud:platform/log`, and the guest's stdout/stderr: lines go to the host log
//! attributed to app, version and region, within a per-request line budget, and only for an
//! app that holds the `log` capability (without it, stdout and stderr are dropped).

mod host;
mod host_v0_1;
mod output;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use healthcloud_integration::policy::AppIdentity;
use healthcloud_package::manifest::Capability;
use wasmtime::component::Linker;

pub use output::GuestOutput;

use super::{Grant, Host, HostCapability, ImportRule, InstallContext, Launch, StateOf};
use crate::bindings::{log, v0_1};
use crate::install::InstallError;

/// The log capability (and the guest's stdout and stderr), within a line budget per request.
#[derive(Debug)]
pub struct Log {
    /// [`Limits::log_lines`](crate::Limits::log_lines).
    lines: u32,
}

/// What the log capability keeps of an install.
#[derive(Debug, Clone, Copy)]
pub struct LogInstall {
    /// Whether the app's manifest requests `log`.
    requested: bool,
}

impl HostCapability for Log {
    /// Importing `log` needs the `log` capability.
    const IMPORTS: &'static [ImportRule] = &[ImportRule {
        interface: "healthcloud:platform/log",
        needs: "the log capability",
        allowed: |requested| requested.contains(&Capability::Log),
    }];

    type InstallState = LogInstall;
    type InstanceState = LogCtx;

    fn new(host: &Host<'_>) -> Self {
        Log {
            lines: host.limits.log_lines,
        }
    }

    fn link<T: Send + 'static>(
        linker: &mut Linker<T>,
        state: fn(&mut T) -> &mut LogCtx,
    ) -> wasmtime::Result<()> {
        log::add_to_linker::<_, StateOf<Self>>(linker, state)?;
        v0_1::log::add_to_linker::<_, StateOf<Self>>(linker, state)
    }

    fn configure(&self, install: &InstallContext<'_>) -> Result<LogInstall, InstallError> {
        Ok(LogInstall {
            requested: install.manifest.capabilities().contains(&Capability::Log),
        })
    }

    fn instance(&self, install: &LogInstall, launch: &Launch<'_>) -> LogCtx {
        LogCtx {
            app: launch.app.clone(),
            grant: launch.grant.clone(),
            requested: install.requested,
            budget: LineBudget::new(self.lines),
        }
    }

    /// The guest's stdout and stderr hold the instance's line budget: it is reset in place.
    fn renew(&self, state: &mut LogCtx, fresh: LogCtx) {
        let budget = state.budget.clone();
        budget.reset(self.lines);
        *state = LogCtx { budget, ..fresh };
    }
}

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

    use crate::bindings::log::{Host as _, Level};
    use crate::capability::testing::TestEnvironment;

    fn write(ctx: &mut LogCtx, message: &str) {
        let mut host = ctx;
        host.write(Level::Info, message.into(), Vec::new());
    }

    #[tokio::test]
    async fn a_request_writes_at_most_its_line_budget() {
        let env = TestEnvironment::new()
            .await
            .requesting(&["log"])
            .limits(|limits| limits.log_lines = 2);
        let mut ctx = env.instance::<Log>().unwrap();
        for line in ["one", "two", "three", "four"] {
            write(&mut ctx, line);
        }
        assert_eq!(ctx.budget.dropped(), 2);
    }

    #[tokio::test]
    async fn without_the_grant_nothing_is_written_and_no_budget_is_spent() {
        let env = TestEnvironment::new()
            .await
            .requesting(&["log"])
            .granting(&[])
            .limits(|limits| limits.log_lines = 1);
        let mut ctx = env.instance::<Log>().unwrap();
        assert!(!ctx.allowed());
        write(&mut ctx, "one");
        write(&mut ctx, "two");
        assert_eq!(ctx.budget.dropped(), 0);
        assert!(ctx.budget.take(), "the budget was spent by refused writes");
    }

    #[tokio::test]
    async fn a_reused_instance_gets_a_new_budget_in_the_object_its_output_holds() {
        let env = TestEnvironment::new()
            .await
            .requesting(&["log"])
            .limits(|limits| limits.log_lines = 1);
        let log = env.capability::<Log>();
        let mut ctx = env.instance::<Log>().unwrap();
        let stdout = ctx.budget.clone();
        write(&mut ctx, "one");
        write(&mut ctx, "two");
        assert_eq!(stdout.dropped(), 1);
        log.renew(&mut ctx, env.instance::<Log>().unwrap());
        assert_eq!(stdout.dropped(), 0, "the output's budget was not reset");
        assert!(stdout.take());
        assert!(!ctx.budget.take(), "the renewed context has another budget");
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
