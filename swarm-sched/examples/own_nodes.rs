//! Placing tasks on an embedder's own node list with swarm-sched's [`Scheduler`], without a
//! `swarm_core::Store`: the embedder keeps nodes, services and tasks in its own structure and
//! implements [`ClusterRead`] over it.
//!
//! Run: `cargo run -p swarm-sched --example own_nodes`
//!
//! Three nodes in two zones (one of them small); a web service of 6 replicas that reserves 1 CPU
//! each, spread over the zones; a database of 1 replica constrained to the `zone=b` nodes. The
//! scheduler is reset from the embedder's lists, polled for its placements, and each placement is
//! applied to the lists and fed back as an event (the driver contract of [`Scheduler`]). The
//! example prints where each task went and exits non-zero if a placement breaks a rule.

use std::collections::BTreeMap;
use std::sync::Arc;

use swarm_core::objects::node::{
    NodeAvailability, NodeDescription, NodeRole, NodeSpec, NodeState, NodeStatus, Platform,
    Resources,
};
use swarm_core::objects::task::TaskStatus;
use swarm_core::{
    Annotations, Event, Id, Meta, Node, Object, Service, ServiceMode, ServiceSpec, StoreAction,
    Task, TaskState, Timestamp, Version,
};
use swarm_sched::{ClusterRead, Objects, Scheduler};

/// The embedder's own state: plain maps, no store, no raft.
#[derive(Default)]
struct MyCluster {
    nodes: BTreeMap<Id, Arc<Node>>,
    services: BTreeMap<Id, Arc<Service>>,
    tasks: BTreeMap<Id, Arc<Task>>,
}

impl ClusterRead for MyCluster {
    fn nodes(&self) -> Objects<'_, Node> {
        Box::new(self.nodes.values())
    }
    fn services(&self) -> Objects<'_, Service> {
        Box::new(self.services.values())
    }
    fn tasks(&self) -> Objects<'_, Task> {
        Box::new(self.tasks.values())
    }
    fn task(&self, id: &Id) -> Option<&Arc<Task>> {
        self.tasks.get(id)
    }
}

impl MyCluster {
    /// Applies the scheduler's actions to the lists and returns the events it must hear back.
    fn apply(&mut self, actions: Vec<StoreAction>) -> Result<Vec<Event>, String> {
        let mut events = Vec::new();
        for action in actions {
            match action {
                StoreAction::Update(Object::Task(new)) => {
                    let old = self
                        .tasks
                        .insert(new.id, new.clone())
                        .ok_or_else(|| format!("the scheduler updated unknown task {}", new.id))?;
                    events.push(Event::Updated {
                        old: Object::Task(old),
                        new: Object::Task(new),
                    });
                }
                other => return Err(format!("a scheduler only updates tasks, got {other:?}")),
            }
        }
        Ok(events)
    }
}

fn node(n: u128, zone: &str, cpus: i64) -> Node {
    Node {
        id: Id::from_u128(n),
        meta: Meta::default(),
        spec: NodeSpec {
            annotations: Annotations {
                name: String::new(),
                labels: [("zone".to_string(), zone.to_string())].into(),
            },
            desired_role: NodeRole::Worker,
            availability: NodeAvailability::Active,
        },
        description: Some(NodeDescription {
            hostname: format!("host-{n}"),
            platform: Platform {
                architecture: "x86_64".into(),
                os: "linux".into(),
            },
            resources: Resources {
                nano_cpus: cpus * 1_000_000_000,
                memory_bytes: 8 << 30,
            },
            engine: Default::default(),
        }),
        status: NodeStatus {
            state: NodeState::Ready,
            message: String::new(),
            addr: format!("10.0.0.{n}"),
        },
        manager_status: None,
        role: NodeRole::Worker,
        certificate: None,
    }
}

fn service(n: u128, name: &str, replicas: u64) -> Service {
    Service {
        id: Id::from_u128(n),
        meta: Meta::default(),
        spec: ServiceSpec {
            annotations: Annotations::named(name),
            mode: ServiceMode::Replicated { replicas },
            ..ServiceSpec::default()
        },
        spec_version: Version(1),
        previous_spec: None,
        previous_spec_version: None,
        endpoint: Default::default(),
        update_status: None,
        job_status: None,
    }
}

/// The tasks an orchestrator would create for `svc`: one per slot, new, desired running.
fn tasks_of(svc: &Service, first_id: u128) -> Vec<Task> {
    let ServiceMode::Replicated { replicas } = svc.spec.mode else {
        return Vec::new();
    };
    let spec = Arc::new(svc.spec.task.clone());
    (1..=replicas)
        .map(|slot| Task {
            id: Id::from_u128(first_id + u128::from(slot)),
            meta: Meta::default(),
            service_id: svc.id,
            service_annotations: svc.spec.annotations.clone(),
            slot,
            node_id: None,
            spec: spec.clone(),
            spec_version: svc.spec_version,
            status: TaskStatus::default(),
            desired_state: TaskState::Running,
            job_iteration: None,
            assigned_secrets: Vec::new(),
            assigned_configs: Vec::new(),
            networks: Vec::new(),
            ports: Vec::new(),
        })
        .collect()
}

fn main() -> Result<(), String> {
    let mut cluster = MyCluster::default();
    for n in [node(1, "a", 4), node(2, "b", 4), node(3, "b", 1)] {
        cluster.nodes.insert(n.id, Arc::new(n));
    }
    let mut web = service(100, "web", 6);
    web.spec.task.resources.reservations.nano_cpus = 1_000_000_000;
    web.spec.task.placement.preferences = vec!["spread=node.labels.zone".into()];
    let mut db = service(200, "db", 1);
    db.spec.task.placement.constraints = vec!["node.labels.zone==b".into()];
    for (svc, first) in [(web, 1000), (db, 2000)] {
        for t in tasks_of(&svc, first) {
            cluster.tasks.insert(t.id, Arc::new(t));
        }
        cluster.services.insert(svc.id, Arc::new(svc));
    }

    // The driver contract: reset from one consistent view, poll, apply, feed the events back,
    // poll again until the scheduler has nothing to say.
    let mut sched = Scheduler::new();
    sched.handle_reset(&cluster);
    let now = Timestamp::from_secs(1_700_000_000);
    let mut rounds = 0;
    loop {
        let actions = sched.poll_actions(now);
        if actions.is_empty() {
            break;
        }
        rounds += 1;
        if rounds > 10 {
            return Err("the scheduler kept producing actions".into());
        }
        for event in cluster.apply(actions)? {
            sched.handle_event(&event);
        }
    }

    // Report and check every placement against the rules the services set.
    let mut per_zone: BTreeMap<(String, &str), usize> = BTreeMap::new();
    let mut cpus_used: BTreeMap<Id, i64> = BTreeMap::new();
    for t in cluster.tasks.values() {
        let svc = &cluster.services[&t.service_id];
        let name = svc.spec.annotations.name.as_str();
        let node_id = t
            .node_id
            .ok_or_else(|| format!("{name}.{} was not placed: {}", t.slot, t.status.err))?;
        if t.status.state != TaskState::Assigned {
            return Err(format!("{name}.{} is {:?}", t.slot, t.status.state));
        }
        let node = &cluster.nodes[&node_id];
        let zone = node.spec.annotations.labels["zone"].clone();
        println!(
            "{name}.{} -> {} (zone {zone}): {}",
            t.slot,
            node.description
                .as_ref()
                .map_or("?", |d| d.hostname.as_str()),
            t.status.message
        );
        if name == "db" && zone != "b" {
            return Err(format!("db placed in zone {zone}, its constraint says b"));
        }
        *per_zone.entry((zone, name)).or_default() += 1;
        *cpus_used.entry(node_id).or_default() += t.spec.resources.reservations.nano_cpus;
    }
    for (id, used) in &cpus_used {
        let have = cluster.nodes[id]
            .description
            .as_ref()
            .map_or(0, |d| d.resources.nano_cpus);
        if *used > have {
            return Err(format!("node {id} reserves {used} of {have} nano-CPUs"));
        }
    }
    let (a, b) = (
        per_zone.get(&("a".into(), "web")).copied().unwrap_or(0),
        per_zone.get(&("b".into(), "web")).copied().unwrap_or(0),
    );
    if a != 3 || b != 3 {
        return Err(format!("web is not spread over the zones: a={a}, b={b}"));
    }
    println!("placed {} tasks in {rounds} round(s)", cluster.tasks.len());
    Ok(())
}
