//! Acceptance: process-runtime workloads survive a crash of the daemon, and a clean stop stops
//! them.
//!
//! Proves that after `SIGKILL` of `swarm-node` in the middle of a workload (two replicated
//! services and a crash-looping one) and a restart on the same data directory, every service has
//! exactly its replica count of processes and none was restarted: the same pids before the kill,
//! while the daemon is dead, and after the restart. The processes are counted on the host by a
//! marker argument, not through the API, so a second copy of a task cannot hide. The crash-looping
//! service is the witness that the restarted node is orchestrating again (it gets a new task
//! after the restart) before the check runs. Each trial also makes a write the API acknowledged
//! (a secret) just before the kill, and finds it after the restart. A service removed just before
//! a kill has no process after the restart. Finally `SIGTERM` (a clean stop) stops every task
//! and leaves no supervisor behind.
//!
//! Trials: `SWARM_RESTART_TRIALS` (default 2), e.g.
//! `SWARM_RESTART_TRIALS=20 cargo test -p swarm-node --test accept_restart_process`.

mod accept_support;

use std::collections::BTreeMap;

use accept_support::{processes_with, Node, Runtime, TIMEOUT};

/// Services and their replica counts.
const SERVICES: &[(&str, usize)] = &[("web", 3), ("db", 2)];

fn trials() -> usize {
    std::env::var("SWARM_RESTART_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

/// The marker argument of a service's processes.
fn marker(run: &str, service: &str) -> String {
    format!("restart-{run}-{service}")
}

/// Pids per service, sorted.
fn pids(run: &str) -> BTreeMap<&'static str, Vec<u32>> {
    SERVICES
        .iter()
        .map(|(s, _)| {
            let mut p = processes_with(&marker(run, s));
            p.sort_unstable();
            (*s, p)
        })
        .collect()
}

/// Waits until every service has exactly its replica count of processes.
async fn exact_counts(run: &str) -> BTreeMap<&'static str, Vec<u32>> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let now = pids(run);
        if SERVICES.iter().all(|(s, n)| now[s].len() == *n) {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "replica counts never became exact: {now:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Task ids of a service's tasks, newest first.
async fn task_ids(node: &Node, service: &str) -> Vec<String> {
    node.ok(&["service", "ps", service, "-q", "--no-trunc"])
        .await
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_keeps_process_tasks_running_and_sigterm_stops_them() {
    let Some(mut node) = Node::start(Runtime::Process, true).await else {
        return;
    };
    let run = format!("{}", std::process::id());
    for (name, replicas) in SERVICES {
        let script = "trap 'exit 0' TERM; while :; do sleep 1; done";
        node.ok(&[
            "service",
            "create",
            "--detach",
            "--name",
            name,
            "--replicas",
            &replicas.to_string(),
            "busybox",
            "sh",
            "-c",
            script,
            &marker(&run, name),
        ])
        .await;
    }
    node.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "crash",
        "--restart-delay",
        "200ms",
        "busybox",
        "sh",
        "-c",
        "sleep 0.3; exit 1",
    ])
    .await;
    for (name, replicas) in SERVICES {
        node.wait_replicas(name, &format!("{replicas}/{replicas}"))
            .await;
    }
    let mut before = exact_counts(&run).await;
    let tasks_before: Vec<Vec<String>> = {
        let mut v = Vec::new();
        for (s, _) in SERVICES {
            v.push(task_ids(&node, s).await);
        }
        v
    };

    for trial in 0..trials() {
        let secret = format!("ack-{trial}");
        node.ok_stdin(&["secret", "create", &secret, "-"], b"acknowledged")
            .await;
        let crash_tasks = task_ids(&node, "crash").await;
        node.kill().await;
        assert_eq!(
            pids(&run),
            before,
            "trial {trial}: tasks changed when the daemon died"
        );
        node.start_again().await;
        // The witness: the crash-looping service got a task it did not have before the kill, so
        // the restarted node orchestrates and runs tasks again.
        node.wait_for(
            "a new crash-loop task after the restart",
            &["service", "ps", "crash", "-q", "--no-trunc"],
            |out| out.lines().any(|t| !crash_tasks.iter().any(|c| c == t)),
        )
        .await;
        for (name, replicas) in SERVICES {
            node.wait_replicas(name, &format!("{replicas}/{replicas}"))
                .await;
        }
        let after = exact_counts(&run).await;
        assert_eq!(
            after, before,
            "trial {trial}: a task was restarted or duplicated"
        );
        for (i, (s, _)) in SERVICES.iter().enumerate() {
            assert_eq!(
                task_ids(&node, s).await,
                tasks_before[i],
                "trial {trial}: service {s} got new tasks"
            );
        }
        let secrets = node.ok(&["secret", "ls", "--format", "{{.Name}}"]).await;
        assert!(
            secrets.lines().any(|l| l == secret),
            "trial {trial}: acknowledged secret {secret} lost: {secrets}"
        );
        before = after;
    }

    // A service removed just before the crash: whether or not the agent stopped its tasks before
    // the kill, after the restart none of its processes runs (a recovered task no longer assigned
    // is stopped through its supervisor) and the other service's tasks are untouched.
    let (gone, _) = SERVICES[1];
    node.ok(&["service", "rm", gone]).await;
    node.kill().await;
    node.start_again().await;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !processes_with(&marker(&run, gone)).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "tasks of the removed service {gone} still run after the restart"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (kept, _) = SERVICES[0];
    assert_eq!(
        pids(&run)[kept],
        before[kept],
        "service {kept} was disturbed by the removal of {gone}"
    );

    node.stop().await;
    assert!(
        SERVICES
            .iter()
            .all(|(s, _)| processes_with(&marker(&run, s)).is_empty()),
        "a clean stop left tasks running: {:?}",
        pids(&run)
    );
    assert!(
        node.supervisors().is_empty(),
        "a clean stop left supervisors: {:?}",
        node.supervisors()
    );
}
