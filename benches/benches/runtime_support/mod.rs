//! Helpers shared by the runtime benchmarks (included with `#[path]`; not a bench target).
#![allow(dead_code)]

use std::time::Duration;

/// Sorted latencies -> (p50, p99, max).
pub fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    (at(0.50), at(0.99), v[v.len() - 1])
}

/// Iteration count from the environment (`SWARM_BENCH_N`), else `default`.
pub fn iterations(default: usize) -> usize {
    std::env::var("SWARM_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}
