//! Helpers shared by the integration tests: task, secret and agent builders, and the Docker test
//! image (see `docker_image.rs`), and `skip` for tests that cannot run here.
#![allow(dead_code, unreachable_pub)]

pub mod docker_image;
pub mod skip;

use std::sync::Arc;
use std::time::Duration;

use swarm_core::objects::node::{NodeDescription, Platform};
use swarm_core::objects::secret::{ConfigSpec, SecretSpec};
use swarm_core::objects::service::{
    ConfigReference, ContainerSpec, FileTarget, SecretReference, TaskSpec,
};
use swarm_core::{Annotations, Config, Id, Secret, SecretData, Task, TaskState, TaskStatus};
use swarm_runtime::testing::unique_id;
use swarm_runtime::{Agent, AgentConfig, Dispatcher, LocalDispatcher, Runtime};

pub fn node_id() -> Id {
    Id::parse("n0de000000000000000000001").expect("node id")
}

pub fn description() -> NodeDescription {
    NodeDescription {
        hostname: "worker-1".into(),
        platform: Platform {
            architecture: "x86_64".into(),
            os: "linux".into(),
        },
        ..NodeDescription::default()
    }
}

/// A task of service `svc` in `slot`, assigned to the test node, desired running.
pub fn task(svc: &str, slot: u64, container: ContainerSpec) -> Task {
    Task {
        id: unique_id(),
        meta: Default::default(),
        service_id: Id::from_u128(0xabc),
        service_annotations: Annotations::named(svc),
        slot,
        node_id: Some(node_id()),
        spec: Arc::new(TaskSpec {
            container,
            ..TaskSpec::default()
        }),
        spec_version: Default::default(),
        status: TaskStatus {
            state: TaskState::Assigned,
            message: "assigned".into(),
            ..TaskStatus::default()
        },
        desired_state: TaskState::Running,
        job_iteration: None,
        assigned_secrets: Vec::new(),
        assigned_configs: Vec::new(),
        networks: Vec::new(),
        ports: Vec::new(),
    }
}

pub fn with_desired(t: &Task, desired: TaskState) -> Arc<Task> {
    let mut t = t.clone();
    t.desired_state = desired;
    Arc::new(t)
}

pub fn secret(name: &str, data: &[u8]) -> Secret {
    Secret {
        id: unique_id(),
        meta: Default::default(),
        spec: SecretSpec {
            annotations: Annotations::named(name),
            data: SecretData::new(data.to_vec()),
            templating: None,
        },
    }
}

pub fn config(name: &str, data: &[u8]) -> Config {
    Config {
        id: unique_id(),
        meta: Default::default(),
        spec: ConfigSpec {
            annotations: Annotations::named(name),
            data: data.to_vec(),
            templating: None,
        },
    }
}

pub fn secret_ref(s: &Secret, target: &str, uid: &str, mode: u32) -> SecretReference {
    SecretReference {
        secret_id: s.id,
        secret_name: s.spec.annotations.name.clone(),
        target: FileTarget {
            name: target.into(),
            uid: uid.into(),
            gid: uid.into(),
            mode,
        },
    }
}

pub fn config_ref(c: &Config, target: &str) -> ConfigReference {
    ConfigReference {
        config_id: c.id,
        config_name: c.spec.annotations.name.clone(),
        target: FileTarget {
            name: target.into(),
            uid: String::new(),
            gid: String::new(),
            mode: 0o444,
        },
    }
}

/// An agent on the test node with fast batching and reconnects.
pub fn agent(runtime: Arc<dyn Runtime>, dispatcher: &LocalDispatcher) -> Agent {
    let mut cfg = AgentConfig::new(node_id(), description());
    cfg.batch_interval = Duration::from_millis(20);
    cfg.reconnect_min = Duration::from_millis(20);
    cfg.reconnect_max = Duration::from_millis(200);
    let d: Arc<dyn Dispatcher> = Arc::new(dispatcher.clone());
    Agent::spawn(cfg, runtime, d)
}

/// Waits until `task` reaches `state` at the dispatcher; panics with its status otherwise.
pub async fn wait_state(d: &LocalDispatcher, task: Id, state: TaskState) -> TaskStatus {
    let ok = d
        .wait_until(Duration::from_secs(30), |m| {
            m.get(&task).is_some_and(|s| s.state >= state)
        })
        .await;
    let st = d.status(task);
    assert!(ok, "task never reached {state}: {st:?}");
    st.expect("status")
}
