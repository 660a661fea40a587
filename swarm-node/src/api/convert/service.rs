//! Service specs (both ways) and services (out).

use std::collections::HashMap;

use bollard::models;
use serde::Serialize;
use swarm_core::objects::service::{
    EndpointMode, EndpointSpec, FailureAction, GivenParts, PortConfig, Protocol, PublishMode,
    UpdateConfig, UpdateOrder, UpdateState,
};
use swarm_core::{Annotations, Service, ServiceMode, ServiceSpec};

use super::task::{networks_in, task_spec_in, task_spec_out, TaskSpecJson};
use super::{count, labels_in, labels_out, nanos, non_empty, opt_duration, ts, version, Result};
use crate::api::error::ApiError;
use crate::control::service::ServiceStatus;
use crate::control::ServiceRequest;

/// `POST /services/create` (or `/update`) body to a request, with SwarmKit's defaults for what is
/// missing.
pub(crate) fn service_spec_in(s: models::ServiceSpec) -> Result<ServiceRequest> {
    let task = task_spec_in(s.task_template.unwrap_or_default())?;
    let given = GivenParts {
        update: s.update_config.is_some(),
        rollback: s.rollback_config.is_some(),
        endpoint: s.endpoint_spec.is_some(),
        restart: task.restart_given,
    };
    let mut spec = ServiceSpec {
        given,
        annotations: Annotations {
            name: s.name.unwrap_or_default(),
            labels: labels_in(s.labels),
        },
        task: task.spec,
        mode: mode_in(s.mode)?,
        update: s
            .update_config
            .map(|u| update_in("UpdateConfig", u))
            .transpose()?
            .unwrap_or_default(),
        rollback: s
            .rollback_config
            .map(|r| {
                update_in(
                    "RollbackConfig",
                    models::ServiceSpecUpdateConfig {
                        parallelism: r.parallelism,
                        delay: r.delay,
                        failure_action: r.failure_action.map(|a| match a {
                            models::ServiceSpecRollbackConfigFailureActionEnum::CONTINUE => {
                                models::ServiceSpecUpdateConfigFailureActionEnum::CONTINUE
                            }
                            models::ServiceSpecRollbackConfigFailureActionEnum::PAUSE => {
                                models::ServiceSpecUpdateConfigFailureActionEnum::PAUSE
                            }
                            models::ServiceSpecRollbackConfigFailureActionEnum::EMPTY => {
                                models::ServiceSpecUpdateConfigFailureActionEnum::EMPTY
                            }
                        }),
                        monitor: r.monitor,
                        max_failure_ratio: r.max_failure_ratio,
                        order: r.order.map(|o| match o {
                            models::ServiceSpecRollbackConfigOrderEnum::START_FIRST => {
                                models::ServiceSpecUpdateConfigOrderEnum::START_FIRST
                            }
                            models::ServiceSpecRollbackConfigOrderEnum::STOP_FIRST => {
                                models::ServiceSpecUpdateConfigOrderEnum::STOP_FIRST
                            }
                            models::ServiceSpecRollbackConfigOrderEnum::EMPTY => {
                                models::ServiceSpecUpdateConfigOrderEnum::EMPTY
                            }
                        }),
                    },
                )
            })
            .transpose()?
            .unwrap_or_default(),
        endpoint: endpoint_in(s.endpoint_spec)?,
    };
    if spec.task.networks.is_empty() {
        // The deprecated ServiceSpec.Networks, as older clients send it.
        spec.task.networks = networks_in(s.networks);
    }
    Ok(ServiceRequest {
        spec,
        secrets: task.secrets,
        configs: task.configs,
    })
}

fn mode_in(m: Option<models::ServiceSpecMode>) -> Result<ServiceMode> {
    let Some(m) = m else {
        return Ok(ServiceMode::default());
    };
    let set = [
        m.replicated.is_some(),
        m.global.is_some(),
        m.replicated_job.is_some(),
        m.global_job.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if set > 1 {
        return Err(ApiError::bad_request(
            "invalid service mode: give only one of Replicated, Global, ReplicatedJob and GlobalJob",
        ));
    }
    let replicas = |n: Option<i64>, default: u64| -> Result<u64> {
        n.map(|n| count("Number of replicas", n))
            .transpose()
            .map(|n| n.unwrap_or(default))
    };
    Ok(if let Some(r) = m.replicated {
        ServiceMode::Replicated {
            replicas: replicas(r.replicas, 1)?,
        }
    } else if m.global.is_some() {
        ServiceMode::Global
    } else if let Some(j) = m.replicated_job {
        let max_concurrent = replicas(j.max_concurrent, 1)?;
        ServiceMode::ReplicatedJob {
            max_concurrent,
            total_completions: replicas(j.total_completions, max_concurrent)?,
        }
    } else if m.global_job.is_some() {
        ServiceMode::GlobalJob
    } else {
        ServiceMode::default()
    })
}

fn update_in(field: &str, u: models::ServiceSpecUpdateConfig) -> Result<UpdateConfig> {
    use models::ServiceSpecUpdateConfigFailureActionEnum as A;
    use models::ServiceSpecUpdateConfigOrderEnum as O;
    let d = UpdateConfig::default();
    Ok(UpdateConfig {
        parallelism: match u.parallelism {
            Some(n) => count(&format!("{field}: Parallelism"), n)?,
            None => d.parallelism,
        },
        delay: opt_duration(&format!("TaskSpec: {field} Delay"), u.delay)?.unwrap_or(d.delay),
        failure_action: match u.failure_action {
            Some(A::CONTINUE) => FailureAction::Continue,
            Some(A::ROLLBACK) => FailureAction::Rollback,
            Some(A::PAUSE) | Some(A::EMPTY) | None => FailureAction::Pause,
        },
        monitor: opt_duration(&format!("TaskSpec: {field} Monitor"), u.monitor)?
            .unwrap_or(d.monitor),
        max_failure_ratio: u.max_failure_ratio.unwrap_or(0.0),
        order: match u.order {
            Some(O::START_FIRST) => UpdateOrder::StartFirst,
            Some(O::STOP_FIRST) | Some(O::EMPTY) | None => UpdateOrder::StopFirst,
        },
    })
}

fn endpoint_in(e: Option<models::EndpointSpec>) -> Result<EndpointSpec> {
    let e = e.unwrap_or_default();
    let port = |n: Option<i64>, what: &str| -> Result<u32> {
        u32::try_from(n.unwrap_or(0)).map_err(|_| {
            ApiError::bad_request(format!(
                "invalid port {what}: {} is out of range",
                n.unwrap_or(0)
            ))
        })
    };
    Ok(EndpointSpec {
        mode: match e.mode {
            Some(models::EndpointSpecModeEnum::DNSRR) => EndpointMode::Dnsrr,
            _ => EndpointMode::Vip,
        },
        ports: e
            .ports
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                Ok(PortConfig {
                    name: p.name.unwrap_or_default(),
                    protocol: match p.protocol {
                        Some(models::EndpointPortConfigProtocolEnum::UDP) => Protocol::Udp,
                        Some(models::EndpointPortConfigProtocolEnum::SCTP) => Protocol::Sctp,
                        _ => Protocol::Tcp,
                    },
                    target_port: port(p.target_port, "TargetPort")?,
                    published_port: port(p.published_port, "PublishedPort")?,
                    publish_mode: match p.publish_mode {
                        Some(models::EndpointPortConfigPublishModeEnum::HOST) => PublishMode::Host,
                        _ => PublishMode::Ingress,
                    },
                })
            })
            .collect::<Result<_>>()?,
    })
}

fn update_out(u: &UpdateConfig) -> models::ServiceSpecUpdateConfig {
    use models::ServiceSpecUpdateConfigFailureActionEnum as A;
    models::ServiceSpecUpdateConfig {
        parallelism: Some(i64::try_from(u.parallelism).unwrap_or(i64::MAX)),
        // Docker leaves a zero delay out.
        delay: non_empty(nanos(u.delay)),
        failure_action: Some(match u.failure_action {
            FailureAction::Pause => A::PAUSE,
            FailureAction::Continue => A::CONTINUE,
            FailureAction::Rollback => A::ROLLBACK,
        }),
        monitor: Some(nanos(u.monitor)),
        max_failure_ratio: Some(u.max_failure_ratio),
        order: Some(match u.order {
            UpdateOrder::StopFirst => models::ServiceSpecUpdateConfigOrderEnum::STOP_FIRST,
            UpdateOrder::StartFirst => models::ServiceSpecUpdateConfigOrderEnum::START_FIRST,
        }),
    }
}

fn rollback_out(u: &UpdateConfig) -> models::ServiceSpecRollbackConfig {
    use models::ServiceSpecRollbackConfigFailureActionEnum as A;
    models::ServiceSpecRollbackConfig {
        parallelism: Some(i64::try_from(u.parallelism).unwrap_or(i64::MAX)),
        // Docker leaves a zero delay out.
        delay: non_empty(nanos(u.delay)),
        failure_action: Some(match u.failure_action {
            FailureAction::Continue => A::CONTINUE,
            // A rollback never rolls back: SwarmKit pauses it.
            FailureAction::Pause | FailureAction::Rollback => A::PAUSE,
        }),
        monitor: Some(nanos(u.monitor)),
        max_failure_ratio: Some(u.max_failure_ratio),
        order: Some(match u.order {
            UpdateOrder::StopFirst => models::ServiceSpecRollbackConfigOrderEnum::STOP_FIRST,
            UpdateOrder::StartFirst => models::ServiceSpecRollbackConfigOrderEnum::START_FIRST,
        }),
    }
}

fn endpoint_out(e: &EndpointSpec) -> models::EndpointSpec {
    models::EndpointSpec {
        mode: Some(match e.mode {
            EndpointMode::Vip => models::EndpointSpecModeEnum::VIP,
            EndpointMode::Dnsrr => models::EndpointSpecModeEnum::DNSRR,
        }),
        ports: (!e.ports.is_empty()).then(|| e.ports.iter().map(port_out).collect()),
    }
}

pub(crate) fn port_out(p: &PortConfig) -> models::EndpointPortConfig {
    models::EndpointPortConfig {
        name: (!p.name.is_empty()).then(|| p.name.clone()),
        protocol: Some(match p.protocol {
            Protocol::Tcp => models::EndpointPortConfigProtocolEnum::TCP,
            Protocol::Udp => models::EndpointPortConfigProtocolEnum::UDP,
            Protocol::Sctp => models::EndpointPortConfigProtocolEnum::SCTP,
        }),
        target_port: Some(i64::from(p.target_port)),
        published_port: Some(i64::from(p.published_port)),
        publish_mode: Some(match p.publish_mode {
            PublishMode::Ingress => models::EndpointPortConfigPublishModeEnum::INGRESS,
            PublishMode::Host => models::EndpointPortConfigPublishModeEnum::HOST,
        }),
    }
}

/// A service spec as Docker writes it: bollard's model with the task template in
/// [`TaskSpecJson`] (for the `Healthcheck` spelling).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ServiceSpecJson {
    #[serde(flatten)]
    spec: models::ServiceSpec,
    #[serde(rename = "TaskTemplate")]
    task: TaskSpecJson,
}

impl ServiceSpecJson {
    /// Back to bollard's model (tests decode it again).
    #[cfg(test)]
    pub(crate) fn into_model(self) -> models::ServiceSpec {
        models::ServiceSpec {
            task_template: Some(self.task.into_model()),
            ..self.spec
        }
    }
}

/// Our service spec to Docker's. UpdateConfig, RollbackConfig and EndpointSpec appear when the
/// client gave them or with `insert_defaults` (Docker's `insertDefaults=true`; the endpoint spec
/// only when given, as Docker 20.10); never UpdateConfig/RollbackConfig for jobs.
pub(crate) fn service_spec_out(s: &ServiceSpec, insert_defaults: bool) -> ServiceSpecJson {
    let mode = match s.mode {
        ServiceMode::Replicated { replicas } => models::ServiceSpecMode {
            replicated: Some(models::ServiceSpecModeReplicated {
                replicas: Some(i64::try_from(replicas).unwrap_or(i64::MAX)),
            }),
            ..Default::default()
        },
        ServiceMode::Global => models::ServiceSpecMode {
            global: Some(HashMap::new()),
            ..Default::default()
        },
        ServiceMode::ReplicatedJob {
            max_concurrent,
            total_completions,
        } => models::ServiceSpecMode {
            replicated_job: Some(models::ServiceSpecModeReplicatedJob {
                max_concurrent: Some(i64::try_from(max_concurrent).unwrap_or(i64::MAX)),
                total_completions: Some(i64::try_from(total_completions).unwrap_or(i64::MAX)),
            }),
            ..Default::default()
        },
        ServiceMode::GlobalJob => models::ServiceSpecMode {
            global_job: Some(HashMap::new()),
            ..Default::default()
        },
    };
    let job = s.mode.is_job();
    let given = s.given;
    let spec = models::ServiceSpec {
        name: Some(s.annotations.name.clone()),
        labels: labels_out(&s.annotations.labels),
        task_template: None,
        mode: Some(mode),
        update_config: (!job && (given.update || insert_defaults)).then(|| update_out(&s.update)),
        rollback_config: (!job && (given.rollback || insert_defaults))
            .then(|| rollback_out(&s.rollback)),
        networks: None,
        endpoint_spec: given.endpoint.then(|| endpoint_out(&s.endpoint)),
    };
    ServiceSpecJson {
        spec,
        task: task_spec_out(&s.task, insert_defaults, given.restart),
    }
}

/// A service as Docker shows it: bollard's model plus `PreviousSpec`, which that model lacks.
#[derive(Debug, Serialize)]
pub(crate) struct ServiceJson {
    #[serde(flatten)]
    service: models::Service,
    #[serde(rename = "Spec")]
    spec: ServiceSpecJson,
    #[serde(rename = "PreviousSpec", skip_serializing_if = "Option::is_none")]
    previous_spec: Option<ServiceSpecJson>,
    /// swarm's own field: how this node's runtime networks the service's tasks, when that is not
    /// what Docker's fields suggest (the process runtime's host networking).
    #[serde(rename = "NetworkMode", skip_serializing_if = "Option::is_none")]
    network_mode: Option<&'static str>,
}

impl ServiceJson {
    /// Marks the service as run on the node's host network (the process runtime): the `docker`
    /// CLI shows `Endpoint.VirtualIPs` as `[{"NetworkID": "host", "Addr": "127.0.0.1/8"}]` (it
    /// drops fields it does not know); API clients also get `NetworkMode`, which says it in words.
    pub(crate) fn on_host_network(mut self) -> ServiceJson {
        self.network_mode = Some(HOST_NETWORK_NOTE);
        if let Some(e) = self.service.endpoint.as_mut() {
            e.virtual_ips = Some(vec![models::ServiceEndpointVirtualIps {
                network_id: Some("host".into()),
                addr: Some("127.0.0.1/8".into()),
            }]);
        }
        self
    }
}

/// What `docker service inspect` says of services run by the process runtime.
pub(crate) const HOST_NETWORK_NOTE: &str =
    "host: the process runtime runs tasks on the node's own \
     network; swarm networks isolate no packets, but each task resolves service names (VIPs, \
     dnsrr, tasks.<service>) of its own networks through the resolver named in its SWARM_RESOLVER \
     variable, VIPs are reached where the node runs --vip-dataplane, and published ports reach \
     tasks at 127.0.0.1:<target port>";

/// A service as `docker service inspect` shows it (`PreviousSpec` included), with `ServiceStatus`
/// when `status` is given.
pub(crate) fn service_out(
    s: &Service,
    status: Option<ServiceStatus>,
    insert_defaults: bool,
) -> ServiceJson {
    let service = models::Service {
        id: Some(s.id.to_string()),
        version: version(&s.meta),
        created_at: ts(s.meta.created_at),
        updated_at: ts(s.meta.updated_at),
        spec: None,
        endpoint: Some(models::ServiceEndpoint {
            // Empty when the client gave no EndpointSpec, as Docker shows it.
            spec: Some(if s.spec.given.endpoint {
                endpoint_out(&s.endpoint.spec)
            } else {
                models::EndpointSpec::default()
            }),
            ports: (!s.endpoint.ports.is_empty())
                .then(|| s.endpoint.ports.iter().map(port_out).collect()),
            virtual_ips: (!s.endpoint.virtual_ips.is_empty()).then(|| {
                s.endpoint
                    .virtual_ips
                    .iter()
                    .map(|v| models::ServiceEndpointVirtualIps {
                        network_id: Some(v.network_id.to_string()),
                        addr: Some(v.addr.clone()),
                    })
                    .collect()
            }),
        }),
        update_status: s
            .update_status
            .as_ref()
            .map(|u| models::ServiceUpdateStatus {
                state: Some(update_state_out(u.state)),
                started_at: ts(u.started_at),
                completed_at: u.completed_at.and_then(ts),
                message: Some(u.message.clone()),
            }),
        service_status: status.map(|st| models::ServiceServiceStatus {
            running_tasks: Some(st.running),
            desired_tasks: Some(st.desired),
            completed_tasks: Some(st.completed),
        }),
        job_status: s.job_status.as_ref().map(|j| models::ServiceJobStatus {
            job_iteration: Some(models::ObjectVersion {
                index: Some(j.job_iteration.0),
            }),
            last_execution: ts(j.last_execution),
        }),
    };
    ServiceJson {
        network_mode: None,
        service,
        spec: service_spec_out(&s.spec, insert_defaults),
        previous_spec: s
            .previous_spec
            .as_ref()
            .map(|p| service_spec_out(p, insert_defaults)),
    }
}

fn update_state_out(s: UpdateState) -> models::ServiceUpdateStatusStateEnum {
    use models::ServiceUpdateStatusStateEnum as D;
    match s {
        UpdateState::Updating => D::UPDATING,
        UpdateState::Paused => D::PAUSED,
        UpdateState::Completed => D::COMPLETED,
        UpdateState::RollbackStarted => D::ROLLBACK_STARTED,
        UpdateState::RollbackPaused => D::ROLLBACK_PAUSED,
        UpdateState::RollbackCompleted => D::ROLLBACK_COMPLETED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::json::from_value;
    use serde_json::json;

    #[test]
    fn defaults_follow_semantics() {
        let req = service_spec_in(
            from_value(json!({"Name": "web", "TaskTemplate": {"ContainerSpec": {"Image": "x"}}}))
                .expect("json"),
        )
        .expect("converts");
        let s = req.spec;
        assert_eq!(s.mode, ServiceMode::Replicated { replicas: 1 });
        assert_eq!(s.update, UpdateConfig::default());
        assert_eq!(s.rollback, UpdateConfig::default());
        assert_eq!(s.task.restart, Default::default());
        let job = mode_in(Some(models::ServiceSpecMode {
            replicated_job: Some(models::ServiceSpecModeReplicatedJob {
                max_concurrent: Some(3),
                total_completions: None,
            }),
            ..Default::default()
        }))
        .expect("mode");
        assert_eq!(
            job,
            ServiceMode::ReplicatedJob {
                max_concurrent: 3,
                total_completions: 3
            }
        );
    }

    #[test]
    fn spec_round_trips_through_docker_json() {
        let body = json!({
            "Name": "web", "Labels": {"a": "b"},
            "TaskTemplate": {
                "ContainerSpec": {"Image": "busybox", "Args": ["sleep", "9"], "Env": ["A=1"],
                    "StopGracePeriod": 3000000000i64,
                    "Mounts": [{"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1024}}],
                    "Healthcheck": {"Test": ["CMD", "true"], "Interval": 1000000000, "Retries": 2}},
                "RestartPolicy": {"Condition": "on-failure", "Delay": 1, "MaxAttempts": 3},
                "Placement": {"Constraints": ["node.role==manager"], "MaxReplicas": 2,
                    "Preferences": [{"Spread": {"SpreadDescriptor": "node.labels.az"}}]},
                "Resources": {"Limits": {"MemoryBytes": 8388608}},
                "LogDriver": {"Name": "json-file", "Options": {"max-size": "1m"}},
                "ForceUpdate": 2
            },
            "Mode": {"Replicated": {"Replicas": 3}},
            "UpdateConfig": {"Parallelism": 2, "Delay": 5, "FailureAction": "rollback", "Monitor": 7,
                "MaxFailureRatio": 0.5, "Order": "start-first"},
            "EndpointSpec": {"Mode": "vip", "Ports": [{"Protocol": "udp", "TargetPort": 53,
                "PublishedPort": 5353, "PublishMode": "host"}]}
        });
        let first = service_spec_in(from_value(body).expect("json")).expect("in");
        let out =
            serde_json::to_value(service_spec_out(&first.spec, false).into_model()).expect("out");
        let second = service_spec_in(from_value(out).expect("json")).expect("in again");
        assert_eq!(first.spec, second.spec);
        assert_eq!(first.spec.update.order, UpdateOrder::StartFirst);
        assert_eq!(first.spec.endpoint.ports[0].publish_mode, PublishMode::Host);
    }

    #[test]
    fn bad_values_are_client_errors() {
        for body in [
            json!({"Mode": {"Replicated": {"Replicas": -1}}}),
            json!({"Mode": {"Replicated": {}, "Global": {}}}),
            json!({"TaskTemplate": {"RestartPolicy": {"Delay": -5}}}),
            json!({"TaskTemplate": {"Runtime": "plugin"}}),
            json!({"EndpointSpec": {"Ports": [{"TargetPort": -80}]}}),
        ] {
            let spec: models::ServiceSpec = from_value(body.clone()).expect("json");
            let e = service_spec_in(spec).expect_err("refused");
            assert_eq!(e.status.as_u16(), 400, "{body}");
        }
    }
}
