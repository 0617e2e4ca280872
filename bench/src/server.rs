//! The server processes a benchmark starts on loopback: each its own process, so its CPU time
//! can be read from /proc while the load generator runs in the benchmark's process.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How a server says it is listening.
#[derive(Debug, Clone, Copy)]
pub enum Ready {
    /// This binary in server mode: `listening on ADDR` on stdout.
    Stdout,
    /// `wasmtime serve`: `Serving HTTP on http://ADDR/` on stderr.
    WasmtimeStderr,
    /// The Medplum upstream of `tests/upstream`: `listening http://ADDR/fhir/R4` on stdout.
    Medplum,
}

/// Reads a starting server's output up to the line that says where it listens; the lines
/// before it are shown.
async fn listening_address(
    lines: &mut tokio::io::Lines<BufReader<Box<dyn tokio::io::AsyncRead + Unpin + Send>>>,
    ready: Ready,
    name: &str,
) -> anyhow::Result<SocketAddr> {
    while let Some(line) = lines.next_line().await? {
        let addr = match ready {
            Ready::Stdout => line.strip_prefix("listening on "),
            Ready::WasmtimeStderr => line
                .strip_prefix("Serving HTTP on http://")
                .map(|rest| rest.trim_end_matches('/')),
            Ready::Medplum => line
                .strip_prefix("listening http://")
                .and_then(|rest| rest.split('/').next()),
        };
        match addr {
            Some(addr) => return Ok(addr.parse()?),
            None => eprintln!("[{name}] {line}"),
        }
    }
    anyhow::bail!("{name} exited before listening")
}

/// A server process, killed when dropped.
pub struct Server {
    /// What the benchmark calls it, in messages.
    pub name: &'static str,
    child: Child,
    pid: u32,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Server {
    /// Starts `program args…` and waits until it listens.
    pub async fn start(
        name: &'static str,
        program: &Path,
        args: &[String],
        ready: Ready,
    ) -> anyhow::Result<Server> {
        let mut command = Command::new(program);
        command
            .args(args)
            .kill_on_drop(true)
            .stdin(Stdio::null())
            // With these set, wasmtime captures a backtrace for an error it makes and drops
            // whenever a store is dropped, i.e. on every request: the numbers would depend on
            // the caller's shell.
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE");
        match ready {
            Ready::Stdout | Ready::Medplum => {
                command.stdout(Stdio::piped()).stderr(Stdio::inherit())
            }
            Ready::WasmtimeStderr => command.stdout(Stdio::inherit()).stderr(Stdio::piped()),
        };
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let pid = child.id().context("the server exited at once")?;
        let output: Box<dyn tokio::io::AsyncRead + Unpin + Send> = match ready {
            Ready::Stdout | Ready::Medplum => Box::new(child.stdout.take().context("stdout")?),
            Ready::WasmtimeStderr => Box::new(child.stderr.take().context("stderr")?),
        };
        let mut lines = BufReader::new(output).lines();
        // Compiling the components without a cache takes a while on a busy 2-core machine.
        let addr = tokio::time::timeout(
            Duration::from_secs(300),
            listening_address(&mut lines, ready, name),
        )
        .await
        .with_context(|| format!("{name} did not start listening within 5 minutes"))??;
        // Keep the pipe drained (and its lines visible) for the server's lifetime.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[{name}] {line}");
            }
        });
        Ok(Server {
            name,
            child,
            pid,
            addr,
        })
    }

    /// The process's CPU time so far, all threads, user plus system.
    pub fn cpu(&self) -> anyhow::Result<Duration> {
        // /proc reports CPU times in USER_HZ ticks, 100 per second on every Linux ABI.
        const TICKS_PER_SECOND: u64 = 100;
        let path = format!("/proc/{}/stat", self.pid);
        let stat = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {path}: did {} exit?", self.name))?;
        // utime and stime are fields 14 and 15, i.e. 12 and 13 after the parenthesized name.
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let mut fields = after_name.split_whitespace().skip(11);
        let mut next = || -> anyhow::Result<u64> {
            Ok(fields.next().context("short /proc stat line")?.parse()?)
        };
        let ticks = next()? + next()?;
        Ok(Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND))
    }

    /// Kills the process and waits for it.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}
