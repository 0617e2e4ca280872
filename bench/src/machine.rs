//! What the numbers were measured on. Read from /proc (Linux); anything unreadable is
//! reported as "unknown" rather than failing the benchmark.

use std::path::Path;
use std::time::Duration;

/// The machine and toolchain a run was measured on.
#[derive(Debug, Clone)]
pub struct Machine {
    /// Logical CPUs available to this process (what `nproc` prints).
    pub nproc: usize,
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// `MemTotal` from /proc/meminfo.
    pub memory: String,
    /// /proc/loadavg (1/5/15 min) when the run started and when it ended: the machine is
    /// shared, so these say how noisy the run was.
    pub load_average: (String, String),
    /// The compiler that built this binary.
    pub rustc: String,
    /// The filesystem holding the database: fsync cost depends on it (tmpfs would hide it).
    pub filesystem: String,
}

impl Machine {
    /// Describes this machine, with the database kept under `data_dir`.
    pub fn describe(data_dir: &Path) -> Machine {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let meminfo = read("/proc/meminfo");
        Machine {
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model: field(&cpuinfo, "model name").unwrap_or_else(|| "unknown".into()),
            memory: field(&meminfo, "MemTotal")
                .and_then(|v| v.trim_end_matches("kB").trim().parse::<f64>().ok())
                .map_or_else(
                    || "unknown".into(),
                    |kib| format!("{:.1} GiB", kib / (1024.0 * 1024.0)),
                ),
            load_average: (load_average(), String::new()),
            rustc: env!("BENCH_RUSTC_VERSION").to_owned(),
            filesystem: filesystem(data_dir).unwrap_or_else(|| "unknown".into()),
        }
    }
}

/// The 1, 5 and 15 minute load averages, e.g. `0.88 1.69 1.62`.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The value of the first `key : value` line of a /proc file.
fn field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_owned())
    })
}

/// `TYPE (device on MOUNTPOINT)` of the mount holding `path`: the longest mount point prefix.
fn filesystem(path: &Path) -> Option<String> {
    let path = std::fs::canonicalize(path).ok()?;
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let (device, mount_point, fs_type) = (parts.next()?, parts.next()?, parts.next()?);
            path.starts_with(mount_point).then(|| {
                (
                    mount_point.len(),
                    format!("{fs_type} ({device} on {mount_point})"),
                )
            })
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, description)| description)
}

/// Peak resident memory of this process so far (`VmHWM`), e.g. `1.9 GiB`.
pub fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| field(&status, "VmHWM"))
        .and_then(|v| v.trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or_else(
            || "unknown".into(),
            |kib| format!("{:.2} GiB", kib / (1024.0 * 1024.0)),
        )
}

/// CPU time and storage traffic of this process (all threads, SQLite's included), from
/// /proc/self/stat and /proc/self/io; zero where unreadable.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// CPU time in user mode.
    pub user: Duration,
    /// CPU time in the kernel (syscalls: file reads and writes, fsync).
    pub system: Duration,
    /// Bytes the process caused to be read from storage.
    pub read_bytes: u64,
    /// Bytes the process caused to be written to storage.
    pub write_bytes: u64,
}

impl Usage {
    /// The totals so far.
    pub fn now() -> Usage {
        // /proc reports CPU times in USER_HZ ticks, 100 per second on every Linux ABI.
        const TICKS_PER_SECOND: u64 = 100;
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // Fields after the parenthesized command name (which may contain spaces): utime and
        // stime are fields 14 and 15 of the line, i.e. 11 and 12 after the name.
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let ticks: Vec<u64> = after_name
            .split_whitespace()
            .skip(11)
            .take(2)
            .map(|t| t.parse().unwrap_or(0))
            .collect();
        let tick = |i: usize| {
            Duration::from_millis(ticks.get(i).copied().unwrap_or(0) * 1000 / TICKS_PER_SECOND)
        };
        let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
        let bytes = |key| field(&io, key).and_then(|v| v.parse().ok()).unwrap_or(0);
        Usage {
            user: tick(0),
            system: tick(1),
            read_bytes: bytes("read_bytes"),
            write_bytes: bytes("write_bytes"),
        }
    }

    /// What was used between `self` and now.
    pub fn since(self) -> Usage {
        let now = Usage::now();
        Usage {
            user: now.user.saturating_sub(self.user),
            system: now.system.saturating_sub(self.system),
            read_bytes: now.read_bytes.saturating_sub(self.read_bytes),
            write_bytes: now.write_bytes.saturating_sub(self.write_bytes),
        }
    }
}
