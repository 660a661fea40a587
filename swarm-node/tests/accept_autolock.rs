//! Acceptance: autolock through the real `docker` CLI against the real `swarm-node` binary,
//! restarted on its data directory as an operator restarts it.
//!
//! Proves that `docker swarm init --autolock` prints an unlock key that `swarm unlock-key -q`
//! repeats; that after a restart every swarm command fails with Docker's "Swarm is encrypted and
//! needs to be unlocked" error and the node reports `locked`; that a wrong key is refused and the
//! right one (given on stdin, as `docker swarm unlock` reads it) restores the swarm and its
//! services; that `swarm unlock-key --rotate` gives a new key which alone unlocks after the very
//! next restart (no wait in between: the daemon finishes re-wrapping its keys before it exits);
//! and that `swarm update --autolock=false` lets the node restart unlocked.

mod accept_support;

use accept_support::{Node, Runtime};

const LOCKED: &str = "Error response from daemon: Swarm is encrypted and needs to be unlocked before it can be used. Please use \"docker swarm unlock\" to unlock it.";

fn key_in(text: &str) -> String {
    text.split_whitespace()
        .find(|w| w.starts_with("SWMKEY-1-"))
        .unwrap_or_else(|| panic!("no unlock key in {text:?}"))
        .to_string()
}

async fn assert_locked(node: &Node) {
    assert_eq!(
        node.ok(&["info", "--format", "{{.Swarm.LocalNodeState}}"])
            .await,
        "locked"
    );
    for args in [
        &["service", "ls"][..],
        &["node", "ls"],
        &["secret", "ls"],
        &["swarm", "unlock-key"],
    ] {
        let err = node.fails(args).await;
        assert!(err.contains(LOCKED), "docker {args:?}: {err}");
    }
}

async fn unlock(node: &Node, key: &str) {
    node.ok_stdin(&["swarm", "unlock"], format!("{key}\n").as_bytes())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autolock_restart_unlock_and_rotation() {
    let Some(mut node) = Node::start(Runtime::Process, false).await else {
        return;
    };
    assert_eq!(
        node.ok(&["info", "--format", "{{.Swarm.LocalNodeState}}"])
            .await,
        "inactive"
    );
    let out = node.ok(&["swarm", "init", "--autolock"]).await;
    assert!(out.contains("Swarm initialized"), "{out}");
    let key1 = key_in(&out);
    assert_eq!(node.ok(&["swarm", "unlock-key", "-q"]).await, key1);
    assert_eq!(
        node.ok(&[
            "info",
            "--format",
            "{{.Swarm.Cluster.Spec.EncryptionConfig.AutoLockManagers}}"
        ])
        .await,
        "true"
    );
    // Tasks stopped by a restart are replaced after the restart delay (default 5 s).
    node.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "keep",
        "--restart-delay",
        "100ms",
        "busybox",
        "sleep",
        "1000",
    ])
    .await;
    node.wait_replicas("keep", "1/1").await;

    node.restart().await;
    assert_locked(&node).await;
    let err = node
        .docker_stdin(
            &["swarm", "unlock"],
            Some(b"SWMKEY-1-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"),
        )
        .await;
    assert_ne!(err.code, 0);
    assert!(err.stderr.contains("invalid key"), "{}", err.stderr);
    let err = node
        .docker_stdin(&["swarm", "unlock"], Some(b"nonsense\n"))
        .await;
    assert_ne!(err.code, 0);
    assert!(err.stderr.contains("SWMKEY-1-"), "{}", err.stderr);
    assert_locked(&node).await;
    unlock(&node, &key1).await;
    assert_eq!(
        node.ok(&["info", "--format", "{{.Swarm.LocalNodeState}}"])
            .await,
        "active"
    );
    node.wait_replicas("keep", "1/1").await;
    let err = node
        .docker_stdin(&["swarm", "unlock"], Some(key1.as_bytes()))
        .await;
    assert!(err.stderr.contains("not locked"), "{}", err.stderr);

    // Rotation: the new key, and only it, unlocks after the next restart.
    let out = node.ok(&["swarm", "unlock-key", "--rotate"]).await;
    assert!(
        out.contains("Successfully rotated manager unlock key"),
        "{out}"
    );
    let key2 = key_in(&out);
    assert_ne!(key2, key1);
    assert_eq!(node.ok(&["swarm", "unlock-key", "-q"]).await, key2);
    node.restart().await;
    assert_locked(&node).await;
    let err = node
        .docker_stdin(&["swarm", "unlock"], Some(format!("{key1}\n").as_bytes()))
        .await;
    assert_ne!(err.code, 0, "the old key still unlocks");
    assert!(err.stderr.contains("invalid key"), "{}", err.stderr);
    unlock(&node, &key2).await;
    node.wait_replicas("keep", "1/1").await;

    // Autolock off: the next start needs no key.
    node.ok(&["swarm", "update", "--autolock=false"]).await;
    node.restart().await;
    assert_eq!(
        node.ok(&["info", "--format", "{{.Swarm.LocalNodeState}}"])
            .await,
        "active"
    );
    node.wait_replicas("keep", "1/1").await;
    let err = node.fails(&["swarm", "unlock-key"]).await;
    assert!(err.contains("no unlock key is set"), "{err}");
}
