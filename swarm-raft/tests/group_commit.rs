//! Group commit across concurrent proposals: while an fsync is in flight (slowed through the WAL's
//! `DiskFaults` hook, as a slow disk would be), proposals that arrive share the next entry and the
//! next fsync, on the leader and on followers; each is acknowledged only once the entry carrying it
//! is durable; a proposal the store refuses inside a shared entry fails alone; replication messages
//! are bounded in bytes.

use std::sync::Arc;
use std::time::Duration;

use openraft::storage::RaftLogReader;
use openraft::{CommittedLeaderId, EntryPayload, LogId};
use swarm_core::testing::secret;
use swarm_core::{CommitError, Proposer, Secret, StoreAction, Timestamp};
use swarm_raft::files::RaftStateFile;
use swarm_raft::log_store::{LogStore, MAX_APPEND_BYTES};
use swarm_raft::testing::{fast_config, test_kdf, TestCluster};
use swarm_raft::types::Entry;
use swarm_raft::{Keyring, Proposal, RaftNode, Wal, WalOptions};

const T: Duration = Duration::from_secs(20);

/// A proposal creating secret `n` with 1 KiB of data.
fn create(n: u128) -> Vec<StoreAction> {
    vec![StoreAction::Create(
        secret(n, &format!("secret-{n}"), &[7u8; 1024]).into(),
    )]
}

/// Proposes `ids` concurrently on `node`; each proposal, once acknowledged, checks that the
/// leader's log is durable up to the index it was acknowledged at.
async fn propose_all(node: &RaftNode, ids: Vec<u128>) -> Vec<(u128, Result<u64, CommitError>)> {
    let mut handles = Vec::new();
    for id in ids {
        let n = node.clone();
        handles.push(tokio::spawn(async move {
            let r = n.propose(create(id)).await;
            if let Ok(index) = r {
                let durable = n.wal().durable_index();
                assert!(
                    durable >= Some(index),
                    "proposal {id} acknowledged at index {index} while the log was durable only up to {durable:?}"
                );
            }
            (id, r)
        }));
    }
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("proposal task"));
    }
    out
}

fn count(node: &RaftNode) -> usize {
    node.store().view(|s| s.count::<Secret>())
}

/// Property: 64 proposals made while fsyncs are slow all commit, need fewer fsyncs (and log
/// entries) than proposals, and each is acknowledged only once the log is durable up to its
/// index. Setup: one manager, every fsync 20 ms longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_proposals_share_fsyncs_and_are_acked_only_when_durable() {
    let c = TestCluster::new(1, fast_config()).await;
    let node = c.node(1).clone();
    node.propose(create(1)).await.expect("warm-up commit");
    let before = node.wal_stats();
    node.wal()
        .disk_faults()
        .delay_fsyncs(Duration::from_millis(20));
    let results = propose_all(&node, (100..164).collect()).await;
    node.wal().disk_faults().clear();
    for (id, r) in &results {
        assert!(r.is_ok(), "proposal {id}: {r:?}");
    }
    let after = node.wal_stats();
    let (fsyncs, entries) = (after.fsyncs - before.fsyncs, after.entries - before.entries);
    assert!(
        fsyncs < 64,
        "64 concurrent proposals took {fsyncs} fsyncs: they do not share group commits"
    );
    assert!(
        entries < 64,
        "64 concurrent proposals took {entries} log entries: none were merged"
    );
    // Every proposal's action was written once: merged, not repeated.
    assert_eq!(after.actions - before.actions, 64);
    assert_eq!(count(&node), 65);
    c.shutdown().await;
}

/// Property: on 3 managers, concurrent proposals share entries, and followers receive them in
/// shared append messages: every manager needs fewer fsyncs than there were proposals, and every
/// replica applies all of them. Setup: 3 managers, every fsync of every manager 10 ms longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_fsync_shared_batches_too() {
    let c = TestCluster::new(3, fast_config()).await;
    let leader = c.wait_leader(&c.ids(), T).await;
    let node = c.node(leader).clone();
    node.propose(create(1)).await.expect("warm-up commit");
    let before: Vec<_> = c.ids().iter().map(|&i| c.node(i).wal_stats()).collect();
    for &i in &c.ids() {
        c.node(i)
            .wal()
            .disk_faults()
            .delay_fsyncs(Duration::from_millis(10));
    }
    let results = propose_all(&node, (100..164).collect()).await;
    for &i in &c.ids() {
        c.node(i).wal().disk_faults().clear();
    }
    let mut last = 0;
    for (id, r) in &results {
        match r {
            Ok(index) => last = last.max(*index),
            Err(e) => panic!("proposal {id}: {e}"),
        }
    }
    c.wait_applied(&c.ids(), last, T).await;
    for (k, &i) in c.ids().iter().enumerate() {
        let fsyncs = c.node(i).wal_stats().fsyncs - before[k].fsyncs;
        assert!(
            fsyncs < 64,
            "manager {i} took {fsyncs} fsyncs for 64 concurrent proposals"
        );
        assert_eq!(count(c.node(i)), 65, "manager {i}");
    }
    c.shutdown().await;
}

/// Property: a proposal the store refuses does not make the proposals it shared an entry with
/// fail: each gets the answer it would have had alone. Setup: one manager, 8 secrets created
/// first, then 24 new secrets and 8 duplicates of the first ones proposed concurrently while
/// fsyncs are slow (so they are merged).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_proposal_in_a_shared_entry_fails_alone() {
    let c = TestCluster::new(1, fast_config()).await;
    let node = c.node(1).clone();
    for id in 0..8 {
        node.propose(create(id)).await.expect("setup commit");
    }
    node.wal()
        .disk_faults()
        .delay_fsyncs(Duration::from_millis(20));
    // Duplicates interleaved with new ones, so that merged entries mix both.
    let ids: Vec<u128> = (0..32)
        .map(|k| if k % 4 == 0 { k / 4 } else { 100 + k })
        .collect();
    let results = propose_all(&node, ids).await;
    node.wal().disk_faults().clear();
    for (id, r) in &results {
        if *id < 8 {
            assert!(
                matches!(r, Err(CommitError::Rejected(_))),
                "duplicate {id} answered {r:?}"
            );
        } else {
            assert!(r.is_ok(), "new secret {id} answered {r:?}");
        }
    }
    assert_eq!(count(&node), 8 + 24);
    c.shutdown().await;
}

fn big_entry(index: u64) -> Entry {
    let s = secret(
        index as u128,
        &format!("big-{index}"),
        &vec![1u8; 700 * 1024],
    );
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Proposal {
            timestamp: Timestamp(index),
            actions: vec![StoreAction::Create(s.into())],
        }),
    }
}

/// Property: what replication reads for one append message stays within `MAX_APPEND_BYTES` (but
/// holds at least one entry), and reading on from where it stopped yields the rest in order.
/// Setup: a log of 12 entries of about 700 KiB each.
#[tokio::test]
async fn replication_reads_are_bounded_in_bytes() {
    let d = tempfile::tempdir().expect("tempdir");
    let keys = Arc::new(Keyring::load(d.path(), None, None, test_kdf()).expect("keys"));
    let (wal, _) = Wal::open(
        &d.path().join("wal"),
        keys.clone(),
        WalOptions::default(),
        None,
    )
    .expect("wal");
    let (tx, rx) = tokio::sync::oneshot::channel();
    wal.append_for_test((1..=12).map(big_entry).collect(), tx)
        .expect("append");
    rx.await.expect("flushed").expect("fsync");
    let mut log = LogStore::new(wal, d.path().to_path_buf(), RaftStateFile::default(), keys);
    let mut next = 1;
    let mut messages = 0;
    while next <= 12 {
        let got = log.limited_get_log_entries(next, 13).await.expect("read");
        assert!(!got.is_empty(), "no entry read from {next}");
        let bytes: usize = got
            .iter()
            .map(|e| bincode::serialize(e).expect("encode").len())
            .sum();
        assert!(
            bytes as u64 <= MAX_APPEND_BYTES,
            "{} entries from {next} hold {bytes} bytes",
            got.len()
        );
        for e in &got {
            assert_eq!(e.log_id.index, next);
            next += 1;
        }
        messages += 1;
    }
    assert!(
        messages >= 3,
        "12 entries of 700 KiB fit in {messages} messages"
    );
}
