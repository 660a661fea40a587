//! The daemon end to end on the sim runtime: init, services converge, scale, restart policy,
//! restart of the daemon on the same data directory, `--init`, leave.

mod daemon_support;

use std::collections::BTreeSet;

use daemon_support::*;
use swarm_core::objects::service::{RestartCondition, RestartPolicy};
use swarm_core::{Node, Service, TaskState};
use swarm_node::backend::{Backend, BackendError, InitRequest, SwarmState};
use swarm_node::config::RuntimeKind;
use swarm_node::daemon::Daemon;

/// `swarm init` makes the node a ready, active manager; a service's replicas all run; scaling up
/// and down converges; a second init is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn init_then_services_converge_and_scale() {
    let dir = tempfile::tempdir().unwrap();
    let d = start_sim(dir.path()).await;
    assert_eq!(d.swarm_state(), SwarmState::Inactive);
    assert_eq!(d.cluster().unwrap_err(), BackendError::NotInSwarm);
    let node_id = d.init(InitRequest::default()).await.unwrap();
    assert_eq!(d.swarm_state(), SwarmState::Active);
    assert_eq!(d.info().node_id, Some(node_id));
    assert_eq!(d.info().runtime, "sim");
    assert_eq!(
        d.init(InitRequest::default()).await.unwrap_err(),
        BackendError::AlreadyInSwarm
    );
    let a = access(&d);
    let (node, cluster) = a
        .store
        .view(|s| (s.get::<Node>(&node_id).cloned(), s.cluster().cloned()));
    let node = node.expect("node object");
    assert!(node.is_schedulable());
    assert_eq!(node.hostname(), "test-host");
    assert_eq!(
        cluster.expect("cluster object").spec.annotations.name,
        "default"
    );

    let web = create(&a, service(1, "web", 5, &["sleep", "3600"])).await;
    assert!(converged(&a.store, web, 5).await, "5 replicas run");
    scale(&a, web, 12).await;
    assert!(converged(&a.store, web, 12).await, "scaled up to 12");
    scale(&a, web, 2).await;
    assert!(converged(&a.store, web, 2).await, "scaled down to 2");
    d.shutdown().await;
}

/// A task that exits non-zero is restarted in its slot per the restart policy, up to
/// `max_attempts` restarts, and not after.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_tasks_are_restarted_per_policy() {
    let dir = tempfile::tempdir().unwrap();
    let d = start_sim(dir.path()).await;
    d.init(InitRequest::default()).await.unwrap();
    let a = access(&d);
    let mut s = service(2, "crash", 1, &["sleep", "1"]);
    s.spec
        .task
        .container
        .labels
        .insert("swarm.runtime.sim.exit".into(), "3".into());
    s.spec
        .task
        .container
        .labels
        .insert("swarm.runtime.sim.after".into(), "50ms".into());
    s.spec.task.restart = RestartPolicy {
        condition: RestartCondition::OnFailure,
        delay: std::time::Duration::from_millis(50),
        max_attempts: 2,
        window: std::time::Duration::ZERO,
    };
    let id = create(&a, s).await;
    // The first task and its two restarts all fail; then the slot is left alone.
    let failed = wait_store(&a.store, |st| {
        let ts = tasks(st, &id);
        ts.iter()
            .filter(|t| t.status.state == TaskState::Failed)
            .count()
            == 3
            && ts.iter().all(|t| t.slot == 1)
            && desired_running(st, &id) == 0
    })
    .await;
    assert!(failed, "three failures in slot 1, then no more restarts");
    let errs: BTreeSet<String> = a.store.view(|st| {
        tasks(st, &id)
            .iter()
            .map(|t| t.status.err.clone())
            .collect()
    });
    assert_eq!(
        errs,
        BTreeSet::from(["task: non-zero exit (3)".to_string()])
    );
    d.shutdown().await;
}

/// Restarting the daemon on the same data directory keeps every object (raft log and snapshot)
/// and the services converge again: the sim runtime lost its tasks, so they are reported failed
/// and restarted by the orchestrator.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_keeps_objects_and_converges_again() {
    let dir = tempfile::tempdir().unwrap();
    let d = start_sim(dir.path()).await;
    let node_id = d.init(InitRequest::default()).await.unwrap();
    let a = access(&d);
    let web = create(&a, service(3, "web", 4, &["sleep", "3600"])).await;
    let db = create(&a, service(4, "db", 2, &["sleep", "3600"])).await;
    assert!(converged(&a.store, web, 4).await);
    assert!(converged(&a.store, db, 2).await);
    let before = a
        .store
        .view(|s| (s.cluster().map(|c| c.id), s.count::<Service>()));
    d.shutdown().await;
    drop(d);

    let d = start_sim(dir.path()).await;
    assert_eq!(d.swarm_state(), SwarmState::Active);
    assert_eq!(d.info().node_id, Some(node_id));
    let a = access(&d);
    let after = a
        .store
        .view(|s| (s.cluster().map(|c| c.id), s.count::<Service>()));
    assert_eq!(before, after);
    assert!(
        converged(&a.store, web, 4).await,
        "web converges after restart"
    );
    assert!(
        converged(&a.store, db, 2).await,
        "db converges after restart"
    );
    d.shutdown().await;
}

/// `--init` initialises on the first start only; `leave` needs `--force` on the last manager and
/// then removes the swarm's state, after which `init` works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn init_flag_is_idempotent_and_leave_needs_force() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), RuntimeKind::Sim);
    cfg.init = true;
    let d = Daemon::start(cfg.clone()).await.unwrap();
    assert_eq!(d.swarm_state(), SwarmState::Active);
    let first = d.info().node_id;
    d.shutdown().await;
    let d = Daemon::start(cfg).await.unwrap();
    assert_eq!(d.info().node_id, first, "second start keeps the swarm");

    assert_eq!(
        d.leave(false).await.unwrap_err(),
        BackendError::LeaveRefused
    );
    assert_eq!(d.swarm_state(), SwarmState::Active);
    d.leave(true).await.unwrap();
    assert_eq!(d.swarm_state(), SwarmState::Inactive);
    assert!(!dir.path().join("raft").exists());
    assert!(!dir.path().join("node.json").exists());
    assert_eq!(d.leave(true).await.unwrap_err(), BackendError::NotInSwarm);
    let again = d.init(InitRequest::default()).await.unwrap();
    assert_ne!(Some(again), first);
    d.shutdown().await;
}
