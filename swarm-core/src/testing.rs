//! Fixtures for tests, benchmarks and simulations (behind the `testing` feature).
//!
//! Small builders for each object with sensible defaults, and ids derived from a number so that tests
//! read well and are deterministic (`id(7)`).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::id::Id;
use crate::meta::{Annotations, Meta};
use crate::objects::node::{
    Node, NodeAvailability, NodeDescription, NodeRole, NodeSpec, NodeState, NodeStatus, Platform,
    Resources,
};
use crate::objects::secret::{Config, ConfigSpec, Secret, SecretData, SecretSpec};
use crate::objects::service::{
    ContainerSpec, Endpoint, FileTarget, SecretReference, Service, ServiceMode, ServiceSpec,
    TaskSpec,
};
use crate::objects::task::{Task, TaskState, TaskStatus};

/// A deterministic id from a number.
pub fn id(n: u128) -> Id {
    Id::from_u128(n)
}

/// A ready, active worker node `n` with hostname `node-<n>`, linux/x86_64, 4 CPUs and 8 GiB.
pub fn node(n: u128) -> Node {
    Node {
        id: id(n),
        meta: Meta::default(),
        spec: NodeSpec {
            annotations: Annotations::default(),
            desired_role: NodeRole::Worker,
            availability: NodeAvailability::Active,
        },
        description: Some(NodeDescription {
            hostname: format!("node-{n}"),
            platform: Platform {
                architecture: "x86_64".into(),
                os: "linux".into(),
            },
            resources: Resources {
                nano_cpus: 4_000_000_000,
                memory_bytes: 8 << 30,
            },
            engine: Default::default(),
        }),
        status: NodeStatus {
            state: NodeState::Ready,
            message: String::new(),
            addr: format!("127.0.0.{}", (n % 250) + 1),
        },
        manager_status: None,
        role: NodeRole::Worker,
        certificate: None,
    }
}

/// Node `n` with the given node labels.
pub fn node_with_labels(n: u128, labels: &[(&str, &str)]) -> Node {
    let mut node = node(n);
    node.spec.annotations.labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    node
}

/// A replicated service `n` named `name` running `image` with `replicas` replicas.
pub fn service(n: u128, name: &str, replicas: u64) -> Service {
    Service {
        id: id(n),
        meta: Meta::default(),
        spec: ServiceSpec {
            annotations: Annotations::named(name),
            task: TaskSpec {
                container: ContainerSpec {
                    image: "busybox:latest".into(),
                    command: vec!["sleep".into(), "3600".into()],
                    ..Default::default()
                },
                ..Default::default()
            },
            mode: ServiceMode::Replicated { replicas },
            ..Default::default()
        },
        spec_version: Default::default(),
        previous_spec: None,
        previous_spec_version: None,
        endpoint: Endpoint::default(),
        update_status: None,
        job_status: None,
    }
}

/// A task `n` of `service` in `slot`, pending and desired running, sharing the service's spec.
pub fn task(n: u128, service: &Service, slot: u64) -> Task {
    Task {
        id: id(n),
        meta: Meta::default(),
        service_id: service.id,
        service_annotations: service.spec.annotations.clone(),
        slot,
        node_id: None,
        spec: Arc::new(service.spec.task.clone()),
        spec_version: service.spec_version,
        status: TaskStatus {
            state: TaskState::Pending,
            ..Default::default()
        },
        desired_state: TaskState::Running,
        job_iteration: None,
        assigned_secrets: Vec::new(),
        assigned_configs: Vec::new(),
        networks: Vec::new(),
        ports: Vec::new(),
    }
}

/// The "typical task" of the benchmarks: an image, 3 env vars, 1 secret, 1 constraint.
pub fn typical_task(n: u128, service_id: Id, node: Option<Id>) -> Task {
    let spec = TaskSpec {
        container: ContainerSpec {
            image: "registry.example.com/team/web:1.4.2".into(),
            env: vec![
                "MODE=production".into(),
                "PORT=8080".into(),
                "LOG_LEVEL=info".into(),
            ],
            secrets: vec![SecretReference {
                secret_id: id(1_000_000_000),
                secret_name: "db_password".into(),
                target: FileTarget {
                    name: "db_password".into(),
                    uid: "0".into(),
                    gid: "0".into(),
                    mode: 0o444,
                },
            }],
            ..Default::default()
        },
        placement: crate::objects::service::Placement {
            constraints: vec!["node.labels.zone==eu-1".into()],
            ..Default::default()
        },
        ..Default::default()
    };
    Task {
        id: id(n),
        meta: Meta::default(),
        service_id,
        service_annotations: Annotations::named("web"),
        slot: (n % 1000) as u64 + 1,
        node_id: node,
        spec: Arc::new(spec),
        spec_version: Default::default(),
        status: TaskStatus {
            state: TaskState::Running,
            message: "started".into(),
            ..Default::default()
        },
        desired_state: TaskState::Running,
        job_iteration: None,
        assigned_secrets: Vec::new(),
        assigned_configs: Vec::new(),
        networks: Vec::new(),
        ports: Vec::new(),
    }
}

/// A secret `n` named `name` holding `data`.
pub fn secret(n: u128, name: &str, data: &[u8]) -> Secret {
    Secret {
        id: id(n),
        meta: Meta::default(),
        spec: SecretSpec {
            annotations: Annotations::named(name),
            data: SecretData::new(data.to_vec()),
            templating: None,
        },
    }
}

/// A config `n` named `name` holding `data`.
pub fn config(n: u128, name: &str, data: &[u8]) -> Config {
    Config {
        id: id(n),
        meta: Meta::default(),
        spec: ConfigSpec {
            annotations: Annotations {
                name: name.into(),
                labels: BTreeMap::new(),
            },
            data: data.to_vec(),
            templating: None,
        },
    }
}
