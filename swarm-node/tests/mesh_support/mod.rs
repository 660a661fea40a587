//! The in-process routing-mesh fixture shared by `mesh_proxy` and `mesh_kernel`: a store, a
//! `LocalProposer` writing services and tasks into it as the control layer and the agent would,
//! and a `RoutingMesh` watching it.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use swarm_core::objects::service::{PortConfig, Protocol, PublishMode};
use swarm_core::objects::task::TaskAddress;
use swarm_core::testing::{service, task};
use swarm_core::{
    Id, LocalProposer, ManualClock, Object, ObjectKind, ObjectRef, Proposer, Service, SharedStore,
    StoreAction, Task, TaskState, Timestamp,
};
use swarm_node::mesh::{MeshConfig, PortKey, RoutingMesh};

pub const DEADLINE: Duration = Duration::from_secs(10);

/// Polls `cond` every 10 ms until it holds; panics with `what` after [`DEADLINE`].
pub async fn wait_until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    while !cond().await {
        assert!(start.elapsed() < DEADLINE, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn lo(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// A port free on 127.0.0.1 now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Store, proposer and a mesh on 127.0.0.1.
pub struct Fixture {
    pub store: SharedStore,
    pub proposer: LocalProposer,
    pub mesh: Arc<RoutingMesh>,
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture::with(MeshConfig {
            addr: lo(1),
            ..MeshConfig::default()
        })
    }

    pub fn with(config: MeshConfig) -> Fixture {
        let store = SharedStore::default();
        let clock = ManualClock::new(Timestamp::from_secs(1_704_067_200));
        let proposer = LocalProposer::new(store.clone(), Arc::new(clock));
        let mesh = RoutingMesh::start(store.clone(), config);
        Fixture {
            store,
            proposer,
            mesh,
        }
    }

    pub async fn commit(&self, actions: Vec<StoreAction>) {
        self.proposer.propose(actions).await.expect("commit");
    }

    /// Creates service `n` publishing `published` -> `target` in ingress mode.
    pub async fn publish(
        &self,
        n: u128,
        protocol: Protocol,
        published: u16,
        target: u16,
    ) -> Service {
        let mut s = service(n, &format!("svc{n}"), 3);
        let port = PortConfig {
            protocol,
            target_port: u32::from(target),
            published_port: u32::from(published),
            publish_mode: PublishMode::Ingress,
            ..Default::default()
        };
        s.spec.endpoint.ports = vec![port.clone()];
        s.endpoint.spec = s.spec.endpoint.clone();
        s.endpoint.ports = vec![port];
        self.commit(vec![StoreAction::Create(Object::Service(Arc::new(
            s.clone(),
        )))])
        .await;
        s
    }

    /// Creates task `n` of `s`, running at `addr`.
    pub async fn run_task(&self, n: u128, s: &Service, addr: IpAddr) -> Id {
        let mut t = task(n, s, n as u64);
        t.status.state = TaskState::Running;
        t.status.addresses = vec![TaskAddress {
            network_id: None,
            addr,
        }];
        let id = t.id;
        self.commit(vec![StoreAction::Create(Object::Task(Arc::new(t)))])
            .await;
        id
    }

    /// Changes a stored task.
    pub async fn edit_task(&self, id: Id, f: impl FnOnce(&mut Task)) {
        let mut t = self
            .store
            .view(|s| s.get::<Task>(&id).map(|t| (**t).clone()))
            .expect("task");
        f(&mut t);
        self.commit(vec![StoreAction::Update(Object::Task(Arc::new(t)))])
            .await;
    }

    pub async fn remove_service(&self, id: Id) {
        self.commit(vec![StoreAction::Remove(ObjectRef {
            kind: ObjectKind::Service,
            id,
        })])
        .await;
    }

    /// Waits until the mesh routes `key` to exactly `expect` (and listens on it).
    pub async fn wait_backends(&self, key: PortKey, expect: &[SocketAddr]) {
        let want: BTreeSet<SocketAddr> = expect.iter().copied().collect();
        wait_until(&format!("{key} routes to {want:?}"), || {
            let ok = self.mesh.is_listening(key)
                && self
                    .mesh
                    .backends(key)
                    .is_some_and(|b| b.into_iter().collect::<BTreeSet<_>>() == want);
            async move { ok }
        })
        .await;
    }
}

pub fn tcp(port: u16) -> PortKey {
    PortKey {
        port,
        protocol: Protocol::Tcp,
    }
}

pub fn udp(port: u16) -> PortKey {
    PortKey {
        port,
        protocol: Protocol::Udp,
    }
}
