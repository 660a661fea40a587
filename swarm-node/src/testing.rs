//! Test doubles for the API layer (feature `testing`): [`TestBackend`], a [`Backend`] over a
//! [`SharedStore`] + [`LocalProposer`] + [`ManualClock`] with trivial init/unlock/leave (no raft, no
//! scheduler, no runtime: tasks appear only when a test writes them), [`TestServer`], the API on a
//! temporary Unix socket, and [`HttpClient`], a keep-alive HTTP/1.1 client for that socket (the
//! crate's hyper-based [`UnixClient`] with `std::io::Error`s).
//!
//! This is a test double, not a daemon: it exists so the API can be driven end to end by tests,
//! benchmarks and the real `docker` CLI without the rest of swarm-node. For the multi-host API it
//! can play a worker ([`TestBackend::set_worker`]: cluster reads and writes answer Docker's
//! "not a swarm manager" 503) and carry a raft view ([`TestBackend::set_raft`] with a
//! [`TestRaft`]); `swarm join` records the request ([`TestBackend::last_join`]) and turns it into
//! a worker of a swarm it knows nothing of.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rand_core::OsRng;
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

use crate::backend::{
    leave_check, Backend, BackendError, ClusterAccess, DaemonInfo, InitRequest, JoinRequest,
    LocalNodeInfo, LocalNodeState, RaftMember, RaftView, SwarmState,
};
use crate::control::cluster::MANAGER_SUBSYSTEM;
use crate::http_client::UnixClient;

/// A [`Backend`] over an in-process store. See the module docs.
pub struct TestBackend {
    store: SharedStore,
    proposer: Arc<LocalProposer>,
    clock: ManualClock,
    state: Mutex<(SwarmState, Option<Id>)>,
    logs: Mutex<HashMap<Id, Vec<LogLine>>>,
    multi: Mutex<MultiHost>,
}

/// The multi-host part of the double: role, raft view, the last join.
#[derive(Default)]
struct MultiHost {
    worker: bool,
    raft: Option<Arc<dyn RaftView>>,
    last_join: Option<JoinRequest>,
    remote_managers: Vec<(Id, String)>,
}

/// A [`RaftView`] double: members set by the test; [`RaftView::can_remove`] applies SwarmKit's
/// rule (the reachable members left must be a majority of the members left).
#[derive(Debug, Default)]
pub struct TestRaft {
    members: Mutex<Vec<RaftMember>>,
}

impl TestRaft {
    /// A view with `members`.
    pub fn new(members: Vec<RaftMember>) -> Arc<TestRaft> {
        Arc::new(TestRaft {
            members: Mutex::new(members),
        })
    }

    /// Replaces the members.
    pub fn set_members(&self, members: Vec<RaftMember>) {
        *lock(&self.members) = members;
    }
}

impl RaftView for TestRaft {
    fn members(&self) -> Vec<RaftMember> {
        lock(&self.members).clone()
    }

    fn can_remove(&self, raft_id: u64) -> Result<(), String> {
        let members = lock(&self.members);
        if !members.iter().any(|m| m.raft_id == raft_id) {
            return Ok(());
        }
        let left: Vec<&RaftMember> = members.iter().filter(|m| m.raft_id != raft_id).collect();
        let reachable = left.iter().filter(|m| m.reachable).count();
        if reachable < left.len() / 2 + 1 {
            return Err("this would result in a loss of quorum".into());
        }
        Ok(())
    }
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
            multi: Mutex::new(MultiHost::default()),
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

    /// Plays a worker (`true`: cluster reads and writes answer [`BackendError::NotAManager`],
    /// `/info` shows no control) or a manager (`false`, the default after `init`).
    pub fn set_worker(&self, worker: bool) {
        lock(&self.multi).worker = worker;
    }

    /// The raft view handed to the API with the cluster (`None`: the store's manager statuses).
    pub fn set_raft(&self, raft: Option<Arc<dyn RaftView>>) {
        lock(&self.multi).raft = raft;
    }

    /// The managers `/info` lists as `RemoteManagers` (node id, address).
    pub fn set_remote_managers(&self, managers: Vec<(Id, String)>) {
        lock(&self.multi).remote_managers = managers;
    }

    /// The last request `swarm join` accepted.
    pub fn last_join(&self) -> Option<JoinRequest> {
        lock(&self.multi).last_join.clone()
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

/// The root CA certificate the double's cluster carries (a real P-256 CA certificate, CN
/// `swarm-ca`, from the Docker 20.10 fixtures; no key goes with it).
pub const TEST_ROOT_CA_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIBajCCARCgAwIBAgIUfi1zxXgLO2AEoaksRGsoFm24Ue4wCgYIKoZIzj0EAwIw\nEzERMA8GA1UEAxMIc3dhcm0tY2EwHhcNMjYxMjA2MjMzMzAwWhcNNDYxMjAxMjMz\nMzAwWjATMREwDwYDVQQDEwhzd2FybS1jYTBZMBMGByqGSM49AgEGCCqGSM49AwEH\nA0IABE1osOJ55wEGxGSxQzoumwc44+CuVKN4SCcQgjDW+/4pGYm3ZvAIWXI5mJdX\nQlLXLuFPMashRpdRGwa0P7Ih8L+jQjBAMA4GA1UdDwEB/wQEAwIBBjAPBgNVHRMB\nAf8EBTADAQH/MB0GA1UdDgQWBBRgPetgYix7zoDggB7n8J+D+fJwOTAKBggqhkjO\nPQQDAgNIADBFAiEAkXtGR94UbOs7+fierqMr3kSEGXErc6eCE+mvrCfH4FgCIFC9\nC/Sijrhbf9guhTtRebUjFVrmP+YOdAaSWf/F1OpS\n-----END CERTIFICATE-----\n";

/// A root CA record for [`TEST_ROOT_CA_PEM`] with real join tokens (swarm-net's format, the
/// digest of that PEM).
fn test_root_ca() -> RootCa {
    let tokens = swarm_net::JoinTokens::generate(TEST_ROOT_CA_PEM.as_bytes(), &mut OsRng);
    let text = |role| String::from(tokens.token(role).expose_text().as_str());
    RootCa {
        ca_cert_pem: TEST_ROOT_CA_PEM.into(),
        ca_cert_digest: tokens.token(swarm_net::Role::Worker).ca_digest_text(),
        join_tokens: JoinTokens {
            worker: text(swarm_net::Role::Worker),
            manager: text(swarm_net::Role::Manager),
        },
        ..RootCa::default()
    }
}

#[async_trait]
impl Backend for TestBackend {
    fn swarm_state(&self) -> SwarmState {
        lock(&self.state).0
    }

    fn cluster(&self) -> Result<ClusterAccess, BackendError> {
        let multi = lock(&self.multi);
        match *lock(&self.state) {
            (SwarmState::Active, Some(_)) if multi.worker => Err(BackendError::NotAManager),
            (SwarmState::Active, Some(node_id)) => Ok(ClusterAccess {
                store: self.store.clone(),
                proposer: self.proposer.clone(),
                node_id,
                ports: None,
                raft: multi.raft.clone(),
                entropy: swarm_raft::entropy::os(),
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
        let cluster = Cluster {
            id: cluster_id,
            meta: Meta::default(),
            spec,
            root_ca: test_root_ca(),
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

    async fn join(&self, req: JoinRequest) -> Result<(), BackendError> {
        if lock(&self.state).0 != SwarmState::Inactive {
            return Err(BackendError::AlreadyInSwarm);
        }
        swarm_net::JoinToken::parse(&req.join_token)
            .map_err(|e| BackendError::JoinFailed(format!("invalid join token: {e}")))?;
        let manager = (
            crate::control::new_id(),
            req.remote_addrs.first().cloned().unwrap_or_default(),
        );
        {
            let mut multi = lock(&self.multi);
            multi.worker = true;
            multi.remote_managers = vec![manager];
            multi.last_join = Some(req);
        }
        *lock(&self.state) = (SwarmState::Active, Some(crate::control::new_id()));
        Ok(())
    }

    async fn leave(&self, force: bool) -> Result<(), BackendError> {
        let (state, me) = *lock(&self.state);
        match state {
            SwarmState::Inactive => return Err(BackendError::NotInSwarm),
            SwarmState::Locked if !force => return Err(BackendError::LeaveLocked),
            _ => {}
        }
        let (worker, raft) = {
            let m = lock(&self.multi);
            (m.worker, m.raft.clone())
        };
        if !force && !worker {
            // (reachable, unreachable, this node reachable), from raft or the store.
            let (reachable, unreachable, mine) = match raft {
                Some(r) => {
                    let members = r.members();
                    let reachable = members.iter().filter(|m| m.reachable).count();
                    let mine = members
                        .iter()
                        .any(|m| m.reachable && m.node_id.is_some() && m.node_id == me);
                    (reachable, members.len() - reachable, mine)
                }
                None => self.store.view(|s| {
                    let (mut r, mut u, mut mine) = (0, 0, false);
                    for n in s.iter::<Node>() {
                        match n.manager_status.as_ref().map(|m| m.reachability) {
                            Some(Reachability::Reachable) => {
                                r += 1;
                                mine |= Some(n.id) == me;
                            }
                            Some(Reachability::Unreachable) => u += 1,
                            _ => {}
                        }
                    }
                    (r, u, mine)
                }),
            };
            return Err(leave_check(reachable, unreachable, mine));
        }
        self.store.restore(StoreSnapshot {
            format: swarm_core::store::SNAPSHOT_FORMAT,
            ..Default::default()
        });
        *lock(&self.state) = (SwarmState::Inactive, None);
        *lock(&self.multi) = MultiHost::default();
        Ok(())
    }

    fn local_node(&self) -> LocalNodeInfo {
        let (state, node_id) = *lock(&self.state);
        let multi = lock(&self.multi);
        let state = match state {
            SwarmState::Inactive => LocalNodeState::Inactive,
            SwarmState::Locked => LocalNodeState::Locked,
            SwarmState::Active => LocalNodeState::Active,
        };
        LocalNodeInfo {
            node_id,
            node_addr: String::new(),
            state,
            control_available: state == LocalNodeState::Active && !multi.worker,
            error: String::new(),
            remote_managers: multi.remote_managers.clone(),
        }
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
