//! What the numbers were measured on. Read from /proc (Linux); anything unreadable is
//! reported as "unknown" rather than failing the benchmark.

use std::path::Path;

/// The machine and toolchain a run was measured on.
#[derive(Debug, Clone)]
pub struct Machine {
    /// Logical CPUs available to this process (what `nproc` prints).
    pub nproc: usize,
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// `MemTotal` from /proc/meminfo.
    pub memory: String,
    /// /proc/loadavg when the run started: the machine is shared, so this says how noisy it was.
    pub load_average: String,
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
            load_average: read("/proc/loadavg")
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
            rustc: env!("BENCH_RUSTC_VERSION").to_owned(),
            filesystem: filesystem(data_dir).unwrap_or_else(|| "unknown".into()),
        }
    }
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
