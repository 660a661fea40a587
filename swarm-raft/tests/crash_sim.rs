//! Crash safety of a whole raft node on the simulated disk (swarm_raft::disk::SimDisk): a
//! single manager takes proposals (some still in flight), snapshots and purges its log, and
//! crashes at a random point; the disk is replaced by a random crash image (unsynced writes kept,
//! lost or torn, directory operations not fsynced kept or lost) and the node restarts on it.
//!
//! Properties, after every restart:
//! * the restart succeeds (the only repair allowed is the documented cut of a torn tail);
//! * every proposal acknowledged before the crash is in the store;
//! * the durable vote never goes backwards (it is at least the vote the node led with);
//! * the node keeps working: a new proposal commits.
//!
//! Crash images use in-order write-back per file (a file's unsynced writes land as a prefix, the
//! last one torn); `independent_loss_refusals_concern_only_unsynced_bytes` covers the other
//! model, where a later unsynced write may land without an earlier one.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use swarm_core::testing::secret;
use swarm_core::{Proposer, Secret, SharedStore, StoreAction};
use swarm_raft::disk::{CrashOptions, Disk, SimDisk};
use swarm_raft::files::RaftStateFile;
use swarm_raft::testing::test_kdf;
use swarm_raft::types::Vote;
use swarm_raft::{NodeConfig, RaftConfig, RaftNode, Router, StartError, StartOptions};

const T: Duration = Duration::from_secs(20);

fn config(disk: Arc<dyn Disk>) -> RaftConfig {
    RaftConfig {
        heartbeat: Duration::from_millis(20),
        election_timeout_min: Duration::from_millis(100),
        election_timeout_max: Duration::from_millis(200),
        step_down_after: Duration::from_millis(250),
        propose_timeout: Duration::from_secs(10),
        snapshot_every: 12,
        keep_logs_after_snapshot: 3,
        segment_bytes: 4096,
        wal_prealloc_bytes: 8192,
        disk,
        ..RaftConfig::default()
    }
}

fn data_dir() -> PathBuf {
    PathBuf::from("/sim/node-1")
}

fn create(n: u64) -> Vec<StoreAction> {
    vec![StoreAction::Create(
        secret(u128::from(n), &format!("secret-{n}"), b"payload").into(),
    )]
}

async fn start(router: &Router, disk: &SimDisk) -> Result<RaftNode, StartError> {
    let mut c = NodeConfig::new(1, "node-1", data_dir());
    c.raft = config(Arc::new(disk.clone()));
    c.kdf = test_kdf();
    let node = RaftNode::start(
        c,
        SharedStore::default(),
        router.endpoint(1),
        StartOptions::default(),
    )
    .await?;
    router.register(node.clone());
    Ok(node)
}

async fn wait_leader(node: &RaftNode) {
    let deadline = tokio::time::Instant::now() + T;
    while !node.is_leader() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no leader within {T:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn vote(node: &RaftNode) -> Vote {
    node.raft().metrics().borrow().vote
}

/// One round: proposals `next..next+n` in flight at once (a snapshot triggered halfway if
/// `snapshot`), with a crash armed `crash_after` disk operations from now. Returns the crash image
/// (taken at the armed point, or at the end if the round did fewer operations) and the proposals
/// acknowledged before it.
async fn round(
    node: &RaftNode,
    disk: &SimDisk,
    next: u64,
    n: u64,
    snapshot: bool,
    crash: (u64, u64, CrashOptions),
    fault: Fault,
) -> (SimDisk, Vec<u64>) {
    let (crash_after, seed, opts) = crash;
    let crash_op = disk.ops() + crash_after;
    disk.arm_crash(crash_after, seed, opts);
    match fault {
        Fault::None => {}
        Fault::Fsyncs(k) => disk.fail_fsyncs(k, 5),
        Fault::Writes(k) => disk.fail_writes(k, 5),
        Fault::Full(room) => disk.set_quota(Some(disk.used_bytes() + room)),
    }
    // (proposal, disk operations done when its answer was seen)
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for k in next..next + n {
        let (n2, acked, d2) = (node.clone(), acked.clone(), disk.clone());
        tasks.push(tokio::spawn(async move {
            if n2.propose(create(k)).await.is_ok() {
                acked.lock().unwrap().push((k, d2.ops()));
            }
        }));
        if k % 3 == 0 {
            // Spread the proposals over several entries (and fsyncs).
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if snapshot && k == next + n / 2 {
            let _ = node.raft().trigger().snapshot().await;
        }
    }
    if fault != Fault::None {
        // The disk recovers while proposals wait (they retry; none is acknowledged meanwhile
        // unless it became durable).
        tokio::time::sleep(Duration::from_millis(5)).await;
        disk.fail_fsyncs(0, 0);
        disk.fail_writes(0, 0);
        disk.set_quota(None);
    }
    for t in tasks {
        let _ = tokio::time::timeout(T, t).await;
    }
    let (image, crash_op) = match disk.take_crash() {
        Some(image) => (image, crash_op),
        None => (disk.crash_image(seed, opts), disk.ops()),
    };
    let acked = acked.lock().unwrap().clone();
    eprintln!(
        "crash at op {crash_op} of {} ({} acked in all, {} before); unsynced at end: {}",
        disk.ops(),
        acked.len(),
        acked.iter().filter(|a| a.1 <= crash_op).count(),
        disk.has_unsynced()
    );
    let before = acked
        .into_iter()
        .filter(|&(_, seen_at)| seen_at <= crash_op)
        .map(|(k, _)| k)
        .collect();
    (image, before)
}

/// Runs rounds of proposals and crashes; panics (with the seed) on a violated property.
/// A disk fault during a round (cleared 5 ms into it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    /// The next k fsyncs fail with EIO.
    Fsyncs(u64),
    /// The next k writes fail with EIO.
    Writes(u64),
    /// The disk fills up after this many more bytes (ENOSPC).
    Full(u64),
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        2 => Just(Fault::None),
        1 => (1u64..8).prop_map(Fault::Fsyncs),
        1 => (1u64..8).prop_map(Fault::Writes),
        1 => (0u64..8192).prop_map(Fault::Full),
    ]
}

type Round = (u64, u64, bool, u64, Fault);

async fn crash_and_check(inline: bool, rounds: Vec<Round>, opts: CrashOptions) {
    let mut disk = if inline {
        SimDisk::inline()
    } else {
        SimDisk::new()
    };
    let router = Router::new();
    let mut node = start(&router, &disk).await.expect("first start");
    node.bootstrap().await.expect("bootstrap");
    wait_leader(&node).await;
    let mut led_with = vote(&node);
    let mut acked_all: Vec<u64> = Vec::new();
    let mut next = 0;
    for (r, (n, crash_after, snapshot, seed, fault)) in rounds.into_iter().enumerate() {
        let (image, acked) = round(
            &node,
            &disk,
            next,
            n,
            snapshot,
            (crash_after, seed, opts),
            fault,
        )
        .await;
        next += n;
        acked_all.extend(acked);
        router.unregister(1);
        node.shutdown().await;
        let durable_vote = RaftStateFile::load_on(&image, &data_dir())
            .expect("raft-state readable")
            .vote
            .expect("a vote was saved");
        assert!(
            durable_vote >= led_with,
            "round {r} seed {seed}: durable vote {durable_vote:?} is behind {led_with:?}"
        );
        // The image keeps the quota it was taken with; the disk recovered since.
        image.set_quota(None);
        disk = image;
        node = match start(&router, &disk).await {
            Ok(n) => n,
            Err(e) => panic!("round {r} seed {seed} (inline {inline}): restart refused: {e}"),
        };
        wait_leader(&node).await;
        led_with = vote(&node);
        // Everything acknowledged before any crash so far is there, and the node still works.
        let last = node.propose(create(next)).await.unwrap_or_else(|e| {
            panic!("round {r} seed {seed}: proposal after restart failed: {e}")
        });
        acked_all.push(next);
        next += 1;
        node.raft()
            .wait(Some(T))
            .applied_index_at_least(Some(last), "applied")
            .await
            .expect("applied");
        let missing: Vec<u64> = node.store().view(|s| {
            acked_all
                .iter()
                .copied()
                .filter(|k| s.get_by_name::<Secret>(&format!("secret-{k}")).is_none())
                .collect()
        });
        assert!(
            missing.is_empty(),
            "round {r} seed {seed} (inline {inline}): acknowledged proposals lost: {missing:?}"
        );
    }
    router.unregister(1);
    node.shutdown().await;
}

/// 48 cases (about 5 s), or `PROPTEST_CASES`.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    /// Property: see the module docs (in-order write-back crash images).
    #[test]
    fn acknowledged_proposals_and_the_vote_survive_any_crash(
        inline in any::<bool>(),
        rounds in prop::collection::vec((1u64..24, 0u64..48, any::<bool>(), any::<u64>(), fault()), 1..5),
    ) {
        rt().block_on(crash_and_check(inline, rounds, CrashOptions { in_order: true }));
    }
}

/// A later unsynced write may reach the disk while an earlier one does not (independent loss):
/// the WAL then finds a damaged record followed by a valid one and, by design (wal::frame),
/// refuses the start rather than guess. Property: such a refusal only ever names bytes that were
/// never fsynced (past the durable end of the file), so it never hides lost durable data; and
/// every image the WAL accepts keeps every acknowledged proposal (checked as above).
#[test]
fn independent_loss_refusals_concern_only_unsynced_bytes() {
    let mut refused = 0;
    let seeds = u64::from(cases() / 2);
    for seed in 0..seeds {
        let result = rt().block_on(async {
            let disk = SimDisk::new();
            let router = Router::new();
            let node = start(&router, &disk).await.expect("first start");
            node.bootstrap().await.expect("bootstrap");
            wait_leader(&node).await;
            let (image, acked) = round(
                &node,
                &disk,
                0,
                16,
                false,
                (seed * 7 % 40, seed, CrashOptions::default()),
                Fault::None,
            )
            .await;
            let durable: Vec<(PathBuf, Vec<u8>)> = wal_files(&image)
                .into_iter()
                .map(|p| {
                    let b = image.durable_before_crash(&p).unwrap_or_default();
                    (p, b)
                })
                .collect();
            router.unregister(1);
            node.shutdown().await;
            match start(&router, &image).await {
                Ok(node) => {
                    wait_leader(&node).await;
                    let last = acked.iter().max().copied();
                    if let Some(last) = last {
                        let _ = last;
                        let idx = node
                            .propose(create(1000))
                            .await
                            .expect("proposal after restart");
                        node.raft()
                            .wait(Some(T))
                            .applied_index_at_least(Some(idx), "applied")
                            .await
                            .expect("applied");
                        let missing = node.store().view(|s| {
                            acked
                                .iter()
                                .filter(|k| {
                                    s.get_by_name::<Secret>(&format!("secret-{k}")).is_none()
                                })
                                .count()
                        });
                        assert_eq!(missing, 0, "seed {seed}: acknowledged proposals lost");
                    }
                    router.unregister(1);
                    node.shutdown().await;
                    None
                }
                Err(e) => Some((e.to_string(), durable)),
            }
        });
        if let Some((msg, durable)) = result {
            refused += 1;
            // "<path> is corrupt at byte <offset>": nothing durable was at or after that byte
            // (only zeros, preallocated and synced, or nothing), so no fsynced record is refused.
            let (path, dur) = durable
                .iter()
                .find(|(p, _)| msg.contains(&*p.to_string_lossy()))
                .unwrap_or_else(|| panic!("seed {seed}: refusal names no segment: {msg}"));
            let offset = offset_in(&msg).unwrap_or_else(|| panic!("seed {seed}: no offset: {msg}"));
            let after = dur.get(offset as usize..).unwrap_or_default();
            assert!(
                after.iter().all(|&b| b == 0),
                "seed {seed}: refused at byte {offset} of {}, where durable records were: {msg}",
                path.display()
            );
        }
    }
    eprintln!("independent loss: {refused} of {seeds} crash images refused (each only about bytes that were never synced)");
}

fn wal_files(disk: &SimDisk) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = disk
        .list_dir(&data_dir().join("wal"))
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    v.sort();
    v
}

fn offset_in(msg: &str) -> Option<u64> {
    let at = msg
        .find("offset ")
        .map(|i| i + 7)
        .or_else(|| msg.find("byte ").map(|i| i + 5))?;
    msg[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .ok()
}

fn entry(index: u64) -> swarm_raft::types::Entry {
    use openraft::{CommittedLeaderId, EntryPayload, LogId};
    let secret = secret(u128::from(index), &format!("s{index}"), b"payload");
    swarm_raft::types::Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(swarm_raft::Proposal {
            timestamp: swarm_core::Timestamp(index),
            actions: vec![StoreAction::Create(secret.into())],
        }),
    }
}

/// Regression (found by the property above, with crash images that tear the last unsynced write
/// at any byte): the committed-index file was one 37-byte record overwritten in place, so a crash
/// while it was rewritten could leave a record whose checksum fails, and the node then refused
/// to start ("wal/committed is corrupt at byte 33"). Now the file has two slots written
/// alternately: a crash at every disk operation of a committed-index update, with any tear,
/// reopens with the old or the new value.
#[test]
fn a_torn_committed_index_write_falls_back_to_the_previous_value() {
    let dir = PathBuf::from("/sim/wal-only");
    let (old, new) = (3u64, 6u64);
    let mut reached_new = false;
    for crash_after in 0..6 {
        for seed in 0..8 {
            let disk = SimDisk::inline();
            disk.create_dir_all(&dir, 0o700).unwrap();
            let keys = Arc::new(
                swarm_raft::Keyring::load_on(Arc::new(disk.clone()), &dir, None, None, test_kdf())
                    .unwrap(),
            );
            let opts = swarm_raft::WalOptions::default();
            let (wal, _) = swarm_raft::Wal::open_on(
                Arc::new(disk.clone()),
                &dir.join("wal"),
                keys.clone(),
                opts.clone(),
                None,
            )
            .unwrap();
            rt().block_on(swarm_raft::testing::append_durably(
                &wal,
                (1..=new).map(entry).collect(),
            ));
            wal.save_committed(Some(entry(old).log_id));
            // The crash comes during the update to `new` (or after it, for the largest counts).
            disk.arm_crash(crash_after, seed, CrashOptions::default());
            wal.save_committed(Some(entry(new).log_id));
            let image = disk
                .take_crash()
                .unwrap_or_else(|| disk.crash_image(seed, CrashOptions::default()));
            drop(wal);
            let keys = Arc::new(
                swarm_raft::Keyring::load_on(Arc::new(image.clone()), &dir, None, None, test_kdf())
                    .unwrap(),
            );
            let (_, report) = swarm_raft::Wal::open_on(
                Arc::new(image),
                &dir.join("wal"),
                keys,
                swarm_raft::WalOptions {
                    expect_committed: true,
                    ..opts
                },
                None,
            )
            .unwrap_or_else(|e| panic!("crash after {crash_after} ops, seed {seed}: {e}"));
            let got = report.committed.map(|c| c.index);
            assert!(
                got == Some(old) || got == Some(new),
                "crash after {crash_after}, seed {seed}: {got:?}"
            );
            reached_new |= got == Some(new);
        }
    }
    assert!(reached_new, "no crash point kept the new value");
}
