//! Latency samples and process counters.

use std::time::Duration;

/// p50 and p99 of `samples` (sorted in place), in microseconds.
pub fn percentiles(samples: &mut [Duration]) -> (u128, u128) {
    if samples.is_empty() {
        return (0, 0);
    }
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i].as_micros()
    };
    (at(0.50), at(0.99))
}

/// This process's resident memory (KiB) and CPU time used so far (user + system), from /proc.
pub fn own_usage() -> Option<(u64, Duration)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let rss_kib = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // Clock ticks are 100 Hz on Linux x86_64 and aarch64 (USER_HZ).
    let cpu = Duration::from_millis((utime + stime) * 10);
    Some((rss_kib, cpu))
}
