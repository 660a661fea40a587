//! Standalone copy of the `store_scale` regions of `benches/benches/core_store.rs` (fill: create
//! batches of 200 typical tasks applied to an empty store; restore: decode a snapshot and rebuild
//! every index), measured in thread CPU time so that the per-task figures can be compared on a
//! shared machine (`PERF_REGION=fill` or `restore` with `PERF_CTL` profiles one region). It lives here because swarm-sched's dev-dependencies already carry the clock
//! and the allocator it needs.
//!
//! Run: `cargo run --release -p swarm-sched --features testing --example store_profile -- [ROUNDS] [SIZES...] [shuffled]`
//! (sizes default to 10000 100000 1000000; `shuffled`: task ids in scattered order, as minted
//! at random in a live cluster, instead of increasing; `hot`: each batch is built just before
//! it is applied, outside the timed region, as a manager applies a batch it has just decoded,
//! instead of every batch built before the fill, whose tasks are then cold at 1M; `PERF_CTL=FIFO` limits `perf record
//! --control fifo:FIFO -D -1` to the fill and restore regions)
//! (`store_profile_mimalloc` measures the same with mimalloc). Needs about 4 GiB for the 1M rows.

use swarm_core::testing::{id, typical_task};
use swarm_core::{Batch, Store, StoreAction, StoreSnapshot, Timestamp};

fn thread_cpu_ns() -> u128 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

fn create_batches(n: u128, shuffled: bool) -> Vec<Batch> {
    create_range(0..n, shuffled, 0)
}

/// The batches of tasks `range`, numbered from `first + 1`.
fn create_range(range: std::ops::Range<u128>, shuffled: bool, first: u64) -> Vec<Batch> {
    let svc = id(7);
    let end = range.end;
    let mut out = Vec::new();
    let mut actions = Vec::with_capacity(200);
    for k in range {
        // An odd multiplier permutes the 32-bit numbers: distinct ids, scattered order.
        let task = if shuffled {
            1 + (k * 2_654_435_761) % (1 << 32)
        } else {
            1 + k
        };
        let mut t = typical_task(task, svc, Some(id(10_000 + k % 1000)));
        if std::env::var_os("UNIQUE_SLOTS").is_some() {
            t.slot = k as u64 + 1;
        }
        actions.push(StoreAction::Create(t.into()));
        if actions.len() == 200 || k + 1 == end {
            let index = first + out.len() as u64 + 1;
            out.push(Batch {
                index,
                timestamp: Timestamp::from_secs(index),
                actions: std::mem::take(&mut actions),
            });
        }
    }
    out
}

/// Sends `cmd` to perf's control fifo (`PERF_CTL`) for a region named `region` (`fill` or
/// `restore`; `PERF_REGION` limits the profile to one of them).
fn perf_ctl_in(region: &str, cmd: &str) {
    if std::env::var("PERF_REGION").is_ok_and(|r| r != region) {
        return;
    }
    perf_ctl(cmd);
}

fn perf_ctl(cmd: &str) {
    if let Ok(path) = std::env::var("PERF_CTL") {
        let _ = std::fs::write(path, format!("{cmd}\n"));
    }
}

pub fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let mut sizes: Vec<u128> = args.iter().skip(2).filter_map(|a| a.parse().ok()).collect();
    let shuffled = args.iter().any(|a| a == "shuffled");
    let hot = args.iter().any(|a| a == "hot");
    if sizes.is_empty() {
        sizes = vec![10_000, 100_000, 1_000_000];
    }
    for round in 0..rounds {
        for &n in &sizes {
            let mut st = Store::new();
            let fill_ns = if hot {
                let mut total = 0;
                let mut k = 0;
                while k < n {
                    let end = (k + 200).min(n);
                    let batch = create_range(k..end, shuffled, st.index());
                    perf_ctl_in("fill", "enable");
                    let c0 = thread_cpu_ns();
                    for b in batch {
                        st.apply(b).expect("fixture applies");
                    }
                    total += thread_cpu_ns() - c0;
                    perf_ctl_in("fill", "disable");
                    k = end;
                }
                total
            } else {
                let batches = create_batches(n, shuffled);
                perf_ctl_in("fill", "enable");
                let c0 = thread_cpu_ns();
                for b in batches {
                    st.apply(b).expect("fixture applies");
                }
                let c1 = thread_cpu_ns();
                perf_ctl_in("fill", "disable");
                c1 - c0
            };
            let bytes = st.snapshot().encode();
            drop(st);
            let mut fresh = Store::new();
            perf_ctl_in("restore", "enable");
            let c2 = thread_cpu_ns();
            let snap = StoreSnapshot::decode(&bytes, 1 << 36).expect("decodes");
            fresh.restore(snap);
            let c3 = thread_cpu_ns();
            perf_ctl_in("restore", "disable");
            println!(
                "round {round} n={n}: fill {:.0} ns/task restore {:.0} ns/task",
                fill_ns as f64 / n as f64,
                (c3 - c2) as f64 / n as f64
            );
        }
    }
}
