//! Test doubles for the API layer (feature `testing`): [`TestBackend`], a [`Backend`] over a
//! [`SharedStore`] + [`LocalProposer`] + [`ManualClock`] with trivial init/unlock/leave (no raft, no
//! scheduler, no runtime: tasks appear only when a test writes them), [`TestServer`], the API on a
//! temporary Unix socket, and [`HttpClient`], a keep-alive HTTP/1.1 client for that socket (the
//! crate's hyper-based [`UnixClient`] with `std::io::Error`s).
//!
//! This is a test double, not a daemon: it exists so the API can be driven end to end by tests,
//! benchmarks and the real `docker` CLI without the rest of swarm-node.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use swarm_core::objects::cluster::{EncryptionKey, JoinTokens, RootCa};
use swarm_core::objects::node::{
    EngineDescription, ManagerStatus, NodeDescription, NodeRole, NodeSpec, NodeState, NodeStatus,
    Platform, Reachability, Resources,
};
use swarm_core::{
    Cluster, Id, LocalProposer, ManualClock, Meta, Node, SecretData, SharedStore, StoreAction,
    StoreSnapshot, Task, Timestamp,
};
use swarm_runtime::LogLine;
use swarm_secrets::UnlockKey;

use crate::backend::{Backend, BackendError, ClusterAccess, DaemonInfo, InitRequest, SwarmState};
use crate::control::cluster::MANAGER_SUBSYSTEM;
use crate::http_client::UnixClient;

/// A [`Backend`] over an in-process store. See the module docs.
pub struct TestBackend {
    store: SharedStore,
    proposer: Arc<LocalProposer>,
    clock: ManualClock,
    state: Mutex<(SwarmState, Option<Id>)>,
    logs: Mutex<HashMap<Id, Vec<LogLine>>>,
}

impl std::fmt::Debug for TestBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestBackend").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl TestBackend {
    /// A node not in a swarm (only `swarm init` works), clock at 2024-01-01.
    pub fn new() -> Arc<TestBackend> {
        let store = SharedStore::default();
        let clock = ManualClock::new(Timestamp::from_secs(1_704_067_200));
        let proposer = Arc::new(LocalProposer::new(store.clone(), Arc::new(clock.clone())));
        Arc::new(TestBackend {
            store,
            proposer,
            clock,
            state: Mutex::new((SwarmState::Inactive, None)),
            logs: Mutex::new(HashMap::new()),
        })
    }

    /// A node that ran `swarm init` (one ready manager).
    pub async fn active() -> Arc<TestBackend> {
        let b = TestBackend::new();
        // Init on a fresh backend cannot fail: its store is empty and it is inactive.
        let _ = b.init(InitRequest::default()).await;
        b
    }

    /// The store (to read, or to snapshot around a request).
    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    /// The clock stamping commits.
    pub fn clock(&self) -> &ManualClock {
        &self.clock
    }

    /// Commits `actions` directly (to plant nodes or tasks a test needs).
    pub fn commit(&self, actions: Vec<StoreAction>) -> Result<u64, BackendError> {
        Ok(self.proposer.propose_now(actions)?)
    }

    /// This node's id once it is in a swarm.
    pub fn node_id(&self) -> Option<Id> {
        lock(&self.state).1
    }

    /// Simulates a restart with autolock on: the node is locked until `unlock`.
    pub fn lock_node(&self) {
        let mut s = lock(&self.state);
        if s.0 == SwarmState::Active {
            s.0 = SwarmState::Locked;
        }
    }

    /// Lines `task_logs` answers for `task`.
    pub fn set_logs(&self, task: Id, lines: Vec<LogLine>) {
        lock(&self.logs).insert(task, lines);
    }

    fn manager_key(&self) -> Option<SecretData> {
        self.store.view(|s| {
            s.cluster().and_then(|c| {
                c.unlock_keys
                    .iter()
                    .find(|k| k.subsystem == MANAGER_SUBSYSTEM)
                    .map(|k| k.key.clone())
            })
        })
    }
}

/// `n` characters of base36 from `seed` (for fake join tokens).
fn base36(mut n: u128, len: usize) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = vec![b'0'; len];
    for slot in out.iter_mut().rev() {
        *slot = digits[(n % 36) as usize];
        n /= 36;
    }
    String::from_utf8(out).unwrap_or_default()
}

#[async_trait]
impl Backend for TestBackend {
    fn swarm_state(&self) -> SwarmState {
        lock(&self.state).0
    }

    fn cluster(&self) -> Result<ClusterAccess, BackendError> {
        match *lock(&self.state) {
            (SwarmState::Active, Some(node_id)) => Ok(ClusterAccess {
                store: self.store.clone(),
                proposer: self.proposer.clone(),
                node_id,
                ports: None,
            }),
            (SwarmState::Locked, _) => Err(BackendError::Locked),
            _ => Err(BackendError::NotInSwarm),
        }
    }

    async fn init(&self, req: InitRequest) -> Result<Id, BackendError> {
        if lock(&self.state).0 != SwarmState::Inactive {
            return Err(BackendError::AlreadyInSwarm);
        }
        let node_id = crate::control::new_id();
        let cluster_id = crate::control::new_id();
        let mut spec = req.spec.clone();
        spec.encryption.auto_lock_managers = req.autolock;
        let unlock_keys = if req.autolock {
            vec![EncryptionKey {
                subsystem: MANAGER_SUBSYSTEM.into(),
                key: SecretData::new(crate::control::random_bytes(32)),
                lamport_time: 1,
            }]
        } else {
            Vec::new()
        };
        let digest = base36(u128::from_le_bytes([7; 16]), 50);
        let cluster = Cluster {
            id: cluster_id,
            meta: Meta::default(),
            spec,
            root_ca: RootCa {
                ca_cert_pem: "-----BEGIN CERTIFICATE-----\ntest\n-----END CERTIFICATE-----\n"
                    .into(),
                ca_cert_digest: digest.clone(),
                join_tokens: JoinTokens {
                    worker: format!("SWMTKN-1-{digest}-{}", base36(1, 25)),
                    manager: format!("SWMTKN-1-{digest}-{}", base36(2, 25)),
                },
                ..RootCa::default()
            },
            unlock_keys,
            network_bootstrap: req.network_bootstrap.clone(),
        };
        // The host part of the advertise address (a port, if given, is dropped).
        let addr = match req.advertise_addr.rsplit_once(':') {
            Some((host, port)) if port.parse::<u16>().is_ok() => host.to_string(),
            _ if req.advertise_addr.is_empty() => "127.0.0.1".to_string(),
            _ => req.advertise_addr.clone(),
        };
        let node = Node {
            id: node_id,
            meta: Meta::default(),
            spec: NodeSpec {
                desired_role: NodeRole::Manager,
                availability: req.availability.unwrap_or_default(),
                ..Default::default()
            },
            description: Some(NodeDescription {
                hostname: "test-node".into(),
                platform: Platform {
                    architecture: "x86_64".into(),
                    os: "linux".into(),
                },
                resources: Resources {
                    nano_cpus: 2_000_000_000,
                    memory_bytes: 4 << 30,
                },
                engine: EngineDescription {
                    engine_version: "swarm-node-test".into(),
                    labels: Default::default(),
                },
            }),
            status: NodeStatus {
                state: NodeState::Ready,
                message: String::new(),
                addr: addr.clone(),
            },
            manager_status: Some(ManagerStatus {
                raft_id: 1,
                addr: format!("{addr}:2377"),
                leader: true,
                reachability: Reachability::Reachable,
            }),
            role: NodeRole::Manager,
            certificate: None,
        };
        self.proposer.propose_now(vec![
            StoreAction::Create(cluster.into()),
            StoreAction::Create(node.into()),
        ])?;
        *lock(&self.state) = (SwarmState::Active, Some(node_id));
        Ok(node_id)
    }

    async fn unlock(&self, key: &str) -> Result<(), BackendError> {
        if lock(&self.state).0 != SwarmState::Locked {
            return Err(BackendError::NotLocked);
        }
        let given =
            UnlockKey::parse(key).map_err(|e| BackendError::MalformedUnlockKey(e.to_string()))?;
        let want = self
            .manager_key()
            .and_then(|k| <[u8; 32]>::try_from(k.expose()).ok())
            .map(UnlockKey::from_bytes)
            .ok_or(BackendError::InvalidUnlockKey)?;
        if *given.expose_text() != *want.expose_text() {
            return Err(BackendError::InvalidUnlockKey);
        }
        lock(&self.state).0 = SwarmState::Active;
        Ok(())
    }

    async fn leave(&self, force: bool) -> Result<(), BackendError> {
        if lock(&self.state).0 == SwarmState::Inactive {
            return Err(BackendError::NotInSwarm);
        }
        if !force {
            return Err(BackendError::LeaveRefused);
        }
        self.store.restore(StoreSnapshot {
            format: swarm_core::store::SNAPSHOT_FORMAT,
            ..Default::default()
        });
        *lock(&self.state) = (SwarmState::Inactive, None);
        Ok(())
    }

    async fn task_logs(
        &self,
        task: &Task,
        tail: Option<usize>,
    ) -> Result<Vec<LogLine>, BackendError> {
        let logs = lock(&self.logs);
        let lines = logs.get(&task.id).ok_or(BackendError::NoLogs(task.id))?;
        let skip = tail.map_or(0, |n| lines.len().saturating_sub(n));
        Ok(lines[skip..].to_vec())
    }

    fn info(&self) -> DaemonInfo {
        DaemonInfo {
            hostname: "test-node".into(),
            platform: Platform {
                architecture: "x86_64".into(),
                os: "linux".into(),
            },
            ncpu: 2,
            mem_total: 4 << 30,
            runtime: "sim".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            data_dir: "/var/lib/swarm-node-test".into(),
            node_id: self.node_id(),
        }
    }
}

/// The API served by [`crate::api::serve_with`] on a fresh Unix socket in the temp directory; stops
/// and removes the socket when dropped.
pub struct TestServer {
    path: PathBuf,
    dir: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("path", &self.path)
            .finish()
    }
}

impl TestServer {
    /// Binds a new socket and serves `backend` on it in a tokio task, with the default
    /// [`crate::api::ApiOptions`].
    pub async fn start(backend: Arc<dyn Backend>) -> std::io::Result<TestServer> {
        TestServer::start_with(backend, crate::api::ApiOptions::default()).await
    }

    /// [`TestServer::start`] with `options` (connection cap, timeouts, service limits).
    pub async fn start_with(
        backend: Arc<dyn Backend>,
        options: crate::api::ApiOptions,
    ) -> std::io::Result<TestServer> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tag = u64::from_le_bytes(
            <[u8; 8]>::try_from(&crate::control::random_bytes(8)[..]).unwrap_or([0; 8]),
        );
        let dir = std::env::temp_dir().join(format!(
            "swarm-node-api-{}-{n}-{tag:016x}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("api.sock");
        let listener = tokio::net::UnixListener::bind(&path)?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(crate::api::serve_with(
            listener,
            backend,
            options,
            async move {
                let _ = stopped.await;
            },
        ));
        Ok(TestServer {
            path,
            dir,
            stop: Some(stop),
        })
    }

    /// The socket path (`DOCKER_HOST=unix://<path>`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new client connection.
    pub async fn client(&self) -> std::io::Result<HttpClient> {
        HttpClient::connect(&self.path).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// An HTTP answer (status, lowercased headers, whole body).
pub use crate::http_client::Reply as HttpResponse;

/// A keep-alive HTTP/1.1 client over one Unix socket connection ([`UnixClient`] with
/// `std::io::Error`s, for tests).
#[derive(Debug)]
pub struct HttpClient {
    conn: UnixClient,
}

impl HttpClient {
    /// Connects to `path`.
    pub async fn connect(path: &Path) -> std::io::Result<HttpClient> {
        Ok(HttpClient {
            conn: UnixClient::connect(path).await?,
        })
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> std::io::Result<HttpResponse> {
        self.request("GET", path, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(
        &mut self,
        path: &str,
        body: &serde_json::Value,
    ) -> std::io::Result<HttpResponse> {
        let bytes = serde_json::to_vec(body).map_err(std::io::Error::other)?;
        self.request("POST", path, Some(&bytes)).await
    }

    /// `DELETE path`.
    pub async fn delete(&mut self, path: &str) -> std::io::Result<HttpResponse> {
        self.request("DELETE", path, None).await
    }

    /// Sends one request (a JSON body if given) and reads the answer.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> std::io::Result<HttpResponse> {
        Ok(self.conn.request(method, path, body).await?)
    }
}
