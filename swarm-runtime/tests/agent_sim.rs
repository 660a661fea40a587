//! The agent over the `sim` runtime and the in-process dispatcher: lifecycle messages, exit codes,
//! desired-state changes, health checks, bad input, outages and resynchronisation, scale.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::*;
use swarm_core::dispatch::AssignmentSet;
use swarm_core::objects::service::{ContainerSpec, HealthConfig};
use swarm_core::objects::task::Health;
use swarm_core::{Task, TaskState};
use swarm_runtime::testing::{sim_spec, Behaviour};
use swarm_runtime::{LocalDispatcher, SimRuntime};

fn sim_task(b: &Behaviour) -> Task {
    task("svc", 1, sim_spec(b))
}

fn setup() -> (Arc<SimRuntime>, LocalDispatcher, swarm_runtime::Agent) {
    let rt = Arc::new(SimRuntime::new());
    let d = LocalDispatcher::new();
    let a = agent(rt.clone(), &d);
    (rt, d, a)
}

/// A task walks assigned -> ... -> running with Docker's messages, then completes or fails with
/// Docker's errors; the dispatcher never sees a state go backwards.
#[tokio::test]
async fn lifecycle_messages_and_exit_codes() {
    let (_rt, d, agent) = setup();
    let run = sim_task(&Behaviour::RunForever);
    let ok = sim_task(&Behaviour::Exit {
        code: 0,
        after: Duration::from_millis(50),
    });
    let bad = sim_task(&Behaviour::Exit {
        code: 1,
        after: Duration::from_millis(50),
    });
    d.assign(
        node_id(),
        vec![
            Arc::new(run.clone()),
            Arc::new(ok.clone()),
            Arc::new(bad.clone()),
        ],
        vec![],
        vec![],
    );

    let st = wait_state(&d, run.id, TaskState::Running).await;
    assert_eq!(st.state, TaskState::Running);
    assert_eq!(st.message, "started");
    assert!(st.container_id.starts_with("sim:"));

    let st = wait_state(&d, ok.id, TaskState::Complete).await;
    assert_eq!(
        (st.state, st.message.as_str(), st.exit_code),
        (TaskState::Complete, "finished", Some(0))
    );

    let st = wait_state(&d, bad.id, TaskState::Failed).await;
    assert_eq!(st.state, TaskState::Failed);
    assert_eq!(st.err, "task: non-zero exit (1)");
    assert_eq!(st.exit_code, Some(1));

    // Desired shutdown stops the running task.
    d.assign(
        node_id(),
        vec![with_desired(&run, TaskState::Shutdown)],
        vec![],
        vec![],
    );
    let st = wait_state(&d, run.id, TaskState::Shutdown).await;
    assert_eq!(
        (st.state, st.message.as_str()),
        (TaskState::Shutdown, "shutdown")
    );
    assert!(d.regressions().is_empty(), "{:?}", d.regressions());
    agent.stop().await;
}

/// Bad input rejects only the task it concerns, each with a message saying why; the others run.
#[tokio::test]
async fn bad_input_rejects_only_that_task() {
    let (_rt, d, agent) = setup();
    let s = secret("db_pw", b"x");
    let mut missing_secret = ContainerSpec::default();
    missing_secret.secrets.push(secret_ref(&s, "db_pw", "", 0));
    let missing_secret = task("svc", 1, missing_secret);
    let mut bad_template = ContainerSpec::default();
    bad_template.env.push("X={{.Service.Nope}}".into());
    let bad_template = task("svc", 2, bad_template);
    let mut bad_option = ContainerSpec::default();
    bad_option
        .labels
        .insert("swarm.runtime.sim.bogus".into(), "1".into());
    let bad_option = task("svc", 3, bad_option);
    let mut bad_target = ContainerSpec::default();
    let sent = secret("sent", b"y");
    bad_target
        .secrets
        .push(secret_ref(&sent, "../../etc/shadow", "", 0));
    let bad_target = task("svc", 4, bad_target);
    let good = sim_task(&Behaviour::RunForever);
    d.assign(
        node_id(),
        [
            &missing_secret,
            &bad_template,
            &bad_option,
            &bad_target,
            &good,
        ]
        .into_iter()
        .map(|t| Arc::new(t.clone()))
        .collect(),
        vec![sent],
        vec![],
    );
    for (t, why) in [
        (&missing_secret, "was not sent to this node"),
        (&bad_template, "unknown placeholder {{.Service.Nope}}"),
        (
            &bad_option,
            "unknown runtime option \"swarm.runtime.sim.bogus\"",
        ),
        (&bad_target, "'..' is not allowed"),
    ] {
        let st = wait_state(&d, t.id, TaskState::Rejected).await;
        assert_eq!(st.state, TaskState::Rejected);
        assert!(st.err.contains(why), "{why:?} not in {:?}", st.err);
    }
    assert_eq!(
        wait_state(&d, good.id, TaskState::Running).await.state,
        TaskState::Running
    );
    agent.stop().await;
}

/// Templates are expanded from the task, service and node.
#[tokio::test]
async fn templates_expand_in_env_and_hostname() {
    let (rt, d, agent) = setup();
    let mut spec = sim_spec(&Behaviour::RunForever);
    spec.hostname = "{{.Service.Name}}-{{.Task.Slot}}-{{.Node.Hostname}}".into();
    spec.env
        .push("WHERE={{.Node.Platform.OS}}/{{.Node.Platform.Architecture}}".into());
    let t = task("web", 3, spec);
    d.assign(node_id(), vec![Arc::new(t.clone())], vec![], vec![]);
    wait_state(&d, t.id, TaskState::Running).await;
    use swarm_runtime::Runtime;
    let h = rt
        .exec(&t.id, &["hostname".into()], Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(h.output.trim(), "web-3-worker-1");
    let e = rt
        .exec(
            &t.id,
            &["printenv".into(), "WHERE".into()],
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    assert_eq!(e.output.trim(), "linux/x86_64");
    agent.stop().await;
}

/// `retries` consecutive failed probes after the start period fail the task with the probe's
/// output; before that, health is reported healthy. Virtual time: no real waiting.
#[tokio::test(start_paused = true)]
async fn unhealthy_task_fails_with_probe_output() {
    let (_rt, d, agent) = setup();
    let mut spec = sim_spec(&Behaviour::RunForever);
    spec.labels
        .insert("swarm.runtime.sim.unhealthy-after".into(), "10s".into());
    spec.healthcheck = Some(HealthConfig {
        test: vec!["CMD".into(), "true".into()],
        interval: Some(Duration::from_secs(2)),
        retries: 2,
        ..HealthConfig::default()
    });
    let t = task("svc", 1, spec);
    d.assign(node_id(), vec![Arc::new(t.clone())], vec![], vec![]);
    let ok = d
        .wait_until(Duration::from_secs(9), |m| {
            m.get(&t.id)
                .is_some_and(|s| s.health == Some(Health::Healthy))
        })
        .await;
    assert!(ok, "{:?}", d.status(t.id));
    let st = wait_state(&d, t.id, TaskState::Failed).await;
    assert_eq!(st.state, TaskState::Failed);
    assert!(
        st.err.starts_with("unhealthy container: simulated failure"),
        "{}",
        st.err
    );
    assert_eq!(st.health, Some(Health::Unhealthy));
    agent.stop().await;
}

/// While the dispatcher is unreachable tasks keep running and their changes are kept; on
/// reconnect the full set removes tasks the manager dropped, starts new ones, and the kept
/// statuses arrive.
#[tokio::test]
async fn outage_keeps_tasks_running_and_reconnect_resynchronises() {
    let (rt, d, agent) = setup();
    let keep = sim_task(&Behaviour::RunForever);
    let dropped = sim_task(&Behaviour::RunForever);
    let exits = sim_task(&Behaviour::Exit {
        code: 0,
        after: Duration::from_millis(300),
    });
    d.assign(
        node_id(),
        vec![
            Arc::new(keep.clone()),
            Arc::new(dropped.clone()),
            Arc::new(exits.clone()),
        ],
        vec![],
        vec![],
    );
    wait_state(&d, keep.id, TaskState::Running).await;
    wait_state(&d, dropped.id, TaskState::Running).await;
    wait_state(&d, exits.id, TaskState::Running).await;

    d.set_unreachable(true);
    // The manager changes its mind while the node is away.
    let added = sim_task(&Behaviour::RunForever);
    d.update(
        node_id(),
        AssignmentSet {
            tasks: vec![Arc::new(added.clone())],
            removed_tasks: vec![dropped.id],
            ..AssignmentSet::default()
        },
    );
    // The exiting task completes while disconnected; nothing reaches the dispatcher.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while agent.task_status(exits.id).map(|s| s.state) != Some(TaskState::Complete) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "task never completed locally"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(d.status(exits.id).unwrap().state, TaskState::Running);
    assert_eq!(
        rt.running_count(),
        2,
        "tasks keep running while disconnected"
    );

    d.set_unreachable(false);
    assert_eq!(
        wait_state(&d, exits.id, TaskState::Complete).await.state,
        TaskState::Complete
    );
    assert_eq!(
        wait_state(&d, added.id, TaskState::Running).await.state,
        TaskState::Running
    );
    assert_eq!(
        wait_state(&d, dropped.id, TaskState::Shutdown).await.state,
        TaskState::Shutdown
    );
    assert_eq!(d.status(keep.id).unwrap().state, TaskState::Running);
    assert!(d.regressions().is_empty(), "{:?}", d.regressions());
    agent.stop().await;
}

/// Secrets are held only while the dispatcher says a task needs them.
#[tokio::test]
async fn secrets_are_forgotten_when_withdrawn() {
    let (rt, d, agent) = setup();
    let s = secret("pw", b"hunter2");
    let mut spec = sim_spec(&Behaviour::RunForever);
    spec.secrets.push(secret_ref(&s, "pw", "", 0o400));
    let t = task("svc", 1, spec);
    d.assign(
        node_id(),
        vec![Arc::new(t.clone())],
        vec![s.clone()],
        vec![],
    );
    wait_state(&d, t.id, TaskState::Running).await;
    assert_eq!(agent.secrets_held(), 1);
    use swarm_runtime::Runtime;
    let r = rt
        .exec(
            &t.id,
            &["cat".into(), "/run/secrets/pw".into()],
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    assert_eq!(r.output, "hunter2");
    d.update(
        node_id(),
        AssignmentSet {
            removed_tasks: vec![t.id],
            removed_secrets: vec![s.id],
            ..AssignmentSet::default()
        },
    );
    wait_state(&d, t.id, TaskState::Shutdown).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while agent.secrets_held() != 0 || rt.task_count() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "secret or task still held"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    agent.stop().await;
}

/// One agent drives 10 000 simulated tasks from one assignment to all running, batching reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_tasks() {
    let (rt, d, agent) = setup();
    let spec = Arc::new(swarm_core::objects::service::TaskSpec {
        container: sim_spec(&Behaviour::RunForever),
        ..Default::default()
    });
    let tasks: Vec<Arc<Task>> = (0..10_000)
        .map(|i| {
            let mut t = task("scale", i + 1, ContainerSpec::default());
            t.spec = spec.clone();
            Arc::new(t)
        })
        .collect();
    let ids: Vec<_> = tasks.iter().map(|t| t.id).collect();
    let t0 = std::time::Instant::now();
    d.assign(node_id(), tasks, vec![], vec![]);
    let ok = d
        .wait_until(Duration::from_secs(60), |m| {
            m.len() >= ids.len()
                && ids
                    .iter()
                    .all(|id| m.get(id).is_some_and(|s| s.state == TaskState::Running))
        })
        .await;
    assert!(ok, "not all tasks reached running");
    eprintln!(
        "10 000 sim tasks assigned -> running in {:?} ({} batches)",
        t0.elapsed(),
        d.batches()
    );
    assert_eq!(rt.running_count(), 10_000);
    assert!(
        d.batches() < 1_000,
        "reports must be batched ({} batches)",
        d.batches()
    );
    agent.stop().await;
}

/// `Agent::stop` shuts every task down and delivers their last status before returning.
#[tokio::test]
async fn stop_shuts_tasks_down_and_reports_it() {
    let (rt, d, agent) = setup();
    let ts: Vec<Task> = (1..=20)
        .map(|i| task("svc", i, sim_spec(&Behaviour::RunForever)))
        .collect();
    d.assign(
        node_id(),
        ts.iter().map(|t| Arc::new(t.clone())).collect(),
        vec![],
        vec![],
    );
    for t in &ts {
        wait_state(&d, t.id, TaskState::Running).await;
    }
    agent.stop().await;
    for t in &ts {
        assert_eq!(d.status(t.id).map(|s| s.state), Some(TaskState::Shutdown));
    }
    assert_eq!(
        rt.task_count(),
        0,
        "stopped tasks are removed from the runtime"
    );
}

/// After a restart the agent keeps what `Runtime::recover` found and is still assigned (the same
/// runtime task carries on, reported running), and stops and removes what is not assigned any
/// more. The runtime here holds two running tasks of the node before the agent starts, as a
/// daemon killed mid-workload leaves them for an adapter that can adopt.
#[tokio::test]
async fn recovered_tasks_are_kept_when_assigned_and_removed_otherwise() {
    use swarm_runtime::{Runtime, RuntimeState, TaskConfig};
    let rt = Arc::new(SimRuntime::new());
    let mut keep = sim_task(&Behaviour::RunForever);
    let gone = sim_task(&Behaviour::RunForever);
    for t in [&keep, &gone] {
        let mut c = TaskConfig::new(t.id, "svc", t.spec.container.clone());
        c.node_id = node_id();
        rt.prepare(&c).await.expect("prepare");
        rt.start(&t.id).await.expect("start");
    }
    // The cluster last heard that `keep` runs; `gone` was removed while the node was down.
    keep.status.state = TaskState::Running;
    keep.status.message = "started".into();
    let d = LocalDispatcher::new();
    d.assign(node_id(), vec![Arc::new(keep.clone())], vec![], vec![]);
    let agent = agent(rt.clone(), &d);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while rt.task_count() != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the unassigned recovered task was never removed ({} tasks)",
            rt.task_count()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(rt.inspect(&gone.id).await.is_err(), "`gone` is removed");
    let kept = rt.inspect(&keep.id).await.expect("`keep` is still held");
    assert_eq!(kept.state, RuntimeState::Running, "and was never restarted");
    assert_eq!(
        agent.task_status(keep.id).map(|s| s.state),
        Some(TaskState::Running)
    );
    // The adopted task is the agent's own (a node serves its logs); the removed one is not.
    assert!(agent.tasks().holds(&keep.id));
    assert!(!agent.tasks().holds(&gone.id));
    assert!(d.regressions().is_empty(), "{:?}", d.regressions());
    agent.stop().await;
    assert_eq!(rt.task_count(), 0);
}

/// A runtime whose `shutdown` never returns (a wedged engine).
struct StuckShutdown(SimRuntime);

#[async_trait::async_trait]
impl swarm_runtime::Runtime for StuckShutdown {
    fn name(&self) -> &'static str {
        "sim"
    }
    async fn prepare(
        &self,
        c: &swarm_runtime::TaskConfig,
    ) -> Result<(), swarm_runtime::RuntimeError> {
        self.0.prepare(c).await
    }
    async fn start(&self, t: &swarm_core::Id) -> Result<(), swarm_runtime::RuntimeError> {
        self.0.start(t).await
    }
    async fn wait(
        &self,
        t: &swarm_core::Id,
    ) -> Result<swarm_runtime::ExitStatus, swarm_runtime::RuntimeError> {
        self.0.wait(t).await
    }
    async fn shutdown(&self, _: &swarm_core::Id) -> Result<(), swarm_runtime::RuntimeError> {
        std::future::pending().await
    }
    async fn remove(&self, t: &swarm_core::Id) -> Result<(), swarm_runtime::RuntimeError> {
        self.0.remove(t).await
    }
    async fn inspect(
        &self,
        t: &swarm_core::Id,
    ) -> Result<swarm_runtime::TaskInspect, swarm_runtime::RuntimeError> {
        self.0.inspect(t).await
    }
    async fn exec(
        &self,
        t: &swarm_core::Id,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<swarm_runtime::ExecResult, swarm_runtime::RuntimeError> {
        self.0.exec(t, cmd, timeout).await
    }
    async fn logs(
        &self,
        t: &swarm_core::Id,
        tail: Option<usize>,
    ) -> Result<Vec<swarm_runtime::LogLine>, swarm_runtime::RuntimeError> {
        self.0.logs(t, tail).await
    }
}

/// `Agent::stop` is bounded: with a runtime whose stop never returns it still returns, once the
/// tasks' stop grace period plus the margins (`KILL_WAIT`, `STOP_MARGIN`, the mesh drain) has
/// passed, not before the grace period. Virtual time, so the test takes no real 18 s.
#[tokio::test(start_paused = true)]
async fn stop_is_bounded_when_the_runtime_hangs() {
    let rt = Arc::new(StuckShutdown(SimRuntime::new()));
    let d = LocalDispatcher::new();
    let agent = agent(rt.clone(), &d);
    let t = sim_task(&Behaviour::RunForever);
    d.assign(node_id(), vec![Arc::new(t.clone())], vec![], vec![]);
    wait_state(&d, t.id, TaskState::Running).await;
    let t0 = tokio::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(120), agent.stop())
        .await
        .expect("Agent::stop returned despite the stuck runtime");
    let grace = Duration::from_secs(10);
    assert!(t0.elapsed() >= grace, "gave up before the grace period");
}

/// `Agent::tasks` holds a task from its assignment until its removal is done, and nothing once the
/// agent has stopped.
#[tokio::test]
async fn agent_tasks_follow_assignment_and_removal() {
    let (_rt, d, agent) = setup();
    let run = sim_task(&Behaviour::RunForever);
    let other = sim_task(&Behaviour::RunForever);
    let held = agent.tasks();
    d.assign(node_id(), vec![Arc::new(run.clone())], vec![], vec![]);
    wait_state(&d, run.id, TaskState::Running).await;
    assert!(held.holds(&run.id));
    assert!(!held.holds(&other.id), "never assigned here");
    d.update(
        node_id(),
        AssignmentSet {
            removed_tasks: vec![run.id],
            ..AssignmentSet::default()
        },
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while held.holds(&run.id) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the removed task is still held"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    d.assign(node_id(), vec![Arc::new(other.clone())], vec![], vec![]);
    wait_state(&d, other.id, TaskState::Running).await;
    assert!(held.holds(&other.id));
    agent.stop().await;
    assert!(!held.holds(&other.id), "a stopped agent holds nothing");
}
