//! End to end through the agent with real processes: secrets with the requested mode and owner,
//! gone after the task stops; failing health checks; SIGTERM-ignoring tasks killed after the grace
//! period; private secrets; rejected specs. With namespaces when run as root.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;
use swarm_core::objects::service::{ContainerSpec, HealthConfig};
use swarm_core::TaskState;
use swarm_runtime::{LocalDispatcher, ProcessRuntime, Runtime};

fn sh(script: &str) -> ContainerSpec {
    ContainerSpec {
        command: vec!["sh".into(), "-c".into(), script.into()],
        ..ContainerSpec::default()
    }
}

fn setup() -> (Arc<ProcessRuntime>, LocalDispatcher, swarm_runtime::Agent) {
    let rt = Arc::new(ProcessRuntime::new().expect("process runtime"));
    let d = LocalDispatcher::new();
    let a = agent(rt.clone(), &d);
    (rt, d, a)
}

async fn wait_log(rt: &ProcessRuntime, task: swarm_core::Id, lines: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let l: Vec<String> = rt
            .logs(&task, None)
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.line)
            .collect();
        if l.len() >= lines {
            return l;
        }
        assert!(Instant::now() < deadline, "only got {l:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A task reads its secret at /run/secrets/<target> (or $SWARM_SECRETS_DIR without namespaces)
/// with the requested mode and owner; once the task stops, the file is gone from the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_is_readable_with_mode_and_gone_after_stop() {
    let (rt, d, agent) = setup();
    let s = secret("app_pw", b"correct horse");
    let dir = if rt.namespaces() {
        "/run/secrets"
    } else {
        "$SWARM_SECRETS_DIR"
    };
    let mut spec = sh(&format!(
        "stat -c '%a %u %g' {dir}/app_pw; cat {dir}/app_pw; echo; trap 'exit 0' TERM; sleep 1000 & wait"
    ));
    spec.secrets.push(secret_ref(&s, "app_pw", "1000", 0o400));
    let t = task("svc", 1, spec);
    d.assign(node_id(), vec![Arc::new(t.clone())], vec![s], vec![]);
    wait_state(&d, t.id, TaskState::Running).await;
    let lines = wait_log(&rt, t.id, 2).await;
    if rt.namespaces() {
        assert_eq!(lines[0], "400 1000 1000");
        assert!(
            !std::path::Path::new("/run/secrets/app_pw").exists(),
            "visible on the host"
        );
    } else {
        assert!(lines[0].starts_with("400 "), "{lines:?}");
    }
    assert_eq!(lines[1], "correct horse");
    let staged = rt.inspect(&t.id).await.unwrap().staged_files;
    assert_eq!(staged.len(), 1);
    assert!(staged[0].exists());

    d.assign(
        node_id(),
        vec![with_desired(&t, TaskState::Shutdown)],
        vec![],
        vec![],
    );
    let st = wait_state(&d, t.id, TaskState::Shutdown).await;
    assert_eq!(st.state, TaskState::Shutdown);
    assert!(
        !staged[0].exists(),
        "secret file must be deleted when the task stops"
    );
    agent.stop().await;
}

/// A failing health check fails the task with the check's output, after `retries` probes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_health_check_fails_the_task() {
    let (_rt, d, agent) = setup();
    let mut spec = sh("trap 'exit 0' TERM; sleep 1000 & wait");
    spec.healthcheck = Some(HealthConfig {
        test: vec!["CMD-SHELL".into(), "echo probe says no; exit 1".into()],
        interval: Some(Duration::from_millis(100)),
        retries: 2,
        ..HealthConfig::default()
    });
    let t = task("svc", 1, spec);
    d.assign(node_id(), vec![Arc::new(t.clone())], vec![], vec![]);
    let st = wait_state(&d, t.id, TaskState::Failed).await;
    assert_eq!(st.state, TaskState::Failed);
    assert_eq!(st.err, "unhealthy container: probe says no");
    agent.stop().await;
}

/// A task that ignores SIGTERM is killed after its stop grace period, not before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ignoring_task_is_killed_after_grace() {
    let (_rt, d, agent) = setup();
    let mut spec = sh("trap '' TERM; echo ready; sleep 1000 & wait; sleep 1000");
    spec.stop_grace_period = Some(Duration::from_millis(1200));
    let t = task("svc", 1, spec);
    d.assign(node_id(), vec![Arc::new(t.clone())], vec![], vec![]);
    wait_state(&d, t.id, TaskState::Running).await;
    wait_log(&_rt, t.id, 1).await;
    let t0 = Instant::now();
    d.assign(
        node_id(),
        vec![with_desired(&t, TaskState::Shutdown)],
        vec![],
        vec![],
    );
    let st = wait_state(&d, t.id, TaskState::Shutdown).await;
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(1100),
        "stopped after {took:?}"
    );
    assert_eq!(st.exit_code, Some(137));
    agent.stop().await;
}

/// One task's secret is invisible to a neighbour, and specs the runtime cannot run are rejected
/// with Docker's wording while the others run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_private_and_bad_specs_rejected() {
    let (rt, d, agent) = setup();
    let s = secret("mine", b"private");
    let run = "trap 'exit 0' TERM; sleep 1000 & wait";
    let mut a = sh(run);
    a.secrets.push(secret_ref(&s, "mine", "", 0));
    let a = task("svc", 1, a);
    let b = task("svc", 2, sh(run));
    let no_cmd = task("svc", 3, ContainerSpec::default());
    let missing = ContainerSpec {
        command: vec!["no-such-binary-here".into()],
        ..ContainerSpec::default()
    };
    let missing = task("svc", 4, missing);
    // `docker service create IMAGE sleep 1000` sends arguments only: they are the command.
    let args_only = ContainerSpec {
        args: vec!["sleep".into(), "1000".into()],
        ..ContainerSpec::default()
    };
    let args_only = task("svc", 5, args_only);
    let tasks = [&a, &b, &no_cmd, &missing, &args_only]
        .map(|t| Arc::new(t.clone()))
        .to_vec();
    d.assign(node_id(), tasks, vec![s], vec![]);
    wait_state(&d, a.id, TaskState::Running).await;
    wait_state(&d, b.id, TaskState::Running).await;
    wait_state(&d, args_only.id, TaskState::Running).await;
    let st = wait_state(&d, no_cmd.id, TaskState::Rejected).await;
    assert!(st.err.starts_with("no command"), "{}", st.err);
    let st = wait_state(&d, missing.id, TaskState::Rejected).await;
    assert_eq!(
        st.err,
        "exec: \"no-such-binary-here\": executable file not found in $PATH"
    );

    let read = |t: &swarm_core::Task| {
        let path = if rt.namespaces() {
            "/run/secrets/mine".to_string()
        } else {
            "\"$SWARM_SECRETS_DIR/mine\"".into()
        };
        let rt = rt.clone();
        let id = t.id;
        async move {
            rt.exec(
                &id,
                &["sh".into(), "-c".into(), format!("cat {path}")],
                Duration::from_secs(10),
            )
            .await
            .unwrap()
        }
    };
    let ra = read(&a).await;
    assert_eq!((ra.exit_code, ra.output.as_str()), (0, "private"));
    let rb = read(&b).await;
    assert_ne!(rb.exit_code, 0, "neighbour read the secret: {}", rb.output);
    agent.stop().await;
}
