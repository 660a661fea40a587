//! Autolock across restarts: a daemon whose swarm was initialised with `--autolock` starts locked,
//! refuses wrong and malformed keys without damage, unlocks with the right key; rotating the key
//! (the control layer rewrites `unlock_keys[0]`) makes the new key the one needed at the next
//! restart; turning autolock off makes the next start unlocked.

mod daemon_support;

use std::sync::Arc;

use daemon_support::*;
use swarm_core::objects::cluster::{Cluster, EncryptionKey};
use swarm_core::{SecretData, Service};
use swarm_node::backend::{Backend, BackendError, ClusterAccess, InitRequest, SwarmState};
use swarm_node::daemon::Daemon;
use swarm_secrets::UnlockKey;

/// The cluster's current unlock key as `SWMKEY-1-...` text.
fn unlock_key_text(a: &ClusterAccess) -> String {
    let raw = a.store.view(|s| {
        s.cluster()
            .and_then(|c| c.unlock_keys.first().map(|k| k.key.expose().to_vec()))
            .expect("an unlock key")
    });
    let bytes: [u8; 32] = raw.as_slice().try_into().expect("32 raw bytes");
    UnlockKey::from_bytes(bytes).expose_text().to_string()
}

/// Replaces the cluster object through the proposer (what `docker swarm update` does).
async fn edit_cluster(a: &ClusterAccess, f: impl FnOnce(&mut Cluster)) {
    swarm_core::update(&a.store, a.proposer.as_ref(), |tx| {
        let c = tx.committed().cluster().cloned().expect("cluster object");
        let mut c = (*c).clone();
        f(&mut c);
        tx.update(c)
    })
    .await
    .expect("cluster updated");
}

/// The id of the key-encryption key the manager's keys are wrapped with now.
async fn kek(d: &Daemon) -> String {
    d.with_manager(|m, _| format!("{:?}", m.raft().keys().status().kek))
        .await
        .expect("active")
}

async fn autolocked(d: &Daemon) -> bool {
    d.with_manager(|m, _| m.raft().keys().status().autolock)
        .await
        .expect("active")
}

async fn restart(d: Arc<Daemon>, dir: &std::path::Path) -> Arc<Daemon> {
    d.shutdown().await;
    drop(d);
    start_sim(dir).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn locked_after_restart_until_the_right_key_and_rotation_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = start_sim(dir.path()).await;
    d.init(InitRequest {
        autolock: true,
        ..InitRequest::default()
    })
    .await
    .unwrap();
    let a = access(&d);
    assert!(autolocked(&d).await);
    let key1 = unlock_key_text(&a);
    let web = create(&a, service(1, "web", 2, &["sleep", "3600"])).await;
    assert!(converged(&a.store, web, 2).await);

    // Restart: locked, every swarm call refused with Docker's message.
    let d = restart(d, dir.path()).await;
    assert_eq!(d.swarm_state(), SwarmState::Locked);
    let err = d.cluster().unwrap_err();
    assert_eq!(err, BackendError::Locked);
    assert!(err
        .to_string()
        .starts_with("Swarm is encrypted and needs to be unlocked"));
    assert!(d.info().node_id.is_some());
    assert!(matches!(
        d.unlock("not a key").await,
        Err(BackendError::MalformedUnlockKey(_))
    ));
    let wrong = UnlockKey::from_bytes([7; 32]).expose_text().to_string();
    assert_eq!(
        d.unlock(&wrong).await.unwrap_err(),
        BackendError::InvalidUnlockKey
    );
    assert_eq!(d.swarm_state(), SwarmState::Locked);
    d.unlock(&key1).await.expect("the right key unlocks");
    assert_eq!(d.swarm_state(), SwarmState::Active);
    assert_eq!(d.unlock(&key1).await.unwrap_err(), BackendError::NotLocked);
    let a = access(&d);
    assert_eq!(a.store.view(|s| s.count::<Service>()), 1);
    assert!(
        converged(&a.store, web, 2).await,
        "services run again once unlocked"
    );

    // Rotate: the control layer writes a new key; the manager re-wraps at once.
    let before = kek(&d).await;
    let key2 = UnlockKey::from_bytes([42; 32]).expose_text().to_string();
    edit_cluster(&a, |c| {
        c.unlock_keys = vec![EncryptionKey {
            subsystem: "manager".into(),
            key: SecretData::new(vec![42; 32]),
            lamport_time: 1,
        }]
    })
    .await;
    assert!(
        poll_until(|| async { kek(&d).await != before }).await,
        "keys re-wrapped"
    );

    let d = restart(d, dir.path()).await;
    assert_eq!(d.swarm_state(), SwarmState::Locked);
    assert_eq!(
        d.unlock(&key1).await.unwrap_err(),
        BackendError::InvalidUnlockKey
    );
    d.unlock(&key2).await.expect("the rotated key unlocks");

    // Autolock off: the next start is unlocked.
    let a = access(&d);
    edit_cluster(&a, |c| c.spec.encryption.auto_lock_managers = false).await;
    assert!(
        poll_until(|| async { !autolocked(&d).await }).await,
        "autolock turned off"
    );
    let d = restart(d, dir.path()).await;
    assert_eq!(d.swarm_state(), SwarmState::Active);
    // A locked swarm can still be left with --force.
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_locked_swarm_can_be_left_with_force() {
    let dir = tempfile::tempdir().unwrap();
    let d = start_sim(dir.path()).await;
    d.init(InitRequest {
        autolock: true,
        ..InitRequest::default()
    })
    .await
    .unwrap();
    let d = restart(d, dir.path()).await;
    assert_eq!(d.swarm_state(), SwarmState::Locked);
    // Docker: "Swarm is encrypted and locked. Please unlock it first or use `--force` ..."
    assert_eq!(d.leave(false).await.unwrap_err(), BackendError::LeaveLocked);
    d.leave(true).await.unwrap();
    assert_eq!(d.swarm_state(), SwarmState::Inactive);
    d.init(InitRequest::default()).await.unwrap();
    assert_eq!(d.swarm_state(), SwarmState::Active);
    d.shutdown().await;
}
