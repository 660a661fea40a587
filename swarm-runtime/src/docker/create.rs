//! `prepare`'s engine work for the docker runtime: networks, staged files, the container and
//! its other network connections, undone in reverse when a step fails.

use bollard::models::{EndpointSettings, NetworkConnectRequest};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use swarm_core::{Id, Network};
use tokio::sync::watch;

use super::convert::{
    check_bind_sources, create_body, engine, image_health, message, status_code, Attach,
};
use super::{DockerRuntime, DockerTask, OPTIONS};
use crate::error::RuntimeError;
use crate::files::{is_root, Staged};
use crate::runtime::{runtime_options, RuntimeState, TaskConfig};
use crate::signal::parse_signal;

/// Why a container create failed: a vanished engine network is retried once.
enum CreateError {
    NetworkGone(String),
    Other(RuntimeError),
}

impl CreateError {
    fn into_runtime(self) -> RuntimeError {
        match self {
            CreateError::NetworkGone(m) => RuntimeError::Engine {
                op: "create container",
                message: m,
            },
            CreateError::Other(e) => e,
        }
    }
}

impl DockerRuntime {
    pub(super) async fn create(&self, config: &TaskConfig) -> Result<DockerTask, RuntimeError> {
        let spec = &config.container;
        let opts = runtime_options(&spec.labels, "docker", OPTIONS)?;
        let mode = opts.get("network").cloned();
        if let (Some(mode), Some(first)) = (&mode, config.networks.first()) {
            return Err(RuntimeError::invalid(format!(
                "the task is attached to swarm network {:?} and also sets runtime option \
                 swarm.runtime.docker.network={mode:?}; use one or the other",
                first.network.spec.annotations.name
            )));
        }
        let stop_signal = parse_signal(&spec.stop_signal)?;
        if spec.image.is_empty() {
            return Err(RuntimeError::invalid(
                "the docker runtime needs an image; give the service one",
            ));
        }
        check_bind_sources(config)?;
        let image = match self.inner.docker.inspect_image(&spec.image).await {
            Ok(i) => i,
            Err(e) if status_code(&e) == Some(404) => {
                return Err(RuntimeError::ImageNotFound {
                    image: spec.image.clone(),
                    reason: message(&e),
                })
            }
            Err(e) => return Err(engine("inspect image", e)),
        };
        let image_health = image_health(image.config.and_then(|c| c.healthcheck));
        // One endpoint per swarm network, in the order given.
        let mut nets: Vec<(&Network, &[String])> = Vec::new();
        for a in &config.networks {
            if !nets.iter().any(|(n, _)| n.id == a.network.id) {
                nets.push((&a.network, &a.aliases));
            }
        }
        let swarm: Vec<&Network> = nets.iter().map(|(n, _)| *n).collect();
        let ids: Vec<Id> = swarm.iter().map(|n| n.id).collect();
        let mut engine_ids = self.inner.networks.acquire(&swarm).await?;
        let staged = match self.inner.stage.stage(config, is_root()) {
            Ok(s) => s,
            Err(e) => {
                self.inner.networks.release(&ids).await;
                return Err(e);
            }
        };
        let mut retried = false;
        let result = loop {
            let attach = match (engine_ids.first(), nets.first()) {
                (Some(id), Some((_, aliases))) => Attach::Swarm {
                    network: id.clone(),
                    aliases: aliases.to_vec(),
                },
                _ => Attach::Mode(mode.clone()),
            };
            let r = self
                .create_container(config, &staged, stop_signal, attach)
                .await;
            match r {
                // The bridge went away between acquire and create (removed by another adapter
                // sharing this engine): take it again, once.
                Err(CreateError::NetworkGone(_)) if !retried => {
                    retried = true;
                    self.inner.networks.release(&ids).await;
                    match self.inner.networks.acquire(&swarm).await {
                        Ok(e) => engine_ids = e,
                        Err(e) => {
                            self.inner.stage.unstage(&config.task_id);
                            return Err(e);
                        }
                    }
                }
                Err(e) => break Err(e.into_runtime()),
                Ok(container) => {
                    break self
                        .connect_rest(&container, &nets, &engine_ids)
                        .await
                        .map(|()| container)
                }
            }
        };
        let container = match result {
            Ok(c) => c,
            Err(e) => {
                self.inner.stage.unstage(&config.task_id);
                self.inner.networks.release(&ids).await;
                return Err(e);
            }
        };
        let (exit_tx, _) = watch::channel(None);
        Ok(DockerTask {
            container,
            stop_signal,
            grace: spec.effective_stop_grace_period(),
            user: spec.user.clone(),
            state: RuntimeState::Created,
            exit_tx,
            staged,
            image_health,
            networks: engine_ids.into_iter().zip(ids).collect(),
            ports: config.ports.clone(),
            running: None,
            adopted_dir: None,
        })
    }

    /// Creates the container; the error tells a vanished network apart.
    async fn create_container(
        &self,
        config: &TaskConfig,
        staged: &Staged,
        stop_signal: i32,
        attach: Attach,
    ) -> Result<String, CreateError> {
        let swarm = matches!(attach, Attach::Swarm { .. });
        let body = create_body(config, staged, stop_signal, attach);
        let create = CreateContainerOptionsBuilder::default()
            .name(&config.task_name)
            .build();
        match self.inner.docker.create_container(Some(create), body).await {
            Ok(c) => Ok(c.id),
            Err(e) => Err(match status_code(&e) {
                Some(404) if swarm && message(&e).starts_with("network ") => {
                    CreateError::NetworkGone(message(&e))
                }
                Some(404) => CreateError::Other(RuntimeError::ImageNotFound {
                    image: config.container.image.clone(),
                    reason: message(&e),
                }),
                // Bad mounts (`invalid mount config for type ...`), bad ports, bad options.
                Some(400) => CreateError::Other(RuntimeError::invalid(message(&e))),
                _ => CreateError::Other(engine("create container", e)),
            }),
        }
    }

    /// Connects a created container to the task's swarm networks after the first (with their
    /// aliases); on failure the container is removed.
    async fn connect_rest(
        &self,
        container: &str,
        nets: &[(&Network, &[String])],
        engine_ids: &[String],
    ) -> Result<(), RuntimeError> {
        for ((net, aliases), id) in nets.iter().zip(engine_ids).skip(1) {
            let req = NetworkConnectRequest {
                container: container.to_string(),
                endpoint_config: Some(EndpointSettings {
                    aliases: Some(aliases.to_vec()),
                    ..EndpointSettings::default()
                }),
            };
            if let Err(e) = self.inner.docker.connect_network(id, req).await {
                self.remove_container(container).await.ok();
                return Err(RuntimeError::Engine {
                    op: "connect network",
                    message: format!(
                        "swarm network {:?}: {}",
                        net.spec.annotations.name,
                        message(&e)
                    ),
                });
            }
        }
        Ok(())
    }

    /// Removes a container and its anonymous volumes (named volumes stay, as in Docker).
    pub(super) async fn remove_container(&self, container: &str) -> Result<(), RuntimeError> {
        let opts = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match self
            .inner
            .docker
            .remove_container(container, Some(opts))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if status_code(&e) == Some(404) => Ok(()),
            Err(e) => Err(engine("remove container", e)),
        }
    }
}
