//! The workload's operations: drawn from the run's seeded RNG, sent to a manager's control layer
//! (as a client of that manager's API would), and recorded with their outcome for the
//! `acked_writes` invariant.
//!
//! Operations: service create, scale, update (a new environment variable, stop-first or
//! start-first at random), rollback (`docker service rollback`: the previous spec, read at the
//! version the rollback is staged at), remove; node drain and activate (at most one node drained
//! at a time, so the services can still converge); secret rotation (a new secret created, the
//! service switched to it, the secrets neither its spec nor its previous spec still references
//! removed). Scale, update and rollback carry the
//! service's secret references along (a `docker service update` without `--secret-*` keeps them).
//!
//! What `acked_writes` can assert of each: create, scale, update, rollback and remove leave a
//! replica count (or no service); a rollback also leaves the previous spec's secrets, a rotation
//! its new secret (`service <name> secrets`), a drain or an activation its availability (`node
//! <host> availability`). Not in the workload yet: promote/demote, and a node joining or
//! leaving during the run.

use std::sync::Arc;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use swarm_core::objects::node::NodeAvailability;
use swarm_core::objects::secret::{SecretData, SecretSpec};
use swarm_core::objects::service::{ContainerSpec, FileTarget, ServiceSpec, TaskSpec, UpdateOrder};
use swarm_core::{Annotations, Node, Secret, Service, ServiceMode};

use super::cluster::{lock, Shared};
use super::invariants::acked_writes::AckedWrites;
use super::workload::OP_TIMEOUT;
use crate::backend::Backend;
use crate::control::{Control, FileRef, ServiceRequest};

/// One workload operation.
#[derive(Clone, Debug)]
pub(crate) enum Op {
    Create { name: String, replicas: u64 },
    Scale { name: String, replicas: u64 },
    Update { name: String, start_first: bool },
    Rollback { name: String },
    Remove { name: String },
    Drain { host: String },
    Activate { host: String },
    RotateSecret { name: String, secret: String },
}

/// What an acknowledged operation left, for `acked_writes`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Outcome {
    /// The service's replica count (`None`: removed) and the secrets it references (`None`:
    /// removed), as the write left them.
    Service(Option<u64>, Option<String>),
    /// A node's availability.
    Availability(String),
    /// The service's secrets after a rotation.
    Secrets(String),
}

/// A rollback as staged: the service's version the driver read and the previous spec there.
#[derive(Clone, Debug)]
struct RollbackPlan {
    version: u64,
    replicas: u64,
    secrets: String,
}

/// The driver's view of what the workload did so far.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Services created and not removed (by an acknowledged removal).
    names: Vec<String>,
    /// Services created so far (names are never reused).
    created: usize,
    /// Secrets created so far (names are never reused).
    secrets: usize,
    /// The node drained last (it may still be drained if its activation was not answered).
    drained: Option<String>,
}

impl State {
    /// Draws the next operation over `hosts`.
    pub(crate) fn next_op(&mut self, rng: &mut ChaCha8Rng, hosts: &[String]) -> Op {
        if self.names.is_empty() || (self.names.len() < 4 && rng.gen_bool(0.3)) {
            let name = format!("svc{}", self.created);
            self.created += 1;
            self.names.push(name.clone());
            return Op::Create {
                name,
                replicas: rng.gen_range(1..=4),
            };
        }
        let name = self.names[rng.gen_range(0..self.names.len())].clone();
        match rng.gen_range(0..16) {
            0..=4 => Op::Scale {
                name,
                replicas: rng.gen_range(0..=5),
            },
            5..=7 => Op::Update {
                name,
                start_first: rng.gen_bool(0.5),
            },
            8..=9 => Op::Rollback { name },
            10..=11 => {
                let secret = format!("sec{}", self.secrets);
                self.secrets += 1;
                Op::RotateSecret { name, secret }
            }
            12..=13 => match &self.drained {
                Some(host) => Op::Activate { host: host.clone() },
                None => Op::Drain {
                    host: hosts[rng.gen_range(0..hosts.len())].clone(),
                },
            },
            _ => Op::Remove { name },
        }
    }

    /// `op` ran; `acked`: it was acknowledged.
    pub(crate) fn done(&mut self, op: &Op, acked: bool) {
        match op {
            Op::Remove { name } if acked => self.names.retain(|n| n != name),
            // Drained or maybe drained: activate it next.
            Op::Drain { host } => self.drained = Some(host.clone()),
            Op::Activate { .. } if acked => self.drained = None,
            _ => {}
        }
    }
}

fn spec(name: &str, replicas: u64) -> ServiceSpec {
    ServiceSpec {
        annotations: Annotations::named(name),
        task: TaskSpec {
            container: ContainerSpec {
                image: "sim".into(),
                ..Default::default()
            },
            ..Default::default()
        },
        mode: ServiceMode::Replicated { replicas },
        ..Default::default()
    }
}

/// The request for `spec`, keeping the secret references it holds.
fn request(spec: ServiceSpec) -> ServiceRequest {
    let secrets = spec
        .task
        .container
        .secrets
        .iter()
        .map(|r| FileRef {
            id: r.secret_id.to_string(),
            name: r.secret_name.clone(),
            target: r.target.clone(),
        })
        .collect();
    ServiceRequest {
        spec,
        secrets,
        configs: Vec::new(),
    }
}

/// The secret names `spec` references, sorted and comma-separated (what `acked_writes` compares).
pub(in crate::sim) fn secret_names(spec: &ServiceSpec) -> String {
    let mut names: Vec<&str> = spec
        .task
        .container
        .secrets
        .iter()
        .map(|r| r.secret_name.as_str())
        .collect();
    names.sort_unstable();
    names.join(",")
}

/// Runs `op` on `target`'s control layer and records its outcome; true if it was acknowledged.
pub(crate) async fn run_op(shared: &Arc<Shared>, target: &str, op: Op) -> bool {
    shared.event("driver", &format!("{op:?} via {target}"));
    let clock = shared.clock(target);
    let key = match &op {
        Op::Drain { host } | Op::Activate { host } => host.clone(),
        Op::Create { name, .. }
        | Op::Scale { name, .. }
        | Op::Update { name, .. }
        | Op::Rollback { name }
        | Op::Remove { name }
        | Op::RotateSecret { name, .. } => name.clone(),
    };
    // A rollback restores a spec the driver must know to check it: read it first (a read
    // writes nothing, so a failed read is no operation), then stage the rollback at that version.
    let mut plan = None;
    if let Op::Rollback { name } = &op {
        let name = name.clone();
        let read = shared
            .call(target, OP_TIMEOUT, move |d| async move {
                let control =
                    Control::new(d.cluster().map_err(|e| e.to_string())?, Arc::new(clock));
                control.sync_reads().await.map_err(|e| e.to_string())?;
                let cur = control
                    .store()
                    .view(|s| s.get_by_name::<Service>(&name).cloned())
                    .ok_or_else(|| format!("no service {name}"))?;
                let previous = cur
                    .previous_spec
                    .as_ref()
                    .ok_or_else(|| format!("{name} has no previous spec"))?;
                let ServiceMode::Replicated { replicas } = previous.mode else {
                    return Err(format!("service {name} is not replicated"));
                };
                Ok(RollbackPlan {
                    version: cur.meta.version.0,
                    replicas,
                    secrets: secret_names(previous),
                })
            })
            .await;
        match read {
            Some(Ok(p)) => plan = Some(p),
            other => {
                shared.event("driver", &format!("{key}: no rollback: {other:?}"));
                return false;
            }
        }
    }
    let (staged, sent) = (plan.clone(), op.clone());
    let got = shared
        .call(target, OP_TIMEOUT, move |d| async move {
            let control = Control::new(d.cluster().map_err(|e| e.to_string())?, Arc::new(clock));
            apply(&control, sent, staged).await
        })
        .await;
    let text = match &got {
        None => "no answer".to_string(),
        Some(Ok(o)) => format!("acknowledged: {o:?}"),
        Some(Err(e)) => format!("failed: {e}"),
    };
    shared.event("driver", &format!("{key}: {text}"));
    let mut checks = lock(&shared.checks);
    let outcome = got.and_then(Result::ok);
    record(&mut checks.acked, &op, plan.as_ref(), outcome.as_ref())
}
/// Records `op`'s outcome (`Some`: acknowledged with it; `plan`: a rollback's staged spec);
/// true if acknowledged.
fn record(
    acked: &mut AckedWrites,
    op: &Op,
    plan: Option<&RollbackPlan>,
    outcome: Option<&Outcome>,
) -> bool {
    let node_key = |host: &str| format!("node {host} availability");
    let secrets_key = |name: &str| format!("service {name} secrets");
    if let Some(outcome) = outcome {
        match (op, outcome) {
            (Op::Drain { host } | Op::Activate { host }, Outcome::Availability(a)) => {
                acked.count(true);
                acked.record_value(&node_key(host), "Active", a, true);
            }
            (Op::RotateSecret { name, .. }, Outcome::Secrets(s)) => {
                acked.count(true);
                acked.record_value(&secrets_key(name), "", s, true);
            }
            (
                Op::Create { name, .. }
                | Op::Scale { name, .. }
                | Op::Update { name, .. }
                | Op::Rollback { name }
                | Op::Remove { name },
                Outcome::Service(replicas, secrets),
            ) => {
                acked.record(name, *replicas, true);
                if let Some(s) = secrets {
                    acked.record_value(&secrets_key(name), "", s, true);
                }
            }
            // Cannot happen (apply answers each operation with its own kind of outcome).
            _ => return false,
        }
        return true;
    }
    // Not acknowledged (refused, failed, or no answer): it may still have landed (a proposal
    // forwarded before a timeout commits later), so what it would leave is possible too. Scales
    // and updates carry the secrets they read along, a state already possible.
    match op {
        Op::Create { name, replicas } | Op::Scale { name, replicas } => {
            acked.record(name, Some(*replicas), false);
        }
        Op::Remove { name } => acked.record(name, None, false),
        Op::Rollback { name } => {
            if let Some(p) = plan {
                acked.record(name, Some(p.replicas), false);
                acked.record_value(&secrets_key(name), "", &p.secrets, false);
            }
        }
        Op::Drain { host } => {
            acked.count(false);
            acked.record_value(&node_key(host), "Active", "Drain", false);
        }
        Op::Activate { host } => {
            acked.count(false);
            acked.record_value(&node_key(host), "Active", "Active", false);
        }
        Op::RotateSecret { name, secret } => {
            acked.count(false);
            acked.record_value(&secrets_key(name), "", secret, false);
        }
        // An update leaves the replica count it found.
        Op::Update { .. } => {}
    }
    false
}

/// The operation on one manager; what it leaves.
async fn apply(control: &Control, op: Op, plan: Option<RollbackPlan>) -> Result<Outcome, String> {
    let current = |name: &str| {
        control
            .store()
            .view(|s| s.get_by_name::<Service>(name).cloned())
            .ok_or_else(|| format!("no service {name}"))
    };
    let e = |e: crate::control::ControlError| e.to_string();
    match op {
        Op::Create { name, replicas } => {
            control
                .create_service(request(spec(&name, replicas)), None)
                .await
                .map_err(e)?;
            Ok(Outcome::Service(Some(replicas), Some(String::new())))
        }
        Op::Scale { name, replicas } => {
            control.sync_reads().await.map_err(e)?;
            let cur = current(&name)?;
            let mut next = cur.spec.clone();
            next.mode = ServiceMode::Replicated { replicas };
            let secrets = secret_names(&next);
            control
                .update_service(&name, cur.meta.version.0, request(next), false)
                .await
                .map_err(e)?;
            Ok(Outcome::Service(Some(replicas), Some(secrets)))
        }
        Op::Update { name, start_first } => {
            control.sync_reads().await.map_err(e)?;
            let cur = current(&name)?;
            let mut next = cur.spec.clone();
            let generation = next.task.container.env.len();
            next.task
                .container
                .env
                .push(format!("GENERATION={generation}"));
            let order = if start_first {
                UpdateOrder::StartFirst
            } else {
                UpdateOrder::StopFirst
            };
            next.update.order = order;
            next.rollback.order = order;
            let ServiceMode::Replicated { replicas } = next.mode else {
                return Err(format!("service {name} is not replicated"));
            };
            let secrets = secret_names(&next);
            control
                .update_service(&name, cur.meta.version.0, request(next), false)
                .await
                .map_err(e)?;
            Ok(Outcome::Service(Some(replicas), Some(secrets)))
        }
        Op::Rollback { name } => {
            let plan = plan.ok_or("a rollback without its plan")?;
            // Staged at the version read: acknowledged, it restored the spec read there.
            control
                .update_service(&name, plan.version, ServiceRequest::default(), true)
                .await
                .map_err(e)?;
            Ok(Outcome::Service(Some(plan.replicas), Some(plan.secrets)))
        }
        Op::Remove { name } => {
            control.remove_service(&name).await.map_err(e)?;
            Ok(Outcome::Service(None, None))
        }
        Op::Drain { ref host } | Op::Activate { ref host } => {
            let availability = if matches!(op, Op::Drain { .. }) {
                NodeAvailability::Drain
            } else {
                NodeAvailability::Active
            };
            control.sync_reads().await.map_err(e)?;
            let node = control
                .store()
                .view(|s| {
                    s.iter::<Node>()
                        .find(|n| n.description.as_ref().is_some_and(|d| d.hostname == *host))
                        .cloned()
                })
                .ok_or_else(|| format!("no node {host}"))?;
            let mut spec = node.spec.clone();
            spec.availability = availability;
            control
                .update_node(&node.id.to_string(), node.meta.version.0, spec)
                .await
                .map_err(e)?;
            Ok(Outcome::Availability(format!("{availability:?}")))
        }
        Op::RotateSecret { name, secret } => {
            control
                .create_blob::<Secret>(SecretSpec {
                    annotations: Annotations::named(&secret),
                    data: SecretData::new(format!("{secret} payload").into_bytes()),
                    templating: None,
                })
                .await
                .map_err(e)?;
            control.sync_reads().await.map_err(e)?;
            let cur = current(&name)?;
            // After this update the service's previous spec is its current one, so the secrets
            // only its previous spec referenced are no longer referenced by either spec: those
            // go. (Removing the ones the current spec references would leave a rollback a spec
            // whose secret is gone: accepted, as in SwarmKit, and then its tasks are rejected
            // forever; seed 22, docs/SIMULATION.md.)
            let current = secret_names(&cur.spec);
            let old: Vec<String> = cur
                .previous_spec
                .as_ref()
                .map(|p| {
                    p.task
                        .container
                        .secrets
                        .iter()
                        .map(|r| r.secret_name.clone())
                        .filter(|n| !current.split(',').any(|c| c == n))
                        .collect()
                })
                .unwrap_or_default();
            let mut req = request(cur.spec.clone());
            req.secrets = vec![FileRef {
                id: String::new(),
                name: secret.clone(),
                target: FileTarget {
                    name: "sim-secret".into(),
                    uid: "0".into(),
                    gid: "0".into(),
                    mode: 0o444,
                },
            }];
            control
                .update_service(&name, cur.meta.version.0, req, false)
                .await
                .map_err(e)?;
            // When no other service uses them (a refusal is fine).
            for s in old {
                let _ = control.remove_blob::<Secret>(&s).await;
            }
            Ok(Outcome::Secrets(secret))
        }
    }
}
