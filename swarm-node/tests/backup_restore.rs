//! Offline backup and restore (`swarm_node::backup`, the `swarm-node backup|restore`
//! subcommands): a swarm with a service, a secret and a config is stopped, backed up, restored into
//! another data directory (another host) and started there with every object, id and version;
//! the round trip is byte-exact; damaged backups are refused naming the file, leaving the target
//! untouched; a running daemon's directory is refused; an autolocked backup starts locked and
//! unlocks with the key; existing state is only replaced with `force`, and then moved aside.

mod daemon_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use daemon_support::*;
use serde_json::{json, Value};
use swarm_node::backend::{Backend, SwarmState};
use swarm_node::backup::{backup, restore, BackupError, MANIFEST_FILE};
use swarm_node::daemon::Daemon;
use swarm_node::testing::{HttpClient, TestServer};

async fn serve(d: &Arc<Daemon>) -> (TestServer, HttpClient) {
    let server = TestServer::start(d.clone() as Arc<dyn Backend>)
        .await
        .expect("API serves");
    let client = server.client().await.expect("API connects");
    (server, client)
}

async fn init(c: &mut HttpClient, autolock: bool) {
    let r = c
        .post(
            "/v1.44/swarm/init",
            &json!({"ListenAddr": "0.0.0.0:2377", "AutoLockManagers": autolock}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Creates a secret or config (`kind`: "secrets" or "configs") with base64 `data`.
async fn create_blob(c: &mut HttpClient, kind: &str, name: &str, data: &str) {
    let r = c
        .post(
            &format!("/v1.44/{kind}/create"),
            &json!({"Name": name, "Data": data}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
}

/// A service, a secret and a config; returns the service's id.
async fn populate(c: &mut HttpClient) -> swarm_core::Id {
    create_blob(c, "secrets", "db-pass", "aHVudGVyMg==").await;
    create_blob(c, "configs", "app-conf", "bGlzdGVuIDgwCg==").await;
    let r = c
        .post(
            "/v1.44/services/create",
            &json!({
                "Name": "web",
                "TaskTemplate": {
                    "ContainerSpec": {"Image": "busybox", "Command": ["sleep", "300"]},
                    "RestartPolicy": {"Condition": "any", "Delay": 100_000_000u64},
                },
                "Mode": {"Replicated": {"Replicas": 2}},
            }),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["ID"].as_str().unwrap().parse().unwrap()
}

async fn get(c: &mut HttpClient, path: &str) -> Value {
    let r = c.get(path).await.unwrap();
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.json()
}

/// The cluster's objects as the API shows them: services (id, version, spec, times), secrets and
/// configs (whole), the swarm's id and this node's id.
async fn objects(c: &mut HttpClient) -> Value {
    let services: Vec<Value> = get(c, "/v1.44/services")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            json!({"ID": s["ID"], "Version": s["Version"], "Spec": s["Spec"],
                   "CreatedAt": s["CreatedAt"], "UpdatedAt": s["UpdatedAt"]})
        })
        .collect();
    let swarm = get(c, "/v1.44/swarm").await;
    let info = get(c, "/v1.44/info").await;
    json!({
        "services": services,
        "secrets": get(c, "/v1.44/secrets").await,
        "configs": get(c, "/v1.44/configs").await,
        "swarm": {"ID": swarm["ID"], "CreatedAt": swarm["CreatedAt"]},
        "node": info["Swarm"]["NodeID"],
    })
}

/// Every regular file under `dir`, by relative path, with its content.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                walk(root, &e.path(), out);
            } else if ft.is_file() {
                let rel = e.path().strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, std::fs::read(e.path()).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

async fn stop(d: Arc<Daemon>, server: TestServer) {
    drop(server);
    d.shutdown().await;
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restored_on_another_data_dir_every_object_is_there_and_the_round_trip_is_exact() {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (root.path().join("host-a"), root.path().join("host-b"));
    let (bk1, bk2) = (root.path().join("backup-1"), root.path().join("backup-2"));

    let d = start_sim(&a).await;
    let (server, mut c) = serve(&d).await;
    init(&mut c, false).await;
    let web = populate(&mut c).await;
    assert!(converged(&access(&d).store, web, 2).await);
    let before = objects(&mut c).await;

    // Offline only: refused while the daemon holds the directory, and nothing is written.
    let err = backup(&a, &bk1).unwrap_err();
    assert!(matches!(err, BackupError::InUse { .. }), "{err}");
    assert!(err.to_string().contains("offline"), "{err}");
    assert!(!bk1.exists());
    stop(d, server).await;

    let m1 = backup(&a, &bk1).unwrap();
    assert_eq!(json!(m1.node_id.to_string()), before["node"]);
    assert_eq!(json!(m1.cluster_id.to_string()), before["swarm"]["ID"]);
    assert!(!m1.autolock);
    let listed: Vec<&str> = m1.files.iter().map(|f| f.path.as_str()).collect();
    assert!(
        listed.contains(&"node.json") && listed.contains(&"raft/keys"),
        "{listed:?}"
    );
    assert!(
        !listed
            .iter()
            .any(|p| p.starts_with("volumes") || *p == "daemon.lock"),
        "{listed:?}"
    );
    // Owner-only backup: with autolock off it holds the key-encryption key.
    use std::os::unix::fs::PermissionsExt;
    for (rel, _) in tree(&bk1) {
        let mode = std::fs::metadata(bk1.join(&rel))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{rel}");
    }
    let err = backup(&a, &bk1).unwrap_err();
    assert!(matches!(err, BackupError::OutputExists { .. }), "{err}");

    // Another host: a fresh data directory.
    let report = restore(&bk1, &b, false).unwrap();
    assert!(report.moved_aside.is_none());
    assert_eq!(report.manifest, m1);
    // Byte-exact: a backup of the restored directory equals the first, file by file.
    let m2 = backup(&b, &bk2).unwrap();
    assert_eq!(m2, m1);
    assert_eq!(tree(&bk1), tree(&bk2));
    for f in &m1.files {
        assert_eq!(
            std::fs::read(a.join(&f.path)).unwrap(),
            std::fs::read(b.join(&f.path)).unwrap(),
            "{}",
            f.path
        );
        let mode = std::fs::metadata(b.join(&f.path))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, f.mode & 0o600, "{}", f.path);
    }

    // It starts as the same member with every object, id and version.
    let d = start_sim(&b).await;
    assert_eq!(d.swarm_state(), SwarmState::Active);
    let (server, mut c) = serve(&d).await;
    assert_eq!(objects(&mut c).await, before);
    assert!(converged(&access(&d).store, web, 2).await);
    let err = restore(&bk1, &b, true).unwrap_err();
    assert!(matches!(err, BackupError::InUse { .. }), "{err}");
    // The same lock keeps a second daemon off the directory.
    let second = Daemon::start(config(&b, swarm_node::config::RuntimeKind::Sim)).await;
    assert!(
        second
            .as_ref()
            .is_err_and(|e| e.to_string().contains("is using it")),
        "{second:?}"
    );
    stop(d, server).await;

    // Existing state: refused without force; with it, moved aside, never deleted.
    let node_before = std::fs::read(b.join("node.json")).unwrap();
    let err = restore(&bk1, &b, false).unwrap_err();
    assert!(matches!(err, BackupError::AlreadyInSwarm { .. }), "{err}");
    assert!(err.to_string().contains("--force"), "{err}");
    assert_eq!(std::fs::read(b.join("node.json")).unwrap(), node_before);
    let report = restore(&bk1, &b, true).unwrap();
    let aside = report.moved_aside.expect("old state moved aside");
    assert_eq!(std::fs::read(aside.join("node.json")).unwrap(), node_before);
    assert!(aside.join("raft/keys").is_file());
    assert!(!b.join("restore.partial").exists());
    let d = start_sim(&b).await;
    let (server, mut c) = serve(&d).await;
    assert_eq!(objects(&mut c).await, before);
    stop(d, server).await;
}

/// A fresh swarm with a secret, stopped and backed up into `root/backup`.
async fn backed_up(root: &Path, autolock: bool) -> (PathBuf, Value, Option<String>) {
    let data = root.join("node");
    let d = start_sim(&data).await;
    let (server, mut c) = serve(&d).await;
    init(&mut c, autolock).await;
    let key = if autolock {
        let r = get(&mut c, "/v1.44/swarm/unlockkey").await;
        Some(r["UnlockKey"].as_str().unwrap().to_string())
    } else {
        None
    };
    create_blob(&mut c, "secrets", "db-pass", "aHVudGVyMg==").await;
    let secrets = get(&mut c, "/v1.44/secrets").await;
    stop(d, server).await;
    let bk = root.join("backup");
    let m = backup(&data, &bk).unwrap();
    assert_eq!(m.autolock, autolock);
    (bk, secrets, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn damaged_backups_are_refused_naming_the_file_and_the_target_is_untouched() {
    let root = tempfile::tempdir().unwrap();
    let (bk, _, _) = backed_up(root.path(), false).await;
    let m = swarm_node::backup::verify(&bk).unwrap();
    // The largest raft file (a WAL segment or snapshot): where damage matters most.
    let big = m
        .files
        .iter()
        .filter(|f| f.path.starts_with("raft/") && f.size > 0)
        .max_by_key(|f| f.size)
        .unwrap()
        .path
        .clone();

    // A target that holds state: a refused restore, even with force, leaves it as it was.
    let occupied = root.path().join("occupied");
    restore(&bk, &occupied, false).unwrap();
    let occupied_before = tree(&occupied);

    type Damage = Box<dyn Fn(&Path)>;
    let big2 = big.clone();
    let big3 = big.clone();
    let big4 = big.clone();
    let cases: Vec<(&str, Damage, String)> = vec![
        (
            "flipped byte",
            Box::new(move |bk: &Path| {
                let p = bk.join("files").join(&big2);
                let mut bytes = std::fs::read(&p).unwrap();
                let i = bytes.len() / 2;
                bytes[i] ^= 0x01;
                std::fs::write(&p, bytes).unwrap();
            }),
            format!("files/{big}"),
        ),
        (
            "truncated",
            Box::new(move |bk: &Path| {
                let p = bk.join("files").join(&big3);
                let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
                let len = f.metadata().unwrap().len();
                f.set_len(len - 1).unwrap();
            }),
            format!("files/{big}"),
        ),
        (
            "removed",
            Box::new(move |bk: &Path| std::fs::remove_file(bk.join("files").join(&big4)).unwrap()),
            format!("files/{big}"),
        ),
        (
            "node.json removed",
            Box::new(|bk: &Path| std::fs::remove_file(bk.join("files/node.json")).unwrap()),
            "files/node.json".into(),
        ),
        (
            "unlisted file",
            Box::new(|bk: &Path| std::fs::write(bk.join("files/raft/extra"), b"x").unwrap()),
            "files/raft/extra".into(),
        ),
        (
            "manifest edited",
            Box::new(|bk: &Path| {
                let p = bk.join(MANIFEST_FILE);
                let text = std::fs::read_to_string(&p).unwrap();
                let edited = text.replacen("\"autolock\": false", "\"autolock\": true", 1);
                assert_ne!(text, edited);
                std::fs::write(&p, edited).unwrap();
            }),
            MANIFEST_FILE.into(),
        ),
        (
            "manifest truncated",
            Box::new(|bk: &Path| {
                let p = bk.join(MANIFEST_FILE);
                let bytes = std::fs::read(&p).unwrap();
                std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
            }),
            MANIFEST_FILE.into(),
        ),
        (
            "unknown version",
            Box::new(|bk: &Path| {
                let p = bk.join(MANIFEST_FILE);
                let text = std::fs::read_to_string(&p).unwrap();
                std::fs::write(&p, text.replacen("\"version\": 1", "\"version\": 7", 1)).unwrap();
            }),
            MANIFEST_FILE.into(),
        ),
    ];
    for (i, (what, damage, file)) in cases.iter().enumerate() {
        let copy = root.path().join(format!("damaged-{i}"));
        copy_tree(&bk, &copy);
        damage(&copy);
        let fresh = root.path().join(format!("fresh-{i}"));
        let err = restore(&copy, &fresh, false).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&copy.join(file).display().to_string()),
            "{what}: {text}"
        );
        assert!(!fresh.exists(), "{what}: the target was created");
        let err = restore(&copy, &occupied, true).unwrap_err();
        assert!(
            matches!(
                err,
                BackupError::BadFile { .. }
                    | BackupError::BadManifest { .. }
                    | BackupError::UnknownVersion { .. }
            ),
            "{what}: {err}"
        );
        assert_eq!(tree(&occupied), occupied_before, "{what}: target changed");
    }
    let siblings: Vec<String> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("pre-restore"))
        .collect();
    assert!(siblings.is_empty(), "state moved aside: {siblings:?}");

    // Task data and runtime endpoints stay out of a backup; a symbolic link is refused.
    std::fs::create_dir_all(occupied.join("volumes/v/_data")).unwrap();
    std::fs::write(occupied.join("volumes/v/_data/f"), b"task data").unwrap();
    std::fs::create_dir_all(occupied.join("supervisors")).unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(occupied.join("swarm.sock")).unwrap();
    let m = backup(&occupied, &root.path().join("with-task-data")).unwrap();
    assert_eq!(m.files, swarm_node::backup::verify(&bk).unwrap().files);
    std::os::unix::fs::symlink("/etc/hostname", occupied.join("raft/link")).unwrap();
    let out = root.path().join("with-link");
    let err = backup(&occupied, &out).unwrap_err();
    assert!(matches!(err, BackupError::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("raft/link"), "{err}");
    assert!(!out.exists());

    // Not a backup at all, and a directory with no swarm to back up.
    let err = restore(root.path(), &root.path().join("x"), false).unwrap_err();
    assert!(err.to_string().contains(MANIFEST_FILE), "{err}");
    let empty = root.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = backup(&empty, &root.path().join("y")).unwrap_err();
    assert!(matches!(err, BackupError::NotASwarm { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_autolocked_backup_restores_locked_and_unlocks_with_the_key() {
    let root = tempfile::tempdir().unwrap();
    let (bk, secrets, key) = backed_up(root.path(), true).await;
    let key = key.unwrap();
    // Nothing is decrypted: the unlock key appears nowhere in the backup.
    for (rel, bytes) in tree(&bk) {
        assert!(
            !bytes.windows(key.len()).any(|w| w == key.as_bytes()),
            "{rel} holds the unlock key"
        );
    }
    let other = root.path().join("other-host");
    restore(&bk, &other, false).unwrap();
    let d = start_sim(&other).await;
    assert_eq!(d.swarm_state(), SwarmState::Locked);
    let (server, mut c) = serve(&d).await;
    let r = c.get("/v1.44/secrets").await.unwrap();
    assert!(r.status >= 400, "a locked swarm answers: {}", r.text());
    let r = c
        .post("/v1.44/swarm/unlock", &json!({"UnlockKey": key}))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(d.swarm_state(), SwarmState::Active);
    assert_eq!(get(&mut c, "/v1.44/secrets").await, secrets);
    stop(d, server).await;
}

/// Runs the `swarm-node` binary; returns (success, stdout, stderr).
fn cli(args: &[&std::ffi::OsStr]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_swarm-node"))
        .args(args)
        .output()
        .expect("swarm-node runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_backup_and_restore_subcommands() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("node");
    let d = start_sim(&data).await;
    let (server, mut c) = serve(&d).await;
    init(&mut c, false).await;
    let node = get(&mut c, "/v1.44/info").await["Swarm"]["NodeID"]
        .as_str()
        .unwrap()
        .to_string();
    // Refused while the daemon runs, with a message saying why.
    let out = root.path().join("bk");
    let (ok, _, err) = cli(&[
        "backup".as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
        out.as_os_str(),
    ]);
    assert!(!ok && err.contains("offline"), "{err}");
    stop(d, server).await;

    let (ok, stdout, err) = cli(&[
        "backup".as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
        out.as_os_str(),
    ]);
    assert!(ok, "{err}");
    assert!(stdout.contains(&node), "{stdout}");
    assert!(stdout.contains("autolock is off"), "{stdout}");
    let target = root.path().join("restored");
    let args = [
        "restore".as_ref(),
        "--data-dir".as_ref(),
        target.as_os_str(),
        out.as_os_str(),
    ];
    let (ok, stdout, err) = cli(&args);
    assert!(ok, "{err}");
    assert!(
        stdout.contains(&node) && stdout.contains("--force-new-cluster"),
        "{stdout}"
    );
    let (ok, _, err) = cli(&args);
    assert!(!ok && err.contains("--force"), "{err}");
    let (ok, stdout, err) = cli(&[
        "restore".as_ref(),
        "--force".as_ref(),
        "--data-dir".as_ref(),
        target.as_os_str(),
        out.as_os_str(),
    ]);
    assert!(ok, "{err}");
    assert!(stdout.contains("moved to"), "{stdout}");
    let d = start_sim(&target).await;
    assert_eq!(d.swarm_state(), SwarmState::Active);
    assert_eq!(d.cluster().unwrap().node_id.to_string(), node);
    d.shutdown().await;
}
