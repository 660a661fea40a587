//! Helpers shared by the daemon tests: configurations with cheap key stretching, services created
//! through `swarm_core::update` on the Backend's `ClusterAccess`, and waits on store conditions
//! (woken by store events, bounded by a timeout; never fixed sleeps).
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use swarm_core::objects::service::RestartPolicy;
use swarm_core::{Id, Service, ServiceMode, SharedStore, Store, Task, TaskState, WatchFilter};
use swarm_node::backend::{Backend, ClusterAccess};
use swarm_node::config::{DaemonConfig, RuntimeKind};
use swarm_node::daemon::Daemon;
use swarm_secrets::KdfParams;

/// Generous bound for every wait (debug builds on a busy machine).
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A daemon configuration for tests: cheap argon2, fixed hostname.
pub fn config(dir: &Path, runtime: RuntimeKind) -> DaemonConfig {
    let mut c = DaemonConfig::new(dir);
    c.runtime = runtime;
    c.kdf = KdfParams::new(64, 1, 1).expect("valid test KDF parameters");
    c.hostname = Some("test-host".into());
    c
}

/// Starts a daemon on the sim runtime.
pub async fn start_sim(dir: &Path) -> Arc<Daemon> {
    Daemon::start(config(dir, RuntimeKind::Sim))
        .await
        .expect("daemon starts")
}

/// The cluster access of an active daemon.
pub fn access(d: &Daemon) -> ClusterAccess {
    d.cluster().expect("the swarm is active")
}

/// A replicated service running `command`, restarted after `delay` on any exit.
pub fn service(id: u128, name: &str, replicas: u64, command: &[&str]) -> Service {
    let mut s = swarm_core::testing::service(id, name, replicas);
    s.spec.task.container.command = command.iter().map(|c| c.to_string()).collect();
    s.spec.task.restart = RestartPolicy {
        delay: Duration::from_millis(100),
        ..RestartPolicy::default()
    };
    s
}

/// Creates `s` through the proposer.
pub async fn create(a: &ClusterAccess, s: Service) -> Id {
    let id = s.id;
    swarm_core::update(&a.store, a.proposer.as_ref(), |tx| tx.create(s))
        .await
        .expect("service created");
    id
}

/// Sets the replica count of service `id`.
pub async fn scale(a: &ClusterAccess, id: Id, replicas: u64) {
    swarm_core::update(&a.store, a.proposer.as_ref(), |tx| {
        let s = tx.get::<Service>(&id).expect("service exists");
        let mut s = (*s).clone();
        s.spec.mode = ServiceMode::Replicated { replicas };
        tx.update(s)
    })
    .await
    .expect("service scaled");
}

/// Tasks of `service` running and desired running.
pub fn running(s: &Store, service: &Id) -> usize {
    s.tasks_by_service(service)
        .filter(|t| t.status.state == TaskState::Running && t.desired_state == TaskState::Running)
        .count()
}

/// Tasks of `service` whose desired state is still running (or earlier).
pub fn desired_running(s: &Store, service: &Id) -> usize {
    s.tasks_by_service(service)
        .filter(|t| t.desired_state <= TaskState::Running)
        .count()
}

/// Tasks of `service`, in any state.
pub fn tasks(s: &Store, service: &Id) -> Vec<Arc<Task>> {
    s.tasks_by_service(service).cloned().collect()
}

/// Waits until `pred` holds on the store, re-checking on every store event; false on timeout.
pub async fn wait_store(store: &SharedStore, mut pred: impl FnMut(&Store) -> bool) -> bool {
    let watcher = store.watch(WatchFilter::all());
    let wait = async {
        loop {
            if store.view(&mut pred) {
                return;
            }
            if watcher.recv_many().await.is_err() {
                return;
            }
        }
    };
    tokio::time::timeout(TIMEOUT, wait).await.is_ok() && store.view(pred)
}

/// Waits until exactly `n` replicas of `service` run and no other task is desired running.
pub async fn converged(store: &SharedStore, service: Id, n: usize) -> bool {
    wait_store(store, |s| {
        running(s, &service) == n && desired_running(s, &service) == n
    })
    .await
}

/// Polls an async condition every 20 ms until it holds or [`TIMEOUT`] passes (for state that has
/// no event to wait on, such as key files).
pub async fn poll_until<F, Fut>(mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
