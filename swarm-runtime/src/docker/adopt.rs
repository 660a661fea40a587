//! [`crate::Runtime::recover`] for the docker runtime: taking over the containers a previous run
//! of the node left behind, so a daemon restart does not restart its workloads.
//!
//! The node's containers are found by label (`com.docker.swarm.node.id` = the node; containers
//! of other nodes sharing the engine are never looked at). Each one this instance does not know
//! yet is rebuilt from the engine's own record: its stop signal and stop timeout (whole seconds:
//! the engine keeps no finer grace), user, image health check, the swarm bridges it is attached
//! to (the adapter takes a reference on each, as `prepare` would have), and where its secret and
//! config files were staged (deleted once it exits). A running container gets a new exit
//! watcher, an exited one reports the exit code the engine kept. Logs stay with the engine, so
//! `logs` returns the output from before the restart too. The host-mode ports of an adopted task
//! are not re-read: the cluster keeps the ones it was told when the task started.
//!
//! A killed daemon also leaves its stage root under /dev/shm; `recover` deletes the roots of
//! dead runs that hold no file any more, and an adopted task's root goes with its last task.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum};
use bollard::query_parameters::{InspectNetworkOptions, ListContainersOptionsBuilder};
use swarm_core::Id;
use tokio::sync::watch;

use super::convert::{engine, image_health, status_code, LABEL_TASK_ID};
use super::network::LABEL_NETWORK_ID;
use super::{exit_status, DockerRuntime, DockerTask, Exit};
use crate::error::RuntimeError;
use crate::runtime::{ExitStatus, RecoveredTask, RuntimeState};
use crate::signal::parse_signal;

/// The label naming the node a container belongs to.
pub(crate) const LABEL_NODE_ID: &str = "com.docker.swarm.node.id";

impl DockerRuntime {
    /// Lists `node`'s containers and adopts the ones this instance does not know.
    pub(super) async fn recover_node(&self, node: &Id) -> Result<Vec<RecoveredTask>, RuntimeError> {
        sweep_dead_stage_roots(Path::new(STAGE_PARENT));
        let mut filters = HashMap::new();
        filters.insert("label".to_string(), vec![format!("{LABEL_NODE_ID}={node}")]);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let list = self
            .inner
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(|e| engine("list containers", e))?;
        let mut out = Vec::new();
        for c in list {
            let (Some(container), Some(labels)) = (c.id, c.labels) else {
                continue;
            };
            let Some(task) = labels.get(LABEL_TASK_ID).and_then(|t| Id::parse(t).ok()) else {
                continue;
            };
            if self.inner.ops().contains_key(&task) {
                out.push(RecoveredTask {
                    task,
                    state: RuntimeState::Created,
                });
                continue;
            }
            if let Ok(state) = self.get(&task, |t| t.state) {
                out.push(RecoveredTask { task, state });
                continue;
            }
            let inspect = match self.inner.docker.inspect_container(&container, None).await {
                Ok(i) => i,
                // Removed since the listing.
                Err(e) if status_code(&e) == Some(404) => continue,
                Err(e) => return Err(engine("inspect container", e)),
            };
            let state = self.adopt(task, container, inspect).await;
            out.push(RecoveredTask { task, state });
        }
        Ok(out)
    }

    /// Registers one container found on the engine as task `task`; returns its state.
    async fn adopt(
        &self,
        task: Id,
        container: String,
        inspect: ContainerInspectResponse,
    ) -> RuntimeState {
        let config = inspect.config.unwrap_or_default();
        let state = inspect.state.unwrap_or_default();
        let status = state.status.unwrap_or(ContainerStateStatusEnum::EMPTY);
        let (runtime_state, exit): (RuntimeState, Option<Exit>) = match status {
            ContainerStateStatusEnum::CREATED => (RuntimeState::Created, None),
            ContainerStateStatusEnum::RUNNING
            | ContainerStateStatusEnum::PAUSED
            | ContainerStateStatusEnum::RESTARTING => (RuntimeState::Running, None),
            _ => {
                let exit = state.exit_code.map(exit_status).ok_or_else(|| {
                    format!("container {container} exited while the node was down and the engine kept no exit code")
                });
                let shown = exit.clone().unwrap_or(ExitStatus::code(-1));
                (RuntimeState::Exited(shown), Some(exit))
            }
        };
        let stop_signal = config
            .stop_signal
            .as_deref()
            .and_then(|s| parse_signal(s).ok())
            .unwrap_or(libc::SIGTERM);
        let grace = config
            .stop_timeout
            .and_then(|s| u64::try_from(s).ok())
            .map_or(Duration::from_secs(10), Duration::from_secs);
        let image_health = match config.image.as_deref() {
            Some(image) => self
                .inner
                .docker
                .inspect_image(image)
                .await
                .ok()
                .and_then(|i| image_health(i.config.and_then(|c| c.healthcheck))),
            None => None,
        };
        let mut networks = Vec::new();
        let endpoints = inspect
            .network_settings
            .and_then(|s| s.networks)
            .unwrap_or_default();
        for endpoint in endpoints.values() {
            let Some(engine_id) = endpoint.network_id.clone() else {
                continue;
            };
            let swarm_id = self
                .inner
                .docker
                .inspect_network(&engine_id, None::<InspectNetworkOptions>)
                .await
                .ok()
                .and_then(|n| n.labels)
                .and_then(|l| l.get(LABEL_NETWORK_ID).and_then(|v| Id::parse(v).ok()));
            if let Some(swarm_id) = swarm_id {
                self.inner.networks.adopt(swarm_id, &engine_id).await;
                networks.push((engine_id, swarm_id));
            }
        }
        let adopted_dir = inspect
            .host_config
            .and_then(|h| h.binds)
            .unwrap_or_default()
            .iter()
            .find_map(|b| stage_dir_of(b, &task));
        let (exit_tx, _) = watch::channel(exit);
        let t = DockerTask {
            container: container.clone(),
            stop_signal,
            grace,
            user: config.user.unwrap_or_default(),
            state: runtime_state,
            exit_tx,
            staged: Default::default(),
            adopted_dir,
            image_health,
            networks,
            ports: Vec::new(),
            running: None,
        };
        self.inner.lock().insert(task, t);
        tracing::info!(task = %task, container = %container, state = ?runtime_state, "adopted a container left by a previous run of this node");
        if runtime_state == RuntimeState::Running {
            tokio::spawn(self.inner.clone().watch_exit(task, container));
            let info = self.read_running(&task).await;
            if let Some(t) = self.inner.lock().get_mut(&task) {
                t.running = info;
            }
        } else if let RuntimeState::Exited(_) = runtime_state {
            if let Some(t) = self.inner.lock().get_mut(&task) {
                if let Some(dir) = t.adopted_dir.take() {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
        }
        runtime_state
    }
}

/// Where default stage roots live (`files::default_stage_root`).
const STAGE_PARENT: &str = "/dev/shm";

/// Deletes the default stage roots (`swarm-docker-<pid>-<n>`) of docker runtimes whose process is
/// gone (a killed daemon leaves its root behind) and which hold no file any more. A root that
/// still holds files is left alone: another node's adopted task may need them.
fn sweep_dead_stage_roots(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("swarm-docker-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        if pid <= 0 || crate::files::process_alive(pid) {
            continue;
        }
        let root = e.path();
        if holds_files(&root) {
            continue;
        }
        if let Err(err) = std::fs::remove_dir_all(&root) {
            tracing::debug!(root = %root.display(), error = %err, "a dead run's stage root was not removed");
        }
    }
}

/// Whether a directory tree holds anything but directories (unreadable counts as holding).
fn holds_files(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return true;
    };
    entries.flatten().any(|e| match e.file_type() {
        Ok(t) if t.is_dir() => holds_files(&e.path()),
        _ => true,
    })
}

/// The task's directory in a previous run's stage root, from one of its bind specs
/// (`<root>/<task id>/secrets/x:/run/secrets/x:ro`): the source path up to the task id.
fn stage_dir_of(bind: &str, task: &Id) -> Option<PathBuf> {
    let source = PathBuf::from(bind.split(':').next()?);
    let mut dir = PathBuf::new();
    for part in source.components() {
        dir.push(part);
        if part.as_os_str() == task.as_str() {
            // Only ever a directory under /dev/shm named after the adapter: never a user bind.
            let root = dir.parent()?.to_str()?;
            return root.starts_with("/dev/shm/swarm-docker-").then_some(dir);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stage_dirs_of_this_task_are_taken() {
        let task = Id::from_u128(7);
        let t = task.as_str();
        assert_eq!(
            stage_dir_of(
                &format!("/dev/shm/swarm-docker-1-0/{t}/secrets/a:/run/secrets/a:ro"),
                &task
            ),
            Some(PathBuf::from(format!("/dev/shm/swarm-docker-1-0/{t}")))
        );
        assert_eq!(stage_dir_of(&format!("/home/{t}/x:/x"), &task), None);
        assert_eq!(
            stage_dir_of("/dev/shm/swarm-docker-1-0/other/a:/a", &task),
            None
        );
    }

    #[test]
    fn only_empty_roots_of_dead_processes_are_swept() {
        let parent = tempfile::tempdir().unwrap();
        let dead_pid = libc::pid_t::MAX - 1;
        let dead = parent.path().join(format!("swarm-docker-{dead_pid}-0"));
        let dead_with_file = parent.path().join(format!("swarm-docker-{dead_pid}-1"));
        let alive = parent
            .path()
            .join(format!("swarm-docker-{}-0", std::process::id()));
        let other = parent.path().join("something-else");
        std::fs::create_dir_all(dead.join("task/secrets")).unwrap();
        std::fs::create_dir_all(dead_with_file.join("task")).unwrap();
        std::fs::write(dead_with_file.join("task/s"), b"x").unwrap();
        std::fs::create_dir_all(&alive).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        sweep_dead_stage_roots(parent.path());
        assert!(!dead.exists());
        assert!(dead_with_file.exists());
        assert!(alive.exists());
        assert!(other.exists());
    }
}
