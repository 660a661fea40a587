//! Services: create, update (or roll back), remove, and the status `docker service ls` shows.
//!
//! Secrets and configs arrive as [`FileRef`]s naming the object by id and/or name (the Docker CLI
//! sends both; other clients may send one); they are resolved to ids inside the same transaction
//! that writes the service, so a reference can never point at an object removed meanwhile. Network
//! attachments are resolved the same way (id, name or id prefix) and stored by id.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use swarm_core::ipam;
use swarm_core::objects::service::{
    ConfigReference, Endpoint, EndpointMode, FileTarget, JobStatus, PortConfig, PublishMode,
    SecretReference, VirtualIp,
};
use swarm_core::validate::{
    validate_service_spec, validate_service_update, validate_task_counts, ServiceLimits, SpecError,
};
use swarm_core::{
    Config, Id, Meta, Network, ObjectKind, Secret, Service, ServiceMode, ServiceSpec, StoreObject,
    TaskState, Tx, Version,
};
use swarm_sched::{apply_service_update, rollback_service, RollbackError};

use super::resolve::resolve;
use super::{Control, ControlError};

/// A secret or config reference as a client gives it: by id, by name, or both.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileRef {
    /// Object id (may be empty).
    pub id: String,
    /// Object name (may be empty).
    pub name: String,
    /// Where the file appears in the task.
    pub target: FileTarget,
}

/// A service spec plus the secret and config references still to resolve. The references in
/// `spec.task.container.secrets` / `.configs` are ignored and replaced by the resolved ones.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceRequest {
    /// The spec, with defaults filled in.
    pub spec: ServiceSpec,
    /// Secrets to mount.
    pub secrets: Vec<FileRef>,
    /// Configs to mount.
    pub configs: Vec<FileRef>,
}

/// Task counts shown by `docker service ls` (SwarmKit's `ListServiceStatuses`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceStatus {
    /// Tasks in state running.
    pub running: u64,
    /// Replicas wanted (replicated), `max_concurrent` (replicated job), or tasks desired running or
    /// complete (global modes).
    pub desired: u64,
    /// Tasks of the current job iteration that completed.
    pub completed: u64,
}

impl Control {
    /// `docker service create`. The registry credentials are accepted for compatibility but not
    /// kept: the store's container spec has no place for pull options yet.
    pub async fn create_service(
        &self,
        req: ServiceRequest,
        _registry_auth: Option<&str>,
    ) -> Result<Id, ControlError> {
        let id = self.new_id();
        let now = self.now();
        self.commit(|tx| {
            let spec = prepare_spec(tx, req, &self.limits)?;
            check_port_conflicts(tx, &spec, None)?;
            let endpoint = self.allocate_endpoint(tx, &spec, None, &Endpoint::default())?;
            let job_status = spec.mode.is_job().then_some(JobStatus {
                job_iteration: Version(0),
                last_execution: now,
            });
            tx.create(Service {
                id,
                meta: Meta::default(),
                endpoint,
                spec,
                spec_version: Version(0),
                previous_spec: None,
                previous_spec_version: None,
                update_status: None,
                job_status,
            })?;
            Ok(id)
        })
        .await
    }

    /// `docker service update` at `version` (the version the caller read). With `rollback`, the
    /// request's spec is ignored and the previous spec is restored (`docker service rollback`).
    pub async fn update_service(
        &self,
        input: &str,
        version: u64,
        req: ServiceRequest,
        rollback: bool,
    ) -> Result<(), ControlError> {
        let now = self.now();
        self.commit(|tx| {
            let cur = resolve::<Service>(tx.committed(), input)?;
            let mut next = if rollback {
                let next = rollback_service(&cur, now).map_err(|e| match e {
                    // SwarmKit names the service by id here.
                    RollbackError::NoPreviousSpec { .. } => ControlError::FailedPrecondition(
                        format!("service {} does not have a previous spec", cur.id),
                    ),
                })?;
                // The previous spec passed the cap of its day; this manager's may be lower.
                validate_task_counts(&next.spec.mode, &self.limits)?;
                next
            } else {
                let spec = prepare_spec(tx, req, &self.limits)?;
                validate_service_update(&cur.spec, &spec).map_err(refused_update)?;
                if spec.endpoint != cur.spec.endpoint {
                    check_port_conflicts(tx, &spec, Some(cur.id))?;
                }
                apply_service_update(&cur, spec, now)
            };
            if rollback && next.spec.endpoint != cur.spec.endpoint {
                check_port_conflicts(tx, &next.spec, Some(cur.id))?;
            }
            next.endpoint = self.allocate_endpoint(tx, &next.spec, Some(cur.id), &cur.endpoint)?;
            next.meta.version = Version(version);
            tx.update(next)?;
            Ok(())
        })
        .await
    }

    /// The endpoint `spec` gets: its ports with every ingress port published as 0 given a port of
    /// the dynamic range (30000-32767, SwarmKit's), keeping the one `prev` allocated for the same
    /// target and protocol. Host-mode ports keep 0 (the node picks one per task). Every port the
    /// service did not publish before is checked with the node's [`crate::backend::PortCheck`].
    fn allocate_endpoint(
        &self,
        tx: &Tx<'_>,
        spec: &ServiceSpec,
        service: Option<Id>,
        prev: &Endpoint,
    ) -> Result<Endpoint, ControlError> {
        let mut taken: std::collections::BTreeSet<(u32, swarm_core::objects::service::Protocol)> =
            ports_of_others(tx, service)
                .into_iter()
                .filter(|(_, p)| p.published_port != 0)
                .map(|(_, p)| (p.published_port, p.protocol))
                .collect();
        for p in &spec.endpoint.ports {
            if p.published_port != 0 {
                taken.insert((p.published_port, p.protocol));
            }
        }
        let was_published = |p: &PortConfig| {
            prev.ports.iter().any(|q| {
                q.published_port == p.published_port
                    && q.protocol == p.protocol
                    && q.publish_mode == p.publish_mode
            })
        };
        let check = |p: &PortConfig| -> Result<(), ControlError> {
            match &self.access.ports {
                Some(c) if !was_published(p) => c.check(p).map_err(|reason| {
                    ControlError::InvalidArgument(format!(
                        "port {}/{} cannot be published on this node: {reason}",
                        p.published_port,
                        p.protocol.as_str()
                    ))
                }),
                _ => Ok(()),
            }
        };
        let mut ports = Vec::with_capacity(spec.endpoint.ports.len());
        for p in &spec.endpoint.ports {
            let mut p = p.clone();
            if p.publish_mode == PublishMode::Ingress && p.published_port == 0 {
                let kept = prev.spec.ports.iter().zip(&prev.ports).find(|(s, a)| {
                    s.published_port == 0
                        && s.publish_mode == PublishMode::Ingress
                        && s.target_port == p.target_port
                        && s.protocol == p.protocol
                        && !taken.contains(&(a.published_port, a.protocol))
                });
                p.published_port = match kept {
                    Some((_, a)) => a.published_port,
                    None => {
                        let mut found = None;
                        for port in DYNAMIC_PORTS {
                            if taken.contains(&(port, p.protocol)) {
                                continue;
                            }
                            let mut candidate = p.clone();
                            candidate.published_port = port;
                            if check(&candidate).is_ok() {
                                found = Some(port);
                                break;
                            }
                        }
                        found.ok_or_else(|| {
                            ControlError::InvalidArgument(format!(
                                "no free port left in the dynamic range {}-{} for target port {}/{}",
                                DYNAMIC_PORTS.start(),
                                DYNAMIC_PORTS.end(),
                                p.target_port,
                                p.protocol.as_str()
                            ))
                        })?
                    }
                };
                taken.insert((p.published_port, p.protocol));
            } else if p.published_port != 0 {
                check(&p)?;
            }
            ports.push(p);
        }
        Ok(Endpoint {
            spec: spec.endpoint.clone(),
            ports,
            virtual_ips: allocate_vips(tx, spec, service, prev)?,
        })
    }

    /// `docker service rm`. The orchestrator removes the service's tasks.
    pub async fn remove_service(&self, input: &str) -> Result<(), ControlError> {
        self.commit(|tx| {
            let cur = resolve::<Service>(tx.committed(), input)?;
            tx.remove(ObjectKind::Service, &cur.id)?;
            Ok(())
        })
        .await
    }
}

/// The range ingress ports published as 0 are allocated from (SwarmKit's).
const DYNAMIC_PORTS: std::ops::RangeInclusive<u32> = 30000..=32767;

/// Task counts of `service` (see [`ServiceStatus`]), from the store's per-service counts: no
/// task is read for a replicated service or job (`service ls` on a million tasks costs a probe
/// per service). A global service's desired count is read from its tasks (one per node).
pub fn service_status(store: &swarm_core::Store, service: &Service) -> ServiceStatus {
    let iteration = service.job_status.as_ref().map(|j| j.job_iteration);
    let counts = store.task_counts(&service.id, iteration);
    let desired = match service.spec.mode {
        ServiceMode::Replicated { replicas } => replicas,
        ServiceMode::ReplicatedJob { max_concurrent, .. } => max_concurrent,
        ServiceMode::Global | ServiceMode::GlobalJob => store
            .tasks_by_service(&service.id)
            .filter(|t| iteration.is_none() || t.job_iteration == iteration)
            .filter(|t| {
                t.desired_state == TaskState::Running
                    || (t.desired_state == TaskState::Complete
                        && t.status.state != TaskState::Complete)
            })
            .count() as u64,
    };
    ServiceStatus {
        desired,
        running: counts.running,
        completed: if iteration.is_some() {
            counts.completed
        } else {
            0
        },
    }
}

/// The virtual IPs `spec` gets (endpoint mode `vip`; none for `dnsrr`): one on each network it
/// is attached to, the one `prev` holds on that network if any (a service keeps its VIP across
/// updates and rollbacks while it stays attached), else the lowest free address of the network's
/// first pool ([`swarm_core::ipam`]) among the other services' VIPs there. A network stored
/// without an allocation gives no VIP.
fn allocate_vips(
    tx: &Tx<'_>,
    spec: &ServiceSpec,
    service: Option<Id>,
    prev: &Endpoint,
) -> Result<Vec<VirtualIp>, ControlError> {
    if spec.endpoint.mode != EndpointMode::Vip {
        return Ok(Vec::new());
    }
    let mut out: Vec<VirtualIp> = Vec::with_capacity(spec.task.networks.len());
    for att in &spec.task.networks {
        // `prepare_spec` resolved every target to a network id.
        let Ok(network_id) = att.target.parse::<Id>() else {
            continue;
        };
        if out.iter().any(|v| v.network_id == network_id) {
            continue;
        }
        if let Some(v) = prev.virtual_ips.iter().find(|v| v.network_id == network_id) {
            out.push(v.clone());
            continue;
        }
        let Some(net) = tx.get::<Network>(&network_id) else {
            continue;
        };
        let Some(config) = net.ipam.as_ref().and_then(|i| i.configs.first()) else {
            continue;
        };
        let bad = |e: ipam::IpamError| {
            ControlError::FailedPrecondition(format!(
                "cannot allocate a virtual IP on network {}: {e}",
                net.spec.annotations.name
            ))
        };
        let pool = ipam::Pool::parse(config).map_err(bad)?;
        let used: BTreeSet<IpAddr> = tx
            .list::<Service>()
            .iter()
            .filter(|s| Some(s.id) != service)
            .flat_map(|s| s.endpoint.virtual_ips.iter())
            .filter(|v| v.network_id == network_id)
            .filter_map(|v| v.addr.split('/').next()?.parse().ok())
            .collect();
        let addr = pool.allocate(&used).map_err(bad)?;
        out.push(VirtualIp {
            network_id,
            addr: pool.subnet.with_host(addr),
        });
    }
    Ok(out)
}

/// Resolves references and networks, then validates the spec.
fn prepare_spec(
    tx: &Tx<'_>,
    req: ServiceRequest,
    limits: &ServiceLimits,
) -> Result<ServiceSpec, ControlError> {
    let mut spec = req.spec;
    let c = &mut spec.task.container;
    c.secrets = resolve_refs::<Secret>(tx, "secret", &req.secrets, |s| &s.spec.annotations.name)?
        .into_iter()
        .map(|(id, name, target)| SecretReference {
            secret_id: id,
            secret_name: name,
            target,
        })
        .collect();
    c.configs = resolve_refs::<Config>(tx, "config", &req.configs, |s| &s.spec.annotations.name)?
        .into_iter()
        .map(|(id, name, target)| ConfigReference {
            config_id: id,
            config_name: name,
            target,
        })
        .collect();
    for att in &mut spec.task.networks {
        let net = resolve::<Network>(tx.committed(), &att.target)?;
        att.target = net.id.to_string();
    }
    validate_service_spec(&spec, limits)?;
    let ingress = spec
        .endpoint
        .ports
        .iter()
        .any(|p| p.publish_mode == PublishMode::Ingress);
    if spec.endpoint.mode == EndpointMode::Dnsrr && ingress {
        return Err(ControlError::InvalidArgument(
            "EndpointSpec: port published with ingress mode can't be used with dnsrr mode".into(),
        ));
    }
    Ok(spec)
}

/// Resolves each reference by id (checking the name if both are given) or by name. Every missing
/// one is listed: `secret not found: a` / `secrets not found: a, b`, as SwarmKit says it.
fn resolve_refs<T: StoreObject>(
    tx: &Tx<'_>,
    kind: &str,
    refs: &[FileRef],
    name_of: impl Fn(&T) -> &String,
) -> Result<Vec<(Id, String, FileTarget)>, ControlError> {
    let mut out = Vec::with_capacity(refs.len());
    let mut missing: Vec<String> = Vec::new();
    for r in refs {
        let found: Option<Arc<T>> = if !r.id.is_empty() {
            Id::parse(&r.id)
                .ok()
                .and_then(|id| tx.get::<T>(&id))
                .filter(|o| r.name.is_empty() || *name_of(o) == r.name)
        } else if !r.name.is_empty() {
            tx.get_by_name::<T>(&r.name)
        } else {
            None
        };
        match found {
            Some(o) => out.push((o.id(), name_of(&o).clone(), r.target.clone())),
            None if r.name.is_empty() => missing.push(r.id.clone()),
            None => missing.push(r.name.clone()),
        }
    }
    if missing.is_empty() {
        return Ok(out);
    }
    let plural = if missing.len() == 1 { "" } else { "s" };
    Err(ControlError::InvalidArgument(format!(
        "{kind}{plural} not found: {}",
        missing.join(", ")
    )))
}

/// Refuses a published port another service already publishes: an ingress port conflicts with any
/// use of the port, a host-mode port only with an ingress one (SwarmKit's rule).
fn check_port_conflicts(
    tx: &Tx<'_>,
    spec: &ServiceSpec,
    skip: Option<Id>,
) -> Result<(), ControlError> {
    let wanted: Vec<_> = spec
        .endpoint
        .ports
        .iter()
        .filter(|p| p.published_port != 0)
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    for (other, have) in ports_of_others(tx, skip) {
        for want in &wanted {
            if have.published_port != want.published_port || have.protocol != want.protocol {
                continue;
            }
            let how = match (want.publish_mode, have.publish_mode) {
                (PublishMode::Host, PublishMode::Host) => continue,
                (_, PublishMode::Host) => "a host-published port",
                (_, PublishMode::Ingress) => "an ingress port",
            };
            return Err(ControlError::InvalidArgument(format!(
                "port '{}' is already in use by service '{}' ({}) as {how}",
                want.published_port, other.spec.annotations.name, other.id
            )));
        }
    }
    Ok(())
}

/// Every port (as specified and as allocated) of the services other than `skip`, with its
/// service.
fn ports_of_others(tx: &Tx<'_>, skip: Option<Id>) -> Vec<(Arc<Service>, PortConfig)> {
    let mut out = Vec::new();
    for other in tx.list::<Service>() {
        if Some(other.id) == skip {
            continue;
        }
        for p in other
            .spec
            .endpoint
            .ports
            .iter()
            .chain(&other.endpoint.ports)
        {
            out.push((other.clone(), p.clone()));
        }
    }
    out
}

/// SwarmKit answers a rename or a mode change with `Unimplemented` and these exact words
/// (Docker shows `rpc error: code = Unimplemented desc = ...`).
fn refused_update(e: SpecError) -> ControlError {
    match e {
        SpecError::Rename { .. } => {
            ControlError::Unimplemented("renaming services is not supported".into())
        }
        SpecError::ModeChange { .. } => {
            ControlError::Unimplemented("service mode change is not allowed".into())
        }
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use swarm_core::action::{Batch, StoreAction};
    use swarm_core::objects::service::JobStatus;
    use swarm_core::testing::{id, service, task};
    use swarm_core::{Service, ServiceMode, Store, TaskState, Timestamp, Version};

    use super::{service_status, ServiceStatus};

    /// A store holding `svc` and one task per `(state, desired, iteration)`.
    fn store_with(svc: &Service, tasks: &[(TaskState, TaskState, Option<u64>)]) -> Store {
        let mut actions = vec![StoreAction::Create(svc.clone().into())];
        for (i, &(state, desired, iteration)) in tasks.iter().enumerate() {
            let mut t = task(100 + i as u128, svc, i as u64 + 1);
            t.status.state = state;
            t.desired_state = desired;
            t.job_iteration = iteration.map(Version);
            actions.push(StoreAction::Create(t.into()));
        }
        let mut st = Store::new();
        st.apply(Batch {
            index: 1,
            timestamp: Timestamp::from_secs(1),
            actions,
        })
        .expect("fixture applies");
        st
    }

    use TaskState::{Complete, Failed, Running, Shutdown, Starting};

    #[test]
    fn replicated_counts_running_tasks_against_replicas() {
        let svc = service(1, "web", 3);
        let st = store_with(
            &svc,
            &[
                (Running, Running, None),
                (Running, Shutdown, None),
                (Starting, Running, None),
                (Failed, Shutdown, None),
            ],
        );
        assert_eq!(
            service_status(&st, &svc),
            ServiceStatus {
                running: 2,
                desired: 3,
                completed: 0
            }
        );
    }

    #[test]
    fn global_desired_counts_tasks_wanted_on_a_node() {
        let mut svc = service(1, "agent", 0);
        svc.spec.mode = ServiceMode::Global;
        let st = store_with(
            &svc,
            &[
                (Running, Running, None),
                (Starting, Running, None),
                (Running, Shutdown, None),
                (Complete, Complete, None),
            ],
        );
        assert_eq!(
            service_status(&st, &svc),
            ServiceStatus {
                running: 2,
                desired: 2,
                completed: 0
            }
        );
    }

    #[test]
    fn jobs_count_only_the_current_iteration() {
        let mut svc = service(1, "migrate", 0);
        svc.spec.mode = ServiceMode::ReplicatedJob {
            max_concurrent: 2,
            total_completions: 4,
        };
        svc.job_status = Some(JobStatus {
            job_iteration: Version(2),
            last_execution: Timestamp::from_secs(1),
        });
        let st = store_with(
            &svc,
            &[
                (Complete, Complete, Some(1)),
                (Running, Complete, Some(1)),
                (Complete, Complete, Some(2)),
                (Complete, Complete, Some(2)),
                (Running, Complete, Some(2)),
            ],
        );
        assert_eq!(
            service_status(&st, &svc),
            ServiceStatus {
                running: 1,
                desired: 2,
                completed: 2
            }
        );
        assert_eq!(st.task_counts(&id(1), None).running, 2);
    }
}
