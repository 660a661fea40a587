//! Restarts from damaged logs, force-new-cluster, encryption at rest, autolock and membership
//! refusals, over the in-memory router with real data directories.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use swarm_core::testing::secret;
use swarm_core::{Proposer, Secret, StoreAction};
use swarm_raft::testing::{fast_config, TestCluster};
use swarm_raft::{MembershipError, StartError, StartOptions};
use swarm_secrets::UnlockKey;

const T: Duration = Duration::from_secs(10);

fn create(n: u128, data: &[u8]) -> Vec<StoreAction> {
    vec![StoreAction::Create(
        secret(n, &format!("secret-{n}"), data).into(),
    )]
}

fn count(c: &TestCluster, id: u64) -> usize {
    c.node(id).store().view(|s| s.count::<Secret>())
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn last_segment(dir: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = files(&dir.join("wal"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    segs.sort();
    segs.pop().unwrap()
}

/// Property: restarting from a log whose tail was torn by a crash loses no committed entry.
/// Setup: a single manager commits 20 writes (each acknowledged only after fsync); we append a
/// half-written record to its last segment (what a crash in the middle of a write leaves), restart,
/// and check all 20 objects are back and the cut was reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_from_torn_tail_loses_no_committed_entry() {
    let mut c = TestCluster::new(1, fast_config()).await;
    for n in 0..20 {
        c.node(1).propose(create(n, b"x")).await.unwrap();
    }
    c.stop(1).await;
    let seg = last_segment(&c.data_dir(1));
    let mut bytes = fs::read(&seg).unwrap();
    // A whole record's header and the first 77 bytes of its 500-byte body.
    let mut record = Vec::new();
    swarm_raft::wal::frame::encode_frame(&mut record, 1000, 1, 1, &[0xAB; 476]);
    bytes.extend_from_slice(&record[..12 + 77]);
    fs::write(&seg, &bytes).unwrap();
    let node = c.start(1, StartOptions::default()).await.unwrap();
    assert!(node.open_report().truncated_tail.is_some());
    c.wait_leader(&[1], T).await;
    let i = node.propose(create(99, b"y")).await.unwrap();
    c.wait_applied(&[1], i, T).await;
    assert_eq!(count(&c, 1), 21);
    c.shutdown().await;
}

/// Property: a flipped byte inside the log (not at its tail) makes the node refuse to start,
/// naming the file and offset, rather than serve wrong state. Setup: one manager, 5 writes, stop,
/// damage the first record of the segment, start again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_log_refuses_to_start() {
    let mut c = TestCluster::new(1, fast_config()).await;
    for n in 0..5 {
        c.node(1).propose(create(n, b"x")).await.unwrap();
    }
    c.stop(1).await;
    let seg = last_segment(&c.data_dir(1));
    let mut bytes = fs::read(&seg).unwrap();
    bytes[32 + 30] ^= 0x10;
    fs::write(&seg, &bytes).unwrap();
    match c.start(1, StartOptions::default()).await {
        Err(StartError::Storage(e)) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&seg.display().to_string()) && msg.contains("byte 32"),
                "{msg}"
            );
        }
        other => panic!("expected a storage fault, got {other:?}"),
    }
}

/// Property: force-new-cluster restarts one manager from its local log and snapshot as a
/// single-voter cluster and keeps every object. Setup: 3 managers with small snapshots, 30
/// writes, all stopped; manager 2 restarts alone with force-new-cluster, becomes leader, still has
/// all 30 objects, and commits new writes without the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_new_cluster_keeps_every_object() {
    let mut cfg = fast_config();
    cfg.snapshot_every = 10;
    let mut c = TestCluster::new(3, cfg).await;
    let leader = c.wait_leader(&c.ids(), T).await;
    let mut last = 0;
    for n in 0..30 {
        last = c.node(leader).propose(create(n, b"x")).await.unwrap();
    }
    c.wait_applied(&c.ids(), last, T).await;
    for id in 1..=3 {
        c.stop(id).await;
    }
    let node = c
        .start(
            2,
            StartOptions {
                force_new_cluster: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    c.wait_leader(&[2], T).await;
    assert_eq!(node.status().voters, vec![2]);
    node.read_barrier().await.unwrap();
    assert_eq!(count(&c, 2), 30);
    let i = node.propose(create(100, b"y")).await.unwrap();
    c.wait_applied(&[2], i, T).await;
    assert_eq!(count(&c, 2), 31);
    c.shutdown().await;
}

/// Property: a secret's plaintext never reaches disk: not in WAL segments, snapshots, the key file
/// or the raft-state file, on any manager. Setup: 3 managers, small snapshots so both log records
/// and snapshot files hold the secret; after every manager applied it, stop all and scan the bytes
/// of every file under every data directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_plaintext_appears_in_no_file() {
    let plaintext = b"PLAINTEXT-canary-7f3e9a1c-do-not-store";
    let mut cfg = fast_config();
    cfg.snapshot_every = 5;
    let mut c = TestCluster::new(3, cfg).await;
    let leader = c.wait_leader(&c.ids(), T).await;
    let mut last = c.node(leader).propose(create(1, plaintext)).await.unwrap();
    for n in 2..12 {
        last = c.node(leader).propose(create(n, b"filler")).await.unwrap();
    }
    c.wait_applied(&c.ids(), last, T).await;
    for id in c.ids() {
        c.node(id)
            .raft()
            .wait(Some(T))
            .metrics(|m| m.snapshot.is_some(), "snapshot")
            .await
            .unwrap();
    }
    for id in 1..=3 {
        c.stop(id).await;
    }
    let all = files(&c.root());
    assert!(all.iter().any(|p| p.to_string_lossy().ends_with(".snap")));
    for f in all {
        let bytes = fs::read(&f).unwrap();
        assert!(
            !bytes.windows(plaintext.len()).any(|w| w == plaintext),
            "plaintext found in {}",
            f.display()
        );
    }
}

/// Property: with autolock on, a restarted manager refuses to start without the unlock key and
/// refuses a wrong key; with the right key it serves its data. Enabling, rotating and disabling
/// autolock happen while the node runs. Setup: one manager, autolock turned on while running,
/// restart attempts without/with a wrong/with the right key, then rotation and disabling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autolock_locks_the_log_until_unlocked() {
    let mut rng = rand::thread_rng();
    let key = UnlockKey::generate(&mut rng);
    let wrong = UnlockKey::generate(&mut rng);
    let mut c = TestCluster::new(1, fast_config()).await;
    c.node(1).propose(create(1, b"x")).await.unwrap();
    c.node(1).set_unlock_key(&key).await.unwrap();
    assert!(c.node(1).keys().status().autolock);
    // Still serving after enabling: no downtime.
    c.node(1).propose(create(2, b"x")).await.unwrap();
    c.stop(1).await;

    assert!(matches!(
        c.start_locked(1, None).await,
        Err(StartError::Locked)
    ));
    assert!(
        c.router.unregister(1).is_none(),
        "a locked manager is not reachable"
    );
    assert!(matches!(
        c.start_locked(1, Some(&wrong)).await,
        Err(StartError::WrongUnlockKey(_))
    ));
    let node = c.start_locked(1, Some(&key)).await.unwrap();
    c.wait_leader(&[1], T).await;
    node.read_barrier().await.unwrap();
    assert_eq!(count(&c, 1), 2);

    // Rotate the unlock key while running: the old key no longer opens it.
    let key2 = UnlockKey::generate(&mut rng);
    node.set_unlock_key(&key2).await.unwrap();
    node.propose(create(3, b"x")).await.unwrap();
    c.stop(1).await;
    assert!(matches!(
        c.start_locked(1, Some(&key)).await,
        Err(StartError::WrongUnlockKey(_))
    ));
    let node = c.start_locked(1, Some(&key2)).await.unwrap();
    c.wait_leader(&[1], T).await;
    node.disable_autolock().await.unwrap();
    c.stop(1).await;
    let node = c.start(1, StartOptions::default()).await.unwrap();
    c.wait_leader(&[1], T).await;
    node.read_barrier().await.unwrap();
    assert_eq!(count(&c, 1), 3);
    c.shutdown().await;
}

/// Property: demoting or removing managers is refused when it would leave no reachable quorum or
/// no manager, and allowed otherwise. Setup: 3 managers with manager 3 stopped: demoting 2 would
/// leave {1,3} with only 1 reachable (refused); demoting the unreachable 3 leaves {1,2} (allowed);
/// removing it then works; demoting the last voters ends at "last manager".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demote_and_remove_respect_quorum() {
    let mut c = TestCluster::new(3, fast_config()).await;
    let leader = c.wait_leader(&c.ids(), T).await;
    let (a, b) = {
        let others: Vec<u64> = c.ids().into_iter().filter(|i| *i != leader).collect();
        (others[0], others[1])
    };
    c.stop(b).await;
    // Wait (bounded) until the leader notices b is gone.
    let deadline = tokio::time::Instant::now() + T;
    while c.node(leader).peer_reachable(b) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "leader never noticed {b} stopped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = c.node(leader).demote_manager(a).await;
    assert!(
        matches!(r, Err(MembershipError::WouldLoseQuorum { node, .. }) if node == a),
        "{r:?}"
    );
    assert_eq!(
        c.node(leader).remove_manager(b).await,
        Err(MembershipError::StillVoter(b))
    );
    c.node(leader).demote_manager(b).await.unwrap();
    c.node(leader).remove_manager(b).await.unwrap();
    let st = c.node(leader).status();
    assert!(!st.voters.contains(&b) && !st.learners.contains(&b));
    c.node(leader).demote_manager(a).await.unwrap();
    assert_eq!(
        c.node(leader).demote_manager(leader).await,
        Err(MembershipError::LastManager(leader))
    );
    // Still committing alone.
    c.node(leader).propose(create(1, b"x")).await.unwrap();
    c.shutdown().await;
}
