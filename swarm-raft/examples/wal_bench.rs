//! A micro-benchmark of the write-ahead log on the real filesystem, to compare builds (for
//! example before and after a change to the storage path):
//!
//! ```text
//! cargo run --release -p swarm-raft --example wal_bench [-- <appends> <durable appends>]
//! ```
//!
//! Prints two figures: appends/s of one-entry appends that do not wait for their fsync (the CPU
//! path: encode, seal, frame, positional write, queue; group commit syncs behind them), and
//! durable appends/s of one-entry appends that each wait for their fsync.

use std::sync::Arc;
use std::time::Instant;

use openraft::{CommittedLeaderId, EntryPayload, LogId};
use swarm_core::{StoreAction, Timestamp};
use swarm_raft::types::Entry;
use swarm_raft::{Keyring, Proposal, Wal, WalOptions};

fn entry(index: u64) -> Entry {
    let secret = swarm_core::testing::secret(u128::from(index), &format!("s{index}"), &[7u8; 200]);
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Proposal {
            timestamp: Timestamp(index),
            actions: vec![StoreAction::Create(secret.into())],
        }),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let fast: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(50_000);
    let durable: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(500);
    let d = tempfile::tempdir().expect("tempdir");
    let kdf = swarm_secrets::KdfParams::new(64, 1, 1).expect("kdf");
    let keys = Arc::new(Keyring::load(d.path(), None, None, kdf).expect("keys"));
    let (wal, _) =
        Wal::open(&d.path().join("wal"), keys, WalOptions::default(), None).expect("wal");
    let mut next = 1;
    let mut waits = Vec::new();
    let start = Instant::now();
    for _ in 0..fast {
        let (tx, rx) = tokio::sync::oneshot::channel();
        wal.append_for_test(vec![entry(next)], tx).expect("append");
        waits.push(rx);
        next += 1;
    }
    let written = start.elapsed();
    for rx in waits {
        rx.await.expect("flusher").expect("durable");
    }
    let all = start.elapsed();
    println!(
        "appends (not waiting): {fast} in {:.3} s: {:.0} appends/s written, {:.0}/s durable; {} fsyncs",
        written.as_secs_f64(),
        fast as f64 / written.as_secs_f64(),
        fast as f64 / all.as_secs_f64(),
        wal.fsyncs()
    );
    let start = Instant::now();
    for _ in 0..durable {
        let (tx, rx) = tokio::sync::oneshot::channel();
        wal.append_for_test(vec![entry(next)], tx).expect("append");
        rx.await.expect("flusher").expect("durable");
        next += 1;
    }
    let took = start.elapsed();
    println!(
        "durable appends (each waits for its fsync): {durable} in {:.3} s: {:.0}/s, {:.0} us each",
        took.as_secs_f64(),
        durable as f64 / took.as_secs_f64(),
        took.as_micros() as f64 / durable as f64
    );
}
