//! Test doubles for the API layer (feature `testing`): [`TestBackend`], a [`Backend`] over a
//! [`SharedStore`] + [`LocalProposer`] + [`ManualClock`] with trivial init/unlock/leave (no raft, no
//! scheduler, no runtime: tasks appear only when a test writes them), [`TestServer`], the API on a
//! temporary Unix socket, and [`HttpClient`], a small keep-alive HTTP/1.1 client for that socket.
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
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::backend::{Backend, BackendError, ClusterAccess, DaemonInfo, InitRequest, SwarmState};
use crate::control::cluster::MANAGER_SUBSYSTEM;

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

/// An HTTP answer.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A keep-alive HTTP/1.1 client over one Unix socket connection.
pub struct HttpClient {
    conn: BufReader<UnixStream>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").finish_non_exhaustive()
    }
}

fn bad(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

impl HttpClient {
    /// Connects to `path`.
    pub async fn connect(path: &Path) -> std::io::Result<HttpClient> {
        Ok(HttpClient {
            conn: BufReader::new(UnixStream::connect(path).await?),
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
        let bytes = serde_json::to_vec(body).map_err(|e| bad(e.to_string()))?;
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
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: docker\r\n");
        if let Some(b) = body {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        head.push_str("\r\n");
        let stream = self.conn.get_mut();
        stream.write_all(head.as_bytes()).await?;
        if let Some(b) = body {
            stream.write_all(b).await?;
        }
        stream.flush().await?;
        self.read_response(method == "HEAD").await
    }

    async fn read_line(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        if self.conn.read_line(&mut line).await? == 0 {
            return Err(bad("connection closed"));
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }

    async fn read_response(&mut self, head_only: bool) -> std::io::Result<HttpResponse> {
        let status_line = self.read_line().await?;
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let line = self.read_line().await?;
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let find = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if head_only || status == 204 || status == 304 {
            // No body.
        } else if let Some(len) = find("content-length") {
            let len: usize = len.parse().map_err(|_| bad("bad content-length"))?;
            body.resize(len, 0);
            self.conn.read_exact(&mut body).await?;
        } else if find("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
            loop {
                let size_line = self.read_line().await?;
                let size =
                    usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                        .map_err(|_| bad("bad chunk size"))?;
                let start = body.len();
                body.resize(start + size, 0);
                self.conn.read_exact(&mut body[start..]).await?;
                self.read_line().await?;
                if size == 0 {
                    break;
                }
            }
        } else {
            self.conn.read_to_end(&mut body).await?;
        }
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}
