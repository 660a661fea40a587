//! `node.json` is trusted only when it matches the raft state: a missing, damaged or edited identity
//! refuses the start and leaves the data directory byte for byte as it was (nothing is deleted);
//! `--init` over a swarm's raft state refuses and names `--force-new-cluster`; only an interrupted
//! init or leave (its marker present) lets a start clear a raft directory.

mod daemon_support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use daemon_support::*;
use swarm_core::Id;
use swarm_node::backend::{Backend, SwarmState};
use swarm_node::config::RuntimeKind;
use swarm_node::daemon::{Daemon, DaemonError};
use swarm_node::manager::NodeIdentity;

fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.insert(p.clone(), fs::read(&p).unwrap());
        }
    }
    out
}

/// Whether `p` is the WAL's committed-index file and only moved forward. The file lags the log by
/// up to one group commit (it is a lower bound that guards against a shortened log), and a start
/// brings it up to the commit index the durable log already holds, even a start refused right
/// after raft opened: that records nothing new, so it is the one change a refused start may make.
fn committed_caught_up(
    p: &Path,
    before: &BTreeMap<PathBuf, Vec<u8>>,
    after: &BTreeMap<PathBuf, Vec<u8>>,
) -> bool {
    use swarm_raft::wal::committed::{decode, COMMITTED_FILE};
    if p.file_name().and_then(|n| n.to_str()) != Some(COMMITTED_FILE) {
        return false;
    }
    let read = |m: &BTreeMap<PathBuf, Vec<u8>>| m.get(p).and_then(|b| decode(b).ok());
    match (read(before), read(after)) {
        (Some(old), Some(new)) => new >= old,
        _ => false,
    }
}

fn restore(dir: &Path, saved: &BTreeMap<PathBuf, Vec<u8>>) {
    fs::remove_dir_all(dir).unwrap();
    for (p, b) in saved {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, b).unwrap();
    }
}

async fn start(dir: &Path, init: bool) -> Result<std::sync::Arc<Daemon>, DaemonError> {
    let mut c = config(dir, RuntimeKind::Sim);
    c.init = init;
    Daemon::start(c).await
}

/// A data directory with an initialised single-manager swarm (daemon stopped).
async fn initialised(dir: &Path) -> NodeIdentity {
    let d = start(dir, true).await.expect("init");
    assert_eq!(d.swarm_state(), SwarmState::Active);
    d.shutdown().await;
    drop(d);
    NodeIdentity::load(dir).unwrap().expect("node.json written")
}

/// Property: each way of losing or altering node.json refuses the start with a message saying
/// what is wrong, and the refused start changes no file. Setup: one initialised data directory,
/// restored before every case; edits through `NodeIdentity::store` keep a valid checksum, so only
/// the cross-check against raft and the store can catch them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn missing_or_altered_identity_refuses_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let id = initialised(&dir).await;
    let saved = files(&dir);
    let edited = |f: fn(&mut NodeIdentity)| {
        let mut i = id.clone();
        f(&mut i);
        i
    };
    type Damage = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Damage, bool, &str)> = vec![
        (
            "node.json missing",
            Box::new(|d| NodeIdentity::remove(d).unwrap()),
            false,
            "is missing",
        ),
        (
            "node.json missing, --init",
            Box::new(|d| NodeIdentity::remove(d).unwrap()),
            true,
            "--force-new-cluster",
        ),
        (
            "raft directory deleted",
            Box::new(|d| fs::remove_dir_all(d.join("raft")).unwrap()),
            false,
            "raft state is missing",
        ),
        (
            "node id edited",
            {
                let i = edited(|i| i.node_id = Id::from_u128(12345));
                Box::new(move |d| i.store(d).unwrap())
            },
            false,
            "does not hold",
        ),
        (
            "cluster id edited",
            {
                let i = edited(|i| i.cluster_id = Id::from_u128(54321));
                Box::new(move |d| i.store(d).unwrap())
            },
            false,
            "names cluster",
        ),
        (
            "raft id edited",
            {
                let i = edited(|i| i.raft_id = i.raft_id.wrapping_add(1).max(1));
                Box::new(move |d| i.store(d).unwrap())
            },
            false,
            "raft id",
        ),
        (
            "node.json edited by hand",
            Box::new(|d| {
                let p = NodeIdentity::path(d);
                let t = fs::read_to_string(&p).unwrap();
                fs::write(&p, t.replacen("127.0.0.1", "127.0.0.9", 1)).unwrap();
            }),
            false,
            "checksum",
        ),
    ];
    for (case, damage, init, expect) in cases {
        restore(&dir, &saved);
        damage(&dir);
        let before = files(&dir);
        match start(&dir, init).await {
            Ok(d) => {
                d.shutdown().await;
                panic!("{case}: the daemon started");
            }
            Err(e) => assert!(e.to_string().contains(expect), "{case}: {e}"),
        }
        let after = files(&dir);
        let changed: Vec<String> = before
            .keys()
            .chain(after.keys())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .filter(|p| before.get(*p) != after.get(*p))
            .filter(|p| !committed_caught_up(p, &before, &after))
            .map(|p| {
                let len = |m: &BTreeMap<PathBuf, Vec<u8>>| m.get(p).map(Vec::len);
                format!(
                    "{} ({:?} -> {:?} bytes)",
                    p.display(),
                    len(&before),
                    len(&after)
                )
            })
            .collect();
        assert!(
            changed.is_empty(),
            "{case}: the refused start changed files: {changed:?}"
        );
    }
    // And the untouched directory still starts.
    restore(&dir, &saved);
    let d = start(&dir, false).await.expect("restart");
    assert_eq!(d.swarm_state(), SwarmState::Active);
    d.shutdown().await;
}

/// Property: a raft directory left by an interrupted init or leave (its marker present, no
/// node.json) is cleared at start and the node is simply not in a swarm. Setup: an initialised
/// directory whose node.json is removed and whose marker is written, as a crash mid-leave leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_interrupted_init_or_leave_is_cleared() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    initialised(&dir).await;
    NodeIdentity::remove(&dir).unwrap();
    fs::write(
        dir.join(swarm_node::manager::identity::TRANSITION_FILE),
        b"x",
    )
    .unwrap();
    let d = start(&dir, false).await.expect("start");
    assert_eq!(d.swarm_state(), SwarmState::Inactive);
    assert!(!dir.join("raft").exists());
    assert!(!dir
        .join(swarm_node::manager::identity::TRANSITION_FILE)
        .exists());
    d.shutdown().await;
}

/// Property: the data directory and everything raft keeps in it are owner-only, including a data
/// directory that existed with mode 0755.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_preexisting_wide_data_dir_is_tightened() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    initialised(&dir).await;
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&NodeIdentity::path(&dir)), 0o600);
    for p in files(&dir.join("raft")).keys() {
        assert_eq!(mode(p), 0o600, "{}", p.display());
        assert_eq!(mode(p.parent().unwrap()), 0o700, "{}", p.display());
    }
}
