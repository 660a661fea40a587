//! swarm-raft benchmarks as one documented bench binary (each scenario prints its figure):
//!
//! ```text
//! cargo bench -p swarm-benches --bench raft_cluster                 # every scenario
//! cargo bench -p swarm-benches --bench raft_cluster -- throughput1  # one scenario
//! ```
//! Scenarios: `throughput1` (one manager, WAL with fsync, batched proposals), `latency1` (p99
//! commit latency at 1 000 proposals/s), `throughput3` (3 managers, in-memory network, real WALs),
//! `failover` (stop the leader, time until a new leader commits; 20 trials, default timing),
//! `reopen` (open a log of 1 000 000 entries), `install` (install a snapshot of 100 000 tasks),
//! `concurrent64` (one manager, fsync WAL, 64 concurrent clients each committing single-action
//! 1 KiB proposals one after another: actions/s, p50/p99 commit latency, proposals and entries per
//! fsync) and `concurrent3` (the same load on the leader of 3 managers, in-memory network).

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, LogId};
use swarm_core::testing::{id, secret, typical_task};
use swarm_core::{Proposer, SharedStore, Store, StoreAction, Timestamp};
use swarm_raft::snapshot::SnapshotPayload;
use swarm_raft::state_machine::StateMachine;
use swarm_raft::testing::{fast_config, test_kdf, TestCluster};
use swarm_raft::types::{Entry, SnapshotMeta};
use swarm_raft::{Keyring, Proposal, RaftConfig, Wal, WalOptions};

fn actions(base: u128, n: usize) -> Vec<StoreAction> {
    (0..n as u128)
        .map(|k| StoreAction::Create(secret(base + k, &format!("s-{}", base + k), b"v").into()))
        .collect()
}

/// Committed actions per second with `proposers` concurrent proposers each sending `rounds`
/// batches of `batch` actions to `node`.
async fn throughput(
    c: &TestCluster,
    node: u64,
    proposers: usize,
    rounds: usize,
    batch: usize,
) -> (f64, Duration) {
    let start = Instant::now();
    let mut handles = Vec::new();
    for p in 0..proposers {
        let n = c.node(node).clone();
        handles.push(tokio::spawn(async move {
            for r in 0..rounds {
                let base = 1_000_000 + ((p * rounds + r) * batch) as u128;
                n.propose(actions(base, batch)).await.expect("commit");
            }
        }));
    }
    for h in handles {
        h.await.expect("proposer");
    }
    let took = start.elapsed();
    (
        (proposers * rounds * batch) as f64 / took.as_secs_f64(),
        took,
    )
}

async fn throughput1() {
    let c = TestCluster::new(1, RaftConfig::default()).await;
    let (rate, took) = throughput(&c, 1, 32, 40, 100).await;
    let f = c.node(1).wal().fsyncs();
    println!("throughput1: one manager, fsync WAL, 32 proposers x 40 batches x 100 actions: {rate:.0} actions/s ({took:?}, {f} fsyncs)");
    c.shutdown().await;
}

async fn throughput3() {
    let c = TestCluster::new(3, RaftConfig::default()).await;
    let leader = c.wait_leader(&c.ids(), Duration::from_secs(10)).await;
    let (rate, took) = throughput(&c, leader, 32, 40, 100).await;
    println!("throughput3: 3 managers, in-memory network, real WALs, same load on the leader: {rate:.0} actions/s ({took:?})");
    c.shutdown().await;
}

async fn latency1() {
    let c = TestCluster::new(1, RaftConfig::default()).await;
    let node = c.node(1).clone();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut handles = Vec::new();
    for k in 0..3000u128 {
        tick.tick().await;
        let n = node.clone();
        handles.push(tokio::spawn(async move {
            let t = Instant::now();
            n.propose(actions(5_000_000 + k, 1)).await.expect("commit");
            t.elapsed()
        }));
    }
    let mut lat = Vec::new();
    for h in handles {
        lat.push(h.await.expect("proposal"));
    }
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    println!(
        "latency1: one manager, 1 000 proposals/s for 3 s: p50 {:?}, p99 {:?}, max {:?}",
        p(0.5),
        p(0.99),
        p(1.0)
    );
    c.shutdown().await;
}

/// 64 concurrent clients, each committing `rounds` single-action proposals of 1 KiB (a secret
/// with 1 KiB of data) one after another on `node`; prints actions/s, latency and fsync packing.
async fn concurrent(c: &TestCluster, node: u64, label: &str) {
    const CLIENTS: usize = 64;
    let rounds = 150usize;
    let n = c.node(node).clone();
    let before = n.wal_stats();
    let start = Instant::now();
    let mut handles = Vec::new();
    for client in 0..CLIENTS {
        let n = n.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(rounds);
            for r in 0..rounds {
                let k = 20_000_000 + (client * rounds + r) as u128;
                let one = vec![StoreAction::Create(
                    secret(k, &format!("c-{k}"), &[0x5a; 1024]).into(),
                )];
                let t = Instant::now();
                n.propose(one).await.expect("commit");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for h in handles {
        lat.extend(h.await.expect("client"));
    }
    let took = start.elapsed();
    let after = n.wal_stats();
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    let fsyncs = (after.fsyncs - before.fsyncs).max(1);
    let entries = after.entries - before.entries;
    println!(
        "{label}: {:.0} actions/s ({} proposals in {took:?}), p50 {:?}, p99 {:?}, {fsyncs} fsyncs: {:.1} proposals and {:.2} log entries per fsync",
        lat.len() as f64 / took.as_secs_f64(),
        lat.len(),
        p(0.5),
        p(0.99),
        lat.len() as f64 / fsyncs as f64,
        entries as f64 / fsyncs as f64,
    );
}

/// Default settings; `SWARM_BENCH_PIPELINE=<n>` overrides `proposal_pipeline` (for tuning).
fn concurrent_config() -> RaftConfig {
    let mut cfg = RaftConfig::default();
    if let Some(n) = std::env::var("SWARM_BENCH_PIPELINE")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        cfg.proposal_pipeline = n;
    }
    cfg
}

async fn concurrent64() {
    let c = TestCluster::new(1, concurrent_config()).await;
    concurrent(
        &c,
        1,
        "concurrent64: one manager, fsync WAL, 64 clients x 150 single-action 1 KiB proposals",
    )
    .await;
    c.shutdown().await;
}

async fn concurrent3() {
    let c = TestCluster::new(3, concurrent_config()).await;
    let leader = c.wait_leader(&c.ids(), Duration::from_secs(10)).await;
    concurrent(
        &c,
        leader,
        "concurrent3: 3 managers (in-memory network, real WALs), same load on the leader",
    )
    .await;
    c.shutdown().await;
}

async fn failover() {
    let mut times = Vec::new();
    for trial in 0..20u128 {
        let mut c = TestCluster::new(3, RaftConfig::default()).await;
        let leader = c.wait_leader(&c.ids(), Duration::from_secs(10)).await;
        c.node(leader)
            .propose(actions(trial * 10, 1))
            .await
            .expect("commit");
        let other = c
            .ids()
            .into_iter()
            .find(|i| *i != leader)
            .expect("follower");
        let t = Instant::now();
        c.stop(leader).await;
        let n = c.node(other).clone();
        n.propose(actions(trial * 10 + 1, 1))
            .await
            .expect("commit after failover");
        times.push(t.elapsed());
        c.shutdown().await;
    }
    times.sort();
    println!(
        "failover: 3 managers, default timing (heartbeat 100 ms, election 600-1200 ms), 20 trials: p50 {:?}, p99 (max of 20) {:?}",
        times[10], times[19]
    );
}

fn keys(dir: &std::path::Path) -> Arc<Keyring> {
    Arc::new(Keyring::load(dir, None, None, test_kdf()).expect("keys"))
}

async fn reopen() {
    let d = tempfile::tempdir().expect("tempdir");
    let n = 1_000_000u64;
    {
        let (wal, _) = Wal::open(
            &d.path().join("wal"),
            keys(d.path()),
            WalOptions::default(),
            None,
        )
        .expect("open");
        let mut index = 1;
        while index <= n {
            let batch: Vec<Entry> = (index..(index + 1000).min(n + 1))
                .map(|i| Entry {
                    log_id: LogId::new(CommittedLeaderId::new(1, 1), i),
                    payload: EntryPayload::Normal(Proposal {
                        timestamp: Timestamp(i),
                        actions: Vec::new(),
                    }),
                })
                .collect();
            index += batch.len() as u64;
            let (tx, rx) = tokio::sync::oneshot::channel();
            wal.append_for_test(batch, tx).expect("append");
            rx.await.expect("flushed").expect("fsync");
        }
    }
    let bytes: u64 = std::fs::read_dir(d.path().join("wal"))
        .expect("dir")
        .map(|e| e.expect("e").metadata().expect("m").len())
        .sum();
    let t = Instant::now();
    let (wal, report) = Wal::open(
        &d.path().join("wal"),
        keys(d.path()),
        WalOptions::default(),
        None,
    )
    .expect("reopen");
    let took = t.elapsed();
    assert_eq!(report.entries, n);
    let t2 = Instant::now();
    let tail = wal.verify_from(n - 10_000).expect("verify");
    println!(
        "reopen: log of {n} entries ({} MB, {} segments): open + checksum + index {took:?}; authenticating the last {tail} entries (what a start after a snapshot replays) {:?}",
        bytes / 1_000_000,
        report.segments,
        t2.elapsed()
    );
}

async fn install() {
    let mut store = Store::new();
    let service = id(1);
    let batch: Vec<StoreAction> = (0..100_000u128)
        .map(|k| StoreAction::Create(typical_task(10 + k, service, Some(id(2))).into()))
        .collect();
    store
        .apply(swarm_core::Batch {
            index: 1,
            timestamp: Timestamp(1),
            actions: batch,
        })
        .expect("apply");
    let meta = SnapshotMeta {
        last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), 5)),
        last_membership: Default::default(),
        snapshot_id: "1-1-5-0".into(),
    };
    let plain = SnapshotPayload {
        meta: meta.clone(),
        store: store.snapshot(),
    }
    .encode();
    let d = tempfile::tempdir().expect("tempdir");
    let mut sm = StateMachine::open(
        &d.path().join("snap"),
        keys(d.path()),
        SharedStore::default(),
    )
    .expect("sm");
    let size = plain.len();
    let t = Instant::now();
    sm.install_snapshot(&meta, Box::new(std::io::Cursor::new(plain)))
        .await
        .expect("install");
    let took = t.elapsed();
    assert_eq!(sm.store().view(|s| s.count::<swarm_core::Task>()), 100_000);
    println!("install: snapshot of 100 000 tasks ({} MB): decode + seal + write + fsync + restore {took:?}", size / 1_000_000);
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let want = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _ = fast_config;
    rt.block_on(async {
        if want("throughput1") {
            throughput1().await;
        }
        if want("latency1") {
            latency1().await;
        }
        if want("concurrent64") {
            concurrent64().await;
        }
        if want("concurrent3") {
            concurrent3().await;
        }
        if want("throughput3") {
            throughput3().await;
        }
        if want("reopen") {
            reopen().await;
        }
        if want("install") {
            install().await;
        }
        if want("failover") {
            failover().await;
        }
    });
}
