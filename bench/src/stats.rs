//! Latency summaries.

use std::time::Duration;

/// Percentiles of a set of latency samples.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    /// Samples summarized.
    pub samples: usize,
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest sample.
    pub max: Duration,
    /// Arithmetic mean.
    pub mean: Duration,
}

impl Latency {
    /// Summarizes `samples` (nearest-rank percentiles: p99 of 1,000 samples is the 990th
    /// fastest, a sample that really occurred rather than an interpolation).
    pub fn of(samples: &[Duration]) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let rank =
            |q: f64| sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1];
        Latency {
            samples: sorted.len(),
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: sorted[sorted.len() - 1],
            mean: sorted.iter().sum::<Duration>() / sorted.len() as u32,
        }
    }
}

/// Milliseconds with two decimals, e.g. `1.27 ms`.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Seconds with two decimals, e.g. `12.40 s`.
pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// `count / elapsed`, rounded, with thousands separators, e.g. `21,345`.
pub fn rate(count: usize, elapsed: Duration) -> String {
    thousands(per_second(count, elapsed).round() as u64)
}

/// `count / elapsed` in events per second.
pub fn per_second(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
}

/// `n` with `,` between groups of three digits.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `part` as a percentage of `whole`.
pub fn share(part: Duration, whole: Duration) -> String {
    format!(
        "{:.0} %",
        100.0 * part.as_secs_f64() / whole.as_secs_f64().max(f64::MIN_POSITIVE)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<_> = (1..=1000).map(Duration::from_micros).collect();
        let l = Latency::of(&samples);
        assert_eq!(l.p50, Duration::from_micros(500));
        assert_eq!(l.p90, Duration::from_micros(900));
        assert_eq!(l.p99, Duration::from_micros(990));
        assert_eq!(l.max, Duration::from_micros(1000));
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
