//! The daemon end to end on the process runtime (real `sleep` and `sh` children): replicas run,
//! their output is readable through `Backend::task_logs`, scaling converges, and a restart on the
//! same data directory stops the old processes and converges again with new ones.

mod daemon_support;

use std::collections::BTreeSet;

use daemon_support::*;
use swarm_core::TaskState;
use swarm_node::backend::{Backend, InitRequest};
use swarm_node::config::RuntimeKind;
use swarm_node::daemon::Daemon;

fn alive(pid: i64) -> bool {
    // A reaped process has no /proc entry; a zombie is as good as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

fn pids(d: &Daemon, service: swarm_core::Id) -> BTreeSet<i64> {
    access(d).store.view(|s| {
        tasks(s, &service)
            .iter()
            .filter(|t| t.status.state == TaskState::Running)
            .map(|t| t.status.pid)
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn process_replicas_run_log_scale_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(config(dir.path(), RuntimeKind::Process))
        .await
        .expect("daemon starts");
    assert_eq!(d.info().runtime, "process");
    d.init(InitRequest::default()).await.unwrap();
    let a = access(&d);
    let svc = service(
        1,
        "sleepers",
        3,
        &["sh", "-c", "echo hello from $HOSTNAME; exec sleep 300"],
    );
    let id = create(&a, svc).await;
    assert!(converged(&a.store, id, 3).await, "3 processes run");
    let first = pids(&d, id);
    assert_eq!(first.len(), 3);
    assert!(first.iter().all(|p| *p > 0 && alive(*p)));

    let task = a.store.view(|s| {
        tasks(s, &id)
            .into_iter()
            .find(|t| t.status.state == TaskState::Running)
            .expect("a running task")
    });
    let logged = poll_until(|| {
        let (d, task) = (d.clone(), task.clone());
        async move {
            d.task_logs(&task, None)
                .await
                .map(|lines| lines.iter().any(|l| l.line.starts_with("hello from")))
                .unwrap_or(false)
        }
    })
    .await;
    assert!(logged, "the task's output is readable");

    scale(&a, id, 5).await;
    assert!(converged(&a.store, id, 5).await, "scaled to 5");
    let before = pids(&d, id);
    d.shutdown().await;
    drop(d);
    assert!(
        poll_until(|| async { before.iter().all(|p| !alive(*p)) }).await,
        "a graceful shutdown stops every task"
    );

    let d = Daemon::start(config(dir.path(), RuntimeKind::Process))
        .await
        .expect("daemon restarts");
    let a = access(&d);
    assert!(
        converged(&a.store, id, 5).await,
        "converges again after restart"
    );
    let after = pids(&d, id);
    assert!(after.is_disjoint(&before), "new processes");
    d.shutdown().await;
}
