//! Autolock on a manager: reacting to the cluster object's encryption settings.
//!
//! The cluster object holds the truth: `spec.encryption.auto_lock_managers` and the current unlock
//! key, `unlock_keys[0]` (32 raw bytes, as SwarmKit stores it; a `SWMKEY-1-...` text is accepted
//! too). `docker swarm update --autolock` and `docker swarm unlock-key --rotate` change that object;
//! this watcher re-wraps the manager's keys to match, without downtime:
//! autolock on (or a new key) => [`RaftNode::set_unlock_key`]; off => [`RaftNode::disable_autolock`].
//! It also reconciles once at start, which covers a daemon stopped between the commit and the
//! re-wrap (the old key opens it once, then the new one is in force). Keys are never logged.

use swarm_core::objects::cluster::Cluster;
use swarm_core::{Object, ObjectKind, SharedStore, WatchFilter};
use swarm_raft::RaftNode;
use swarm_secrets::{UnlockKey, KEY_LEN};
use tokio::sync::watch;

/// What the keys are wrapped with now, as far as this manager knows.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Wrapped {
    /// Autolock off: the KEK is stored.
    Stored,
    /// Autolock on with this key.
    Key(UnlockKey),
}

/// The unlock key the cluster object asks for, `None` when autolock is off.
pub(crate) fn desired_key(c: &Cluster) -> Option<Option<UnlockKey>> {
    if !c.spec.encryption.auto_lock_managers {
        return None;
    }
    Some(
        c.unlock_keys
            .first()
            .and_then(|k| decode_key(k.key.expose())),
    )
}

/// An unlock key from the cluster object's bytes: 32 raw bytes or `SWMKEY-1-...` text.
pub(crate) fn decode_key(bytes: &[u8]) -> Option<UnlockKey> {
    if let Ok(raw) = <[u8; KEY_LEN]>::try_from(bytes) {
        return Some(UnlockKey::from_bytes(raw));
    }
    UnlockKey::parse_bytes(bytes).ok()
}

/// Brings the raft keys in line with `cluster`; returns what they are wrapped with afterwards.
pub(crate) async fn reconcile(raft: &RaftNode, cluster: &Cluster, current: Wrapped) -> Wrapped {
    match desired_key(cluster) {
        None => {
            if current == Wrapped::Stored {
                return current;
            }
            match raft.disable_autolock().await {
                Ok(()) => {
                    tracing::info!("autolock turned off: the key-encryption key is stored again");
                    Wrapped::Stored
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not turn autolock off");
                    current
                }
            }
        }
        Some(None) => {
            tracing::error!(
                "autolock is on but the cluster holds no valid unlock key; keys left as they are"
            );
            current
        }
        Some(Some(key)) => {
            if current == Wrapped::Key(key.clone()) {
                return current;
            }
            match raft.set_unlock_key(&key).await {
                Ok(()) => {
                    tracing::info!("manager keys re-wrapped with the cluster's unlock key");
                    Wrapped::Key(key)
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not re-wrap the manager keys with the new unlock key");
                    current
                }
            }
        }
    }
}

/// The newest cluster object among `events`.
fn latest_cluster(events: Vec<swarm_core::Event>) -> Option<std::sync::Arc<Cluster>> {
    events.into_iter().rev().find_map(|e| match e.object() {
        Some(Object::Cluster(c)) => Some(c.clone()),
        _ => None,
    })
}

/// Watches the cluster object and re-wraps the keys on each change, until `stop` is set.
pub(crate) async fn watch_cluster(
    raft: RaftNode,
    store: SharedStore,
    mut current: Wrapped,
    mut stop: watch::Receiver<bool>,
) {
    let (cluster, mut watcher) = store
        .view_and_watch(WatchFilter::kinds(&[ObjectKind::Cluster]), |s| {
            s.cluster().cloned()
        });
    if let Some(c) = cluster {
        current = reconcile(&raft, &c, current).await;
    }
    loop {
        let events = tokio::select! {
            biased;
            e = watcher.recv_many() => Some(e),
            _ = stop.wait_for(|s| *s) => None,
        };
        let Some(events) = events else {
            // Finish a re-wrap the cluster already asks for, so that a restart right after
            // `docker swarm unlock-key --rotate` needs the new key, not the old one once more.
            if let Some(c) = watcher.drain().ok().and_then(latest_cluster) {
                reconcile(&raft, &c, current).await;
            }
            return;
        };
        let latest = match events {
            Ok(events) => latest_cluster(events),
            Err(_) => {
                let (c, w) = store
                    .view_and_watch(WatchFilter::kinds(&[ObjectKind::Cluster]), |s| {
                        s.cluster().cloned()
                    });
                watcher = w;
                c
            }
        };
        if let Some(c) = latest {
            current = reconcile(&raft, &c, current).await;
        }
    }
}
