//! The log is trusted only when it is whole: every damaged byte and every truncation of a real log
//! either refuses the start naming the file and offset, or is a torn tail that loses nothing
//! committed; missing files refuse the start and change nothing; files are owner-only.
//! (Full disks: `disk_full.rs`.)

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use swarm_core::testing::secret;
use swarm_core::{Proposer, Secret, SharedStore, StoreAction};
use swarm_raft::testing::{fast_config, TestCluster};
use swarm_raft::wal::committed;
use swarm_raft::wal::frame::{scan_segment, ScanEnd};
use swarm_raft::{RaftConfig, RaftNode, Router, StartError, StartOptions, StorageFault};

fn create(n: u128) -> Vec<StoreAction> {
    vec![StoreAction::Create(
        secret(n, &format!("secret-{n}"), b"payload").into(),
    )]
}

/// Every file under `dir` with its bytes (a byte-for-byte picture of a data directory).
fn snapshot_dir(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(snapshot_dir(&p));
        } else {
            out.insert(p.clone(), fs::read(&p).unwrap());
        }
    }
    out
}

fn restore_dir(dir: &Path, files: &BTreeMap<PathBuf, Vec<u8>>, from: &Path) {
    let _ = fs::remove_dir_all(dir);
    for (p, bytes) in files {
        let to = dir.join(p.strip_prefix(from).unwrap());
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::write(to, bytes).unwrap();
    }
}

/// A single manager that committed `n` creates, stopped. Returns the cluster (owning the data
/// directory) and the acknowledged indexes.
async fn small_log(n: u128) -> (TestCluster, Vec<u64>) {
    small_log_with(n, fast_config()).await
}

async fn small_log_with(n: u128, config: RaftConfig) -> (TestCluster, Vec<u64>) {
    let mut c = TestCluster::new(1, config).await;
    let mut acked = Vec::new();
    for i in 0..n {
        acked.push(c.node(1).propose(create(i)).await.unwrap());
    }
    c.stop(1).await;
    (c, acked)
}

/// Starts a node on `dir` alone (no peers), as a restart would.
async fn start_at(dir: &Path) -> Result<RaftNode, StartError> {
    start_with(dir, fast_config()).await
}

async fn start_with(dir: &Path, raft: RaftConfig) -> Result<RaftNode, StartError> {
    let mut config = swarm_raft::NodeConfig::new(1, "node-1".to_string(), dir);
    config.raft = raft;
    config.kdf = swarm_raft::testing::test_kdf();
    let router = Router::new();
    RaftNode::start(
        config,
        SharedStore::default(),
        router.endpoint(1),
        StartOptions::default(),
    )
    .await
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    swarm_raft::testing::wal_segment_files(dir)
}

/// What a start on a damaged copy must do: refuse naming the damaged file and a byte offset, or
/// start with every acknowledged create applied (a repaired torn tail).
async fn check_start(
    config: &RaftConfig,
    dir: &Path,
    damaged: &Path,
    acked: usize,
    must_refuse: bool,
    case: &str,
) {
    match start_with(dir, config.clone()).await {
        Ok(node) => {
            assert!(
                !must_refuse,
                "{case}: a damaged complete record was accepted"
            );
            let have = node.store().view(|s| s.count::<Secret>());
            node.shutdown().await;
            assert!(
                have >= acked,
                "{case}: started with {have} of {acked} acknowledged creates: a silent loss"
            );
        }
        Err(StartError::Storage(fault)) => {
            let msg = fault.to_string();
            let named = match &fault {
                StorageFault::Corrupt { file, .. } | StorageFault::Tampered { file, .. } => {
                    file == damaged
                }
                StorageFault::Missing { path, what } => {
                    path == damaged && what.contains("byte") || what.contains("was committed")
                }
                _ => false,
            };
            assert!(
                named,
                "{case}: refusal does not name {}: {msg}",
                damaged.display()
            );
            assert!(
                msg.contains("byte") || msg.contains("index"),
                "{case}: {msg}"
            );
        }
        Err(other) => panic!("{case}: unexpected start error {other}"),
    }
}

/// Property: no damage to a small real log is silently accepted. Setup: one manager commits 8
/// creates (each acknowledged after commit and apply), stops; then for every byte of every WAL
/// segment (flipped) and every truncation length, a fresh copy of the data directory is started
/// and must refuse naming the file (and offset), or recover a torn tail keeping every
/// acknowledged create. Without preallocation (the file ends at its last record).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flipped_byte_and_every_truncation_refuses_or_loses_nothing() {
    let config = RaftConfig {
        wal_prealloc_bytes: 0,
        ..fast_config()
    };
    every_flipped_byte_and_every_truncation(config).await;
}

/// The same property with the WAL's preallocated space after the last record (1 KiB chunks here):
/// a flipped byte inside a record must refuse the start; one in the zeros after the records is
/// what a write that never reached the disk leaves there, so the start may go on, but never
/// without an acknowledged create.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_preallocated_space_every_flipped_byte_and_truncation_refuses_or_loses_nothing() {
    let config = RaftConfig {
        wal_prealloc_bytes: 1024,
        ..fast_config()
    };
    every_flipped_byte_and_every_truncation(config).await;
}

async fn every_flipped_byte_and_every_truncation(config: RaftConfig) {
    let (c, acked) = small_log_with(8, config.clone()).await;
    let src = c.data_dir(1);
    let saved = committed::decode(&fs::read(src.join("wal").join("committed")).unwrap())
        .unwrap()
        .expect("a committed index was saved");
    assert!(
        saved.index >= *acked.last().unwrap(),
        "committed index {} behind acknowledged {:?}",
        saved.index,
        acked.last()
    );
    let original = snapshot_dir(&src);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("node");
    let mut checked = 0;
    for seg in segment_files(&src) {
        let bytes = original[&seg].clone();
        let target = dir.join(seg.strip_prefix(&src).unwrap());
        // Where the records end: preallocated zeros may follow.
        let records_end = match scan_segment(&bytes).unwrap().end {
            ScanEnd::Clean => bytes.len(),
            ScanEnd::Preallocated { offset } => offset as usize,
            other => panic!("the stopped node's log does not end cleanly: {other:?}"),
        };
        let preallocated = config.wal_prealloc_bytes > 0;
        assert_eq!(
            records_end < bytes.len(),
            preallocated,
            "preallocated space after the records only when asked for"
        );
        for at in 0..bytes.len() {
            restore_dir(&dir, &original, &src);
            let mut b = bytes.clone();
            b[at] ^= 0x5A;
            fs::write(&target, &b).unwrap();
            // No flipped byte of a record is a torn tail: every one must refuse.
            check_start(
                &config,
                &dir,
                &target,
                acked.len(),
                at < records_end,
                &format!("byte {at} flipped"),
            )
            .await;
            checked += 1;
        }
        for len in 0..bytes.len() {
            restore_dir(&dir, &original, &src);
            fs::write(&target, &bytes[..len]).unwrap();
            check_start(
                &config,
                &dir,
                &target,
                acked.len(),
                false,
                &format!("cut to {len} bytes"),
            )
            .await;
            checked += 1;
        }
    }
    assert!(
        checked > 500,
        "only {checked} cases: the log is not what was expected"
    );
}

/// Property: a data directory missing part of its state refuses to start, saying what is missing,
/// and is left byte-for-byte as it was. Setup: one manager, 5 creates, stopped; each case removes
/// or empties something from a fresh copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_state_refuses_and_changes_nothing() {
    let (c, _) = small_log(5).await;
    let src = c.data_dir(1);
    let original = snapshot_dir(&src);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("node");
    type Damage = fn(&Path);
    let cases: [(&str, Damage, &str); 5] = [
        (
            "segments deleted",
            |d| {
                for s in segment_files(d) {
                    fs::remove_file(s).unwrap();
                }
            },
            "was committed",
        ),
        (
            "segments emptied",
            |d| {
                for s in segment_files(d) {
                    fs::write(s, b"").unwrap();
                }
            },
            "was committed",
        ),
        (
            "wal directory deleted",
            |d| fs::remove_dir_all(d.join("wal")).unwrap(),
            "committed-index file missing",
        ),
        (
            "key file deleted",
            |d| fs::remove_file(d.join("keys")).unwrap(),
            "key file missing",
        ),
        (
            "committed file deleted",
            |d| fs::remove_file(d.join("wal").join("committed")).unwrap(),
            "committed-index file missing",
        ),
    ];
    for (case, damage, expect) in cases {
        restore_dir(&dir, &original, &src);
        damage(&dir);
        let before = snapshot_dir(&dir);
        match start_at(&dir).await {
            Err(StartError::Storage(f @ StorageFault::Missing { .. })) => {
                assert!(f.to_string().contains(expect), "{case}: {f}")
            }
            Err(e) => panic!("{case}: expected a missing-state refusal, got {e}"),
            Ok(n) => {
                n.shutdown().await;
                panic!("{case}: started");
            }
        }
        assert!(
            snapshot_dir(&dir) == before,
            "{case}: the refused start changed the data directory"
        );
    }
}

fn modes(dir: &Path, out: &mut Vec<(PathBuf, u32)>) {
    out.push((
        dir.to_path_buf(),
        fs::metadata(dir).unwrap().permissions().mode() & 0o7777,
    ));
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            modes(&p, out);
        } else {
            out.push((
                p.clone(),
                fs::metadata(&p).unwrap().permissions().mode() & 0o7777,
            ));
        }
    }
}

/// Property: everything a manager keeps is owner-only: files 0600, directories 0700, including a
/// data directory and files that existed with wider modes. Setup: a pre-created 0755 data
/// directory; a node starts in it and commits; then files are widened to 0644 and directories to
/// 0755 and the node restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_0600_and_directories_0700_even_preexisting_ones() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("node");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let check = |dir: &Path| {
        let mut m = Vec::new();
        modes(dir, &mut m);
        for (p, mode) in m {
            let want = if p.is_dir() { 0o700 } else { 0o600 };
            assert_eq!(mode, want, "{} has mode {mode:o}", p.display());
        }
    };
    let node = start_at(&dir).await.unwrap();
    node.bootstrap().await.unwrap();
    node.propose(create(1)).await.unwrap();
    node.shutdown().await;
    drop(node);
    check(&dir);
    let mut m = Vec::new();
    modes(&dir, &mut m);
    for (p, _) in m {
        let wide = if p.is_dir() { 0o755 } else { 0o644 };
        fs::set_permissions(&p, fs::Permissions::from_mode(wide)).unwrap();
    }
    let node = start_at(&dir).await.unwrap();
    check(&dir);
    node.shutdown().await;
}
