//! Acceptance: docker workloads survive a daemon crash. SIGKILL the daemon while its services
//! run, start it again on the same data directory, and nothing restarts.
//!
//! Proves `Runtime::recover` end to end: the restarted agent adopts its node's containers by
//! label, so each trial's check is exact: every service created before the kill is still there
//! (no acknowledged write lost), each at its replica count, every container has the same id and
//! `StartedAt` as before the kill (none restarted, none replaced, none added), no task history
//! entry appears (a failed-then-replaced task would leave one), and the adopted tasks' logs are
//! still served; a second test shows an adopted task's health check still runs. A task no
//! longer assigned after the restart is covered by swarm-runtime's `agent_sim` tests; here the
//! moment of the kill is drawn at random (seeded) while a counter service ticks.
//!
//! Trials: `SWARM_RESTART_TRIALS` (default 2, CI; `SWARM_RESTART_TRIALS=20` for the full run),
//! moments from `SWARM_RESTART_SEED` (default: the clock, printed).

mod accept_support;

use std::collections::BTreeMap;

use accept_support::trials::{env_u64, Rng};
use accept_support::{engine, Node, Runtime, IMAGE};

/// Container id -> `StartedAt` of every container labelled with this node's id.
async fn containers_of(node_id: &str) -> BTreeMap<String, String> {
    let label = format!("label=com.docker.swarm.node.id={node_id}");
    let out = engine(&["ps", "-aq", "--no-trunc", "--filter", &label]).await;
    assert_eq!(out.code, 0, "docker ps: {}", out.stderr);
    let mut found = BTreeMap::new();
    for id in out.stdout.split_whitespace() {
        let o = engine(&["inspect", "--format", "{{.State.StartedAt}}", id]).await;
        assert_eq!(o.code, 0, "docker inspect {id}: {}", o.stderr);
        found.insert(id.to_string(), o.stdout.trim().to_string());
    }
    found
}

/// Every `service ps` row of `service`: its current state's first word.
async fn task_states(node: &Node, service: &str) -> Vec<String> {
    node.ok(&["service", "ps", service, "--format", "{{.CurrentState}}"])
        .await
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_keeps_every_container_and_service() {
    let trials = env_u64("SWARM_RESTART_TRIALS").unwrap_or(2);
    eprintln!("accept_restart_docker: {trials} trials");
    let mut rng = Rng::from_env("SWARM_RESTART_SEED", "accept_restart_docker");
    let Some(mut node) = Node::start(Runtime::Docker, true).await else {
        return;
    };
    let node_id = node.node_id().await;
    node.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "ticker",
        "--replicas",
        "2",
        "--stop-grace-period",
        "1s",
        IMAGE,
        "sh",
        "-c",
        "trap 'exit 0' TERM; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done",
    ])
    .await;
    node.wait_replicas("ticker", "2/2").await;
    let mut services = vec![("ticker".to_string(), 2u32)];
    for trial in 0..trials {
        // One more acknowledged write per trial: a service the CLI saw created.
        let name = format!("svc{trial}");
        let replicas = 1 + (trial % 3) as u32;
        node.ok(&[
            "service",
            "create",
            "--detach",
            "--name",
            &name,
            "--replicas",
            &replicas.to_string(),
            "--stop-grace-period",
            "1s",
            IMAGE,
            "sh",
            "-c",
            "trap 'exit 0' TERM; while true; do sleep 0.5; done",
        ])
        .await;
        services.push((name, replicas));
        for (s, r) in &services {
            node.wait_replicas(s, &format!("{r}/{r}")).await;
        }
        let before = containers_of(&node_id).await;
        let want: u32 = services.iter().map(|(_, r)| r).sum();
        assert_eq!(before.len(), want as usize, "containers before the kill");
        // The moment of the kill, drawn from the seed: the services keep working meanwhile.
        tokio::time::sleep(rng.millis(0, 1500)).await;
        node.kill_and_restart().await;
        // A service created after the restart running proves the agent is back and has
        // applied its first full assignment set (where a lost adoption would show).
        let probe = format!("probe{trial}");
        node.ok(&[
            "service",
            "create",
            "--detach",
            "--name",
            &probe,
            "--stop-grace-period",
            "1s",
            IMAGE,
            "sh",
            "-c",
            "trap 'exit 0' TERM; while true; do sleep 0.5; done",
        ])
        .await;
        node.wait_replicas(&probe, "1/1").await;
        for (s, r) in &services {
            node.wait_replicas(s, &format!("{r}/{r}")).await;
        }
        let ls = node.ok(&["service", "ls", "--format", "{{.Name}}"]).await;
        for (s, _) in &services {
            assert!(
                ls.lines().any(|l| l == s),
                "trial {trial}: service {s} lost: {ls:?}"
            );
        }
        let mut after = containers_of(&node_id).await;
        let kept: BTreeMap<String, String> = before
            .keys()
            .filter_map(|id| after.remove_entry(id))
            .collect();
        assert_eq!(
            before,
            kept,
            "trial {trial}: containers (id -> StartedAt) changed across the restart\n{}",
            node.log_tail()
        );
        assert_eq!(
            after.len(),
            1,
            "trial {trial}: new containers besides the probe's: {after:?}"
        );
        for (s, r) in &services {
            let states = task_states(&node, s).await;
            assert_eq!(
                states,
                vec!["Running".to_string(); *r as usize],
                "trial {trial}: tasks of {s} after the restart\n{}",
                node.log_tail()
            );
        }
        let logs = node.wait_logs("ticker", "tick").await;
        assert!(
            logs.contains("tick 0"),
            "the ticker's earlier output is kept"
        );
        eprintln!(
            "trial {trial}: {} containers kept across SIGKILL + restart",
            kept.len()
        );
        services.push((probe, 1));
    }
    node.stop().await;
    let left = containers_of(&node_id).await;
    assert!(left.is_empty(), "containers left after the stop: {left:?}");
}

/// The health check of an adopted task still runs: after SIGKILL + restart the same container
/// keeps running, and once its check starts failing (the file it tests is removed inside the
/// container, through the engine) the task fails as `unhealthy container`, which only the
/// restarted agent's health loop can report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopted_tasks_keep_their_health_checks() {
    let Some(mut node) = Node::start(Runtime::Docker, true).await else {
        return;
    };
    let node_id = node.node_id().await;
    node.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "checked",
        "--health-cmd",
        "cat /tmp/healthy",
        "--health-interval",
        "1s",
        "--health-timeout",
        "1s",
        "--health-retries",
        "1",
        "--restart-condition",
        "none",
        "--stop-grace-period",
        "1s",
        IMAGE,
        "sh",
        "-c",
        "touch /tmp/healthy; trap 'exit 0' TERM; while true; do sleep 0.2; done",
    ])
    .await;
    node.wait_replicas("checked", "1/1").await;
    let before = containers_of(&node_id).await;
    assert_eq!(before.len(), 1, "{before:?}");
    node.kill_and_restart().await;
    node.wait_replicas("checked", "1/1").await;
    assert_eq!(
        containers_of(&node_id).await,
        before,
        "the container was kept"
    );
    let container = before.keys().next().expect("one container").clone();
    let rm = engine(&["exec", &container, "rm", "/tmp/healthy"]).await;
    assert_eq!(rm.code, 0, "docker exec rm: {}", rm.stderr);
    let rows = node
        .wait_for(
            "the adopted task failing its health check",
            &[
                "service",
                "ps",
                "checked",
                "--no-trunc",
                "--format",
                "{{.CurrentState}}|{{.Error}}",
            ],
            |out| out.starts_with("Failed") && out.contains("unhealthy container"),
        )
        .await;
    assert_eq!(
        rows.lines().count(),
        1,
        "the same task, never replaced: {rows}"
    );
    node.stop().await;
}
