//! The storage's inline mode (swarm_raft::disk::Disk::inline, for deterministic simulation): on
//! an inline disk the WAL starts no thread of its own, an append is durable when it returns, the
//! committed index is persisted without a thread, and a failing fsync is retried by a task on the
//! caller's runtime. In a test binary of its own, so no other test's WAL threads are counted.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::{CommittedLeaderId, EntryPayload, LogId};
use swarm_core::{StoreAction, Timestamp};
use swarm_raft::disk::{Disk, SimDisk};
use swarm_raft::testing::test_kdf;
use swarm_raft::types::Entry;
use swarm_raft::{Keyring, Proposal, Wal, WalOptions};

fn entry(index: u64) -> Entry {
    let secret = swarm_core::testing::secret(u128::from(index), &format!("s{index}"), b"payload");
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Proposal {
            timestamp: Timestamp(index),
            actions: vec![StoreAction::Create(secret.into())],
        }),
    }
}

/// Names of this process's threads that belong to the WAL.
fn wal_threads() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .filter(|n| n.starts_with("swarm-wal"))
        .collect()
}

fn open(disk: &SimDisk, dir: &Path) -> Wal {
    disk.create_dir_all(dir, 0o700).unwrap();
    let d: Arc<dyn Disk> = Arc::new(disk.clone());
    let keys = Arc::new(Keyring::load_on(d.clone(), dir, None, None, test_kdf()).unwrap());
    Wal::open_on(d, &dir.join("wal"), keys, WalOptions::default(), None)
        .unwrap()
        .0
}

#[tokio::test(flavor = "current_thread")]
async fn an_inline_disk_runs_the_wal_without_threads_and_retries_failed_fsyncs_on_a_task() {
    let dir = PathBuf::from("/sim/inline");
    // The check can fail: a threaded disk has the WAL's threads.
    let threaded = open(&SimDisk::new(), &dir);
    // A thread names itself once it runs (Rust sets the name from inside the new thread), so
    // its name may show a moment after the spawn returned: wait for it, bounded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while wal_threads().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        !wal_threads().is_empty(),
        "the threaded WAL's threads are visible"
    );
    drop(threaded);
    assert!(wal_threads().is_empty(), "{:?}", wal_threads());

    let disk = SimDisk::inline();
    let wal = open(&disk, &dir);
    assert!(wal_threads().is_empty(), "{:?}", wal_threads());
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    wal.append_for_test(vec![entry(1)], tx).unwrap();
    assert!(
        matches!(rx.try_recv(), Ok(Ok(()))),
        "durable when the append returns"
    );
    wal.save_committed(Some(entry(1).log_id));
    let committed = swarm_raft::wal::committed::decode(
        &disk.durable_content(&dir.join("wal/committed")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        committed,
        Some(entry(1).log_id),
        "persisted without a thread"
    );

    // More failing fsyncs than the immediate retries: the append is answered by the retry task,
    // and the fault is shown meanwhile.
    disk.fail_fsyncs(6, 5);
    let (tx, rx) = tokio::sync::oneshot::channel();
    wal.append_for_test(vec![entry(2)], tx).unwrap();
    assert!(wal.fault().borrow().is_some(), "the failing fsync is shown");
    rx.await.unwrap().unwrap();
    assert!(wal.fault().borrow().is_none());
    assert_eq!(wal.durable_index(), Some(2));
    assert!(wal_threads().is_empty(), "{:?}", wal_threads());
    // The entry written before the failures and the one rewritten after them are durable.
    let seg = disk
        .list_dir(&dir.join("wal"))
        .unwrap()
        .into_iter()
        .find(|p| p.extension().is_some_and(|x| x == "wal"))
        .unwrap();
    let durable = disk.durable_content(&seg).unwrap();
    let scan = swarm_raft::wal::frame::scan_segment(&durable).unwrap();
    assert_eq!(scan.frames.len(), 2);
}

/// On an inline disk a snapshot that meets a full disk waits on the runtime's timer (no thread to
/// block) instead of failing, which would stop raft for good; it is written once space returns.
#[tokio::test(flavor = "current_thread")]
async fn a_snapshot_on_a_full_inline_disk_waits_for_space() {
    use std::time::Duration;
    use swarm_core::{Proposer, SharedStore};
    use swarm_raft::{NodeConfig, RaftConfig, RaftNode, Router, StartOptions};

    let disk = SimDisk::inline();
    let dir = PathBuf::from("/sim/snapshot-full");
    let mut c = NodeConfig::new(1, "node-1", dir.clone());
    c.raft = RaftConfig {
        heartbeat: Duration::from_millis(20),
        election_timeout_min: Duration::from_millis(100),
        election_timeout_max: Duration::from_millis(200),
        step_down_after: Duration::from_millis(250),
        disk: Arc::new(disk.clone()),
        ..RaftConfig::default()
    };
    c.kdf = test_kdf();
    let router = Router::new();
    let node = RaftNode::start(
        c,
        SharedStore::default(),
        router.endpoint(1),
        StartOptions::default(),
    )
    .await
    .unwrap();
    router.register(node.clone());
    node.bootstrap().await.unwrap();
    node.wait_until(Duration::from_secs(20), "leadership", |s| s.leads())
        .await
        .unwrap();
    let create = |n: u64| {
        vec![StoreAction::Create(
            swarm_core::testing::secret(u128::from(n), &format!("s{n}"), b"v").into(),
        )]
    };
    node.propose(create(1)).await.unwrap();
    let snap = dir
        .join("snap")
        .join(swarm_raft::state_machine::SNAPSHOT_FILE);
    assert!(disk.read(&snap).is_err(), "no snapshot yet");
    disk.set_quota(Some(disk.used_bytes()));
    node.raft().trigger().snapshot().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(node.stopped_by().is_none(), "{:?}", node.stopped_by());
    assert!(disk.read(&snap).is_err(), "the disk is full");
    disk.set_quota(None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while disk.read(&snap).is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "snapshot never written"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node.propose(create(2)).await.unwrap();
    assert!(node.stopped_by().is_none());
    router.unregister(1);
    node.shutdown().await;
}
