//! Watching a container for its exit: the engine's wait, and what a failed wait means.

use std::sync::Arc;
use std::time::Duration;

use bollard::query_parameters::WaitContainerOptionsBuilder;
use futures_util::StreamExt;
use swarm_core::Id;

use super::convert::message;
use super::{Exit, Inner};
use crate::runtime::ExitStatus;

impl Inner {
    /// Waits for the container to stop and records how it ended. A failed wait (connection
    /// dropped, engine restarted) is not an exit: the engine is asked where the container is,
    /// and a running one is waited on again.
    pub(super) async fn watch_exit(self: Arc<Self>, task: Id, container: String) {
        let mut backoff = Duration::from_millis(100);
        let exit = loop {
            let opts = WaitContainerOptionsBuilder::default()
                .condition("not-running")
                .build();
            let mut stream = self.docker.wait_container(&container, Some(opts));
            let failure = match stream.next().await {
                Some(Ok(r)) => break Ok(exit_status(r.status_code)),
                // bollard turns a non-zero exit into this error.
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
                    break Ok(exit_status(code))
                }
                Some(Err(e)) => message(&e),
                None => "the engine closed the wait stream without a result".to_string(),
            };
            let inspected = self
                .docker
                .inspect_container(&container, None)
                .await
                .map(|i| i.state.unwrap_or_default())
                .map_err(|e| message(&e));
            match after_failed_wait(&container, &failure, inspected) {
                Some(exit) => break exit,
                None => {
                    tracing::debug!(task = %task, error = %failure, "waiting for the container failed; it still runs, waiting again");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        self.finish(&task, exit);
    }
}

/// What a failed wait on the engine means, from the engine's record of the container (or why
/// that could not be read): its exit, or `None` when it still runs and must be waited on again.
/// Never a made-up exit code: an exit the engine cannot tell is an error.
fn after_failed_wait(
    container: &str,
    failure: &str,
    inspected: Result<bollard::models::ContainerState, String>,
) -> Option<Exit> {
    match inspected {
        Ok(state) if state.running == Some(true) => None,
        Ok(state) => Some(state.exit_code.map(exit_status).ok_or_else(|| {
            format!(
                "waiting for container {container} failed ({failure}) and the engine reports no \
                 exit code"
            )
        })),
        Err(e) => Some(Err(format!(
            "waiting for container {container} failed ({failure}), then inspecting it failed: {e}"
        ))),
    }
}

/// An exit code as Docker reports it (`128 + signal` for a signal death).
pub(super) fn exit_status(code: i64) -> ExitStatus {
    if code > 128 && code < 128 + 65 {
        ExitStatus {
            code,
            signal: i32::try_from(code - 128).ok(),
        }
    } else {
        ExitStatus::code(code)
    }
}

#[cfg(test)]
mod tests {
    use bollard::models::ContainerState;

    use super::*;

    #[test]
    fn a_failed_wait_is_never_reported_as_exit_zero() {
        let running = ContainerState {
            running: Some(true),
            exit_code: Some(0),
            ..ContainerState::default()
        };
        assert_eq!(after_failed_wait("c", "reset", Ok(running)), None);
        let exited = ContainerState {
            running: Some(false),
            exit_code: Some(137),
            ..ContainerState::default()
        };
        assert_eq!(
            after_failed_wait("c", "reset", Ok(exited)),
            Some(Ok(ExitStatus::signal(9)))
        );
        let unknown = after_failed_wait("c", "reset", Ok(ContainerState::default()));
        assert!(matches!(unknown, Some(Err(m)) if m.contains("no exit code")));
        let gone = after_failed_wait("c", "reset", Err("no such container".into()));
        assert!(matches!(gone, Some(Err(m)) if m.contains("no such container")));
    }
}
