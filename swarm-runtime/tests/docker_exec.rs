//! The docker runtime kills an exec that outlives its timeout, inside the container: after
//! `exec` returns `ExecTimeout`, the command's process is gone from the container's process list
//! (the engine alone would leave it running until the container stops). Skipped loudly without a
//! Docker socket.

mod support;

use std::time::Duration;

use swarm_core::objects::service::ContainerSpec;
use swarm_runtime::{Runtime, RuntimeError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_exec_is_killed_inside_the_container() {
    let Some((rt, c)) =
        support::docker_image::idle_task("exec-timeout", ContainerSpec::default()).await
    else {
        return;
    };
    let cmd = vec!["sleep".to_string(), "4321".to_string()];
    let r = rt.exec(&c.task_id, &cmd, Duration::from_millis(500)).await;
    assert!(matches!(r, Err(RuntimeError::ExecTimeout { .. })), "{r:?}");
    let ps = vec!["ps".to_string(), "-o".to_string(), "args".to_string()];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let out = rt
            .exec(&c.task_id, &ps, Duration::from_secs(10))
            .await
            .expect("ps");
        if !out.output.contains("sleep 4321") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the timed-out exec still runs: {}",
            out.output
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rt.remove(&c.task_id).await.expect("remove");
}
