//! End to end through the agent with the local Docker Engine (skipped loudly without a socket):
//! a container reads its secret with the requested mode; the file is gone after the task stops;
//! `docker commit` does not capture it; a failing health check fails the task; a missing image
//! rejects only that task.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::*;
use swarm_core::objects::service::{ContainerSpec, HealthConfig};
use swarm_core::TaskState;
use swarm_runtime::{DockerOptions, DockerRuntime, LocalDispatcher, Runtime};

async fn setup() -> Option<(
    Arc<DockerRuntime>,
    LocalDispatcher,
    swarm_runtime::Agent,
    &'static str,
)> {
    let image = support::docker_image::ensure()?;
    let rt = Arc::new(
        DockerRuntime::connect(DockerOptions::default())
            .await
            .expect("docker"),
    );
    let d = LocalDispatcher::new();
    let a = agent(rt.clone(), &d);
    Some((rt, d, a, image))
}

fn sh(image: &str, script: &str) -> ContainerSpec {
    ContainerSpec {
        image: image.into(),
        command: vec!["sh".into(), "-c".into(), script.into()],
        ..ContainerSpec::default()
    }
}

fn docker(args: &[&str]) -> std::process::Output {
    std::process::Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI")
}

/// The secret is at /run/secrets/<target> with mode 0400 and uid 1000, bind-mounted from host
/// tmpfs; a committed image of the container does not contain it; after the task stops the host
/// file is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_mode_commit_and_cleanup() {
    let Some((rt, d, agent, image)) = setup().await else {
        return;
    };
    let s = secret("api_key", b"sk-123");
    let mut spec = sh(image, "trap 'exit 0' TERM; sleep 1000 & wait");
    spec.secrets.push(secret_ref(&s, "api_key", "1000", 0o400));
    let t = task("dsvc", 1, spec);
    d.assign(node_id(), vec![Arc::new(t.clone())], vec![s], vec![]);
    let st = wait_state(&d, t.id, TaskState::Running).await;
    assert_eq!(
        st.container_id.len(),
        64,
        "docker container id: {}",
        st.container_id
    );
    let r = rt
        .exec(
            &t.id,
            &[
                "sh".into(),
                "-c".into(),
                "stat -c '%a %u %g' /run/secrets/api_key; cat /run/secrets/api_key".into(),
            ],
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(r.output, "400 1000 1000\nsk-123");

    let tag = format!("swarm-test/committed:{}", t.id);
    let out = docker(&["commit", &st.container_id, &tag]);
    assert!(out.status.success(), "{out:?}");
    let out = docker(&[
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        &tag,
        "-c",
        "cat /run/secrets/api_key 2>/dev/null; true",
    ]);
    let _ = docker(&["rmi", "-f", &tag]);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("sk-123"),
        "commit captured the secret"
    );

    let staged = rt.inspect(&t.id).await.unwrap().staged_files;
    assert_eq!(staged.len(), 1);
    d.assign(
        node_id(),
        vec![with_desired(&t, TaskState::Shutdown)],
        vec![],
        vec![],
    );
    wait_state(&d, t.id, TaskState::Shutdown).await;
    assert!(
        !staged[0].exists(),
        "secret file must be gone after the task stopped"
    );
    agent.stop().await;
}

/// A failing health check fails the task; a missing image rejects only its task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_fails_and_missing_image_rejects() {
    let Some((_rt, d, agent, image)) = setup().await else {
        return;
    };
    let mut spec = sh(image, "trap 'exit 0' TERM; sleep 1000 & wait");
    spec.healthcheck = Some(HealthConfig {
        test: vec!["CMD-SHELL".into(), "echo not ready; exit 1".into()],
        interval: Some(Duration::from_millis(200)),
        retries: 2,
        ..HealthConfig::default()
    });
    spec.stop_grace_period = Some(Duration::from_secs(2));
    let sick = task("dsvc", 1, spec);
    let ghost = task("dsvc", 2, sh("swarm-test/no-such-image:latest", "true"));
    d.assign(
        node_id(),
        vec![Arc::new(sick.clone()), Arc::new(ghost.clone())],
        vec![],
        vec![],
    );
    let st = wait_state(&d, ghost.id, TaskState::Rejected).await;
    assert!(
        st.err
            .starts_with("image not found: swarm-test/no-such-image:latest"),
        "{}",
        st.err
    );
    let st = wait_state(&d, sick.id, TaskState::Failed).await;
    assert_eq!(st.err, "unhealthy container: not ready");
    agent.stop().await;
}
