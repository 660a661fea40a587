//! The cluster CA over QUIC on loopback: joining by token, status long-poll, renewal, role changes,
//! removed nodes, root rotation, and where the keys live. One in-process manager with a
//! `LocalProposer` store; the signer is started and stopped through the leader flag.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand_core::{OsRng, RngCore};
use swarm_core::objects::node::{IssuanceState, Node, NodeAvailability, NodeRole};
use swarm_core::{
    Cluster, Id, LocalProposer, Meta, ObjectKind, ObjectRef, SharedStore, Store, StoreAction,
    Timestamp,
};
use swarm_net::pki::{verify_chain, PrivateKey, TlsMaterial};
use swarm_net::rpc::{
    Client, Peer, PeerPolicy, Router, RpcConfig, Server, ServerOptions, SystemClock, TlsState,
};
use swarm_net::{JoinToken, NodeIdentity, Role};
use swarm_node::net::ca::{
    join, new_cluster_ca, renew, CaServer, CertDir, JoinError, Joined, StatusRequest,
    NODE_CERTIFICATE_STATUS,
};
use swarm_secrets::Kek;
use tokio::sync::watch;

fn now() -> Timestamp {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp(d.as_nanos() as u64)
}

const ANY: &str = "127.0.0.1:0";

struct Harness {
    store: SharedStore,
    proposer: Arc<LocalProposer>,
    addr: SocketAddr,
    server: Option<Server>,
    leader: watch::Sender<bool>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    cluster_id: Id,
    manager: TlsMaterial,
    manager_tls: Arc<TlsState>,
    ca_key_der: Vec<u8>,
}

impl Harness {
    async fn start(leading: bool) -> Harness {
        let store = SharedStore::new(Store::new());
        let clock = Arc::new(SystemClock);
        let proposer = Arc::new(LocalProposer::new(store.clone(), clock.clone()));
        let cluster_id = Id::generate(&mut OsRng);
        let node_id = Id::generate(&mut OsRng);
        let ca = new_cluster_ca(cluster_id, node_id, now(), &mut OsRng).unwrap();
        let ca_key_der = ca.root_ca.ca_key.as_ref().unwrap().expose().to_vec();
        let cluster = Cluster {
            id: cluster_id,
            meta: Meta::default(),
            spec: Default::default(),
            root_ca: ca.root_ca.clone(),
            unlock_keys: Vec::new(),
            network_bootstrap: Default::default(),
        };
        let mut node = swarm_core::testing::node(1);
        node.id = node_id;
        node.role = NodeRole::Manager;
        node.spec.desired_role = NodeRole::Manager;
        node.certificate = Some(ca.certificate.clone());
        proposer
            .propose_now(vec![
                StoreAction::Create(cluster.into()),
                StoreAction::Create(node.into()),
            ])
            .unwrap();
        let (leader, leader_rx) = watch::channel(leading);
        let (stop, stop_rx) = watch::channel(false);
        let server_ca = CaServer::new(
            store.clone(),
            proposer.clone(),
            leader_rx,
            clock.clone(),
            swarm_raft::entropy::os(),
        );
        let policy: Arc<dyn PeerPolicy> = server_ca.deny_set();
        let manager_tls = TlsState::new(&ca.material).unwrap();
        let server = Server::bind(
            ANY.parse().unwrap(),
            manager_tls.clone(),
            &RpcConfig::default(),
            server_ca.routes(Router::new()),
            ServerOptions {
                policy,
                clock,
                ..ServerOptions::default()
            },
        )
        .unwrap();
        let addr = server.local_addr().unwrap();
        let task = server_ca.spawn(stop_rx);
        Harness {
            store,
            proposer,
            addr,
            server: Some(server),
            leader,
            stop,
            task: Some(task),
            cluster_id,
            manager: ca.material,
            manager_tls,
            ca_key_der,
        }
    }

    fn peer(&self) -> Peer {
        Peer {
            addr: self.addr,
            role: Role::Manager,
            node_id: None,
        }
    }

    fn cluster(&self) -> Arc<Cluster> {
        self.store.view(|s| s.cluster().cloned()).unwrap()
    }

    fn node(&self, id: &Id) -> Option<Arc<Node>> {
        self.store.view(|s| s.get::<Node>(id).cloned())
    }

    fn token(&self, role: Role) -> String {
        let c = self.cluster();
        match role {
            Role::Worker => c.root_ca.join_tokens.worker.clone(),
            Role::Manager => c.root_ca.join_tokens.manager.clone(),
        }
    }

    async fn join(&self, token: &str) -> Result<Joined, JoinError> {
        join(
            ANY.parse().unwrap(),
            self.addr,
            token,
            NodeAvailability::Active,
            &RpcConfig::default(),
            now,
        )
        .await
    }

    fn update_node(&self, id: &Id, f: impl FnOnce(&mut Node)) {
        let mut n = (*self.node(id).unwrap()).clone();
        f(&mut n);
        self.proposer
            .propose_now(vec![StoreAction::Update(n.into())])
            .unwrap();
    }

    fn update_cluster(&self, f: impl FnOnce(&mut Cluster)) {
        let mut c = (*self.cluster()).clone();
        f(&mut c);
        self.proposer
            .propose_now(vec![StoreAction::Update(c.into())])
            .unwrap();
    }

    async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
        if let Some(s) = self.server.take() {
            s.shutdown(Duration::from_millis(200)).await;
        }
    }
}

/// Waits until `f` holds (a liveness bound, not a timing assertion: generous on a loaded machine).
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..3000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never happened: {what}");
}

fn client_for(material: &TlsMaterial) -> Client {
    Client::bind(
        ANY.parse().unwrap(),
        TlsState::new(material).unwrap(),
        RpcConfig::default(),
    )
    .unwrap()
}

fn root_der(h: &Harness) -> Vec<u8> {
    swarm_net::pki::bundle::parse_pem(h.cluster().root_ca.ca_cert_pem.as_bytes())
        .unwrap()
        .remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_and_manager_join_by_token_with_the_right_identity() {
    let h = Harness::start(true).await;
    for role in [Role::Worker, Role::Manager] {
        let joined = h.join(&h.token(role)).await.unwrap();
        let id = NodeIdentity::from_cert(joined.material.leaf()).unwrap();
        assert_eq!(id.role, role, "OU");
        assert_eq!(id.node_id, joined.node_id, "CN");
        assert_eq!(id.cluster_id, h.cluster_id, "O");
        assert_eq!(joined.role, role);
        verify_chain(joined.material.chain(), &[root_der(&h)], now()).unwrap();
        let node = h.node(&joined.node_id).unwrap();
        let want = if role == Role::Worker {
            NodeRole::Worker
        } else {
            NodeRole::Manager
        };
        assert_eq!(node.role, want);
        assert_eq!(node.spec.desired_role, want);
        let cert = node.certificate.as_ref().unwrap();
        assert_eq!(cert.state, IssuanceState::Issued);
        assert_eq!(cert.chain, joined.material.chain());
    }
    // The joined credentials work for mutual TLS against the manager.
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_and_rotated_tokens_are_refused() {
    let h = Harness::start(true).await;
    let old = h.token(Role::Worker);
    let parsed = JoinToken::parse(&old).unwrap();
    let mut secret = [0u8; 16];
    OsRng.fill_bytes(&mut secret);
    let wrong = JoinToken::from_parts(*parsed.ca_digest(), secret);
    match h.join(&wrong.expose_text()).await {
        Err(JoinError::Refused(m)) => assert!(m.contains("invalid join token"), "{m}"),
        other => panic!("a wrong token joined: {other:?}"),
    }
    // Rotate the worker token in the store (as `docker swarm join-token --rotate worker` does).
    OsRng.fill_bytes(&mut secret);
    let rotated = JoinToken::from_parts(*parsed.ca_digest(), secret);
    let text = rotated.expose_text().to_string();
    h.update_cluster(|c| c.root_ca.join_tokens.worker = text.clone());
    match h.join(&old).await {
        Err(JoinError::Refused(m)) => assert!(m.contains("rotated"), "{m}"),
        other => panic!("a rotated token joined: {other:?}"),
    }
    let joined = h.join(&text).await.unwrap();
    assert_eq!(joined.role, Role::Worker);
    // Malformed text never reaches the manager.
    assert!(matches!(
        h.join("SWMTKN-1-nope").await,
        Err(JoinError::Token(_))
    ));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_another_ca_is_refused_before_the_csr_is_sent() {
    let h = Harness::start(true).await;
    let foreign = JoinToken::generate(b"another cluster's root bundle", &mut OsRng);
    match h.join(&foreign.expose_text()).await {
        Err(JoinError::CaMismatch(e)) => {
            assert!(
                e.to_string().contains("does not match the join token"),
                "{e}"
            )
        }
        other => panic!("joined with a foreign CA digest: {other:?}"),
    }
    // Nothing reached the CA: only the first manager exists.
    assert_eq!(h.store.view(|s| s.count::<Node>()), 1);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_long_poll_returns_when_the_signer_issues() {
    // Not leading: nothing signs until the flag flips.
    let h = Harness::start(false).await;
    let token = h.token(Role::Worker);
    let addr = h.addr;
    let joining = tokio::spawn(async move {
        join(
            ANY.parse().unwrap(),
            addr,
            &token,
            NodeAvailability::Drain,
            &RpcConfig::default(),
            now,
        )
        .await
    });
    let mut pending = None;
    eventually("the joiner's node is recorded", || {
        pending = h.store.view(|s| {
            s.iter::<Node>()
                .find(|n| n.certificate.as_ref().map(|c| c.state) == Some(IssuanceState::Pending))
                .map(|n| n.id)
        });
        pending.is_some()
    })
    .await;
    let id = pending.unwrap();
    assert_eq!(
        h.node(&id).unwrap().spec.availability,
        NodeAvailability::Drain
    );
    // A status call made now is held by the server (the certificate is pending)...
    let roots = vec![root_der(&h)];
    let client = Client::bind(
        ANY.parse().unwrap(),
        TlsState::joining(&roots).unwrap(),
        RpcConfig::default(),
    )
    .unwrap();
    let peer = h.peer();
    let held = tokio::spawn(async move {
        client
            .unary(
                &peer,
                &NODE_CERTIFICATE_STATUS,
                &StatusRequest { node_id: id },
                Duration::from_secs(30),
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        h.node(&id).unwrap().certificate.as_ref().unwrap().state,
        IssuanceState::Pending
    );
    // ...and answers with the issued chain once this manager leads and its signer runs.
    h.leader.send(true).unwrap();
    let answer = held.await.unwrap().unwrap();
    assert_eq!(answer.state, IssuanceState::Issued);
    assert!(!answer.chain.is_empty());
    let joined = joining.await.unwrap().unwrap();
    assert_eq!(joined.node_id, id);
    assert_eq!(answer.chain, joined.material.chain());
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_with_the_current_certificate_and_promote_demote() {
    let h = Harness::start(true).await;
    let joined = h.join(&h.token(Role::Worker)).await.unwrap();
    let client = client_for(&joined.material);
    let renewed = renew(&client, &h.peer(), &joined.material, now)
        .await
        .unwrap();
    assert_eq!(renewed.identity(), joined.material.identity());
    assert_ne!(
        renewed.key(),
        joined.material.key(),
        "a renewal uses a new key"
    );
    assert_ne!(renewed.leaf(), joined.material.leaf());
    verify_chain(renewed.chain(), &[root_der(&h)], now()).unwrap();

    // Promote: the signer reissues for the node's key with the manager OU.
    let id = joined.node_id;
    h.update_node(&id, |n| n.spec.desired_role = NodeRole::Manager);
    eventually("the promoted node's certificate is reissued", || {
        let n = h.node(&id).unwrap();
        let c = n.certificate.as_ref().unwrap();
        c.state == IssuanceState::Issued
            && c.role == NodeRole::Manager
            && NodeIdentity::from_cert(&c.chain[0]).unwrap().role == Role::Manager
    })
    .await;
    // A renewal now names the new role.
    let client = client_for(&renewed);
    let promoted = renew(&client, &h.peer(), &renewed, now).await.unwrap();
    assert_eq!(promoted.identity().role, Role::Manager);
    // Demote back.
    h.update_node(&id, |n| n.spec.desired_role = NodeRole::Worker);
    let client = client_for(&promoted);
    eventually("the demoted node's certificate is reissued", || {
        let n = h.node(&id).unwrap();
        let c = n.certificate.as_ref().unwrap();
        c.state == IssuanceState::Issued && c.role == NodeRole::Worker
    })
    .await;
    let demoted = renew(&client, &h.peer(), &promoted, now).await.unwrap();
    assert_eq!(demoted.identity().role, Role::Worker);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_node_is_refused() {
    let h = Harness::start(true).await;
    let joined = h.join(&h.token(Role::Worker)).await.unwrap();
    let id = joined.node_id;
    h.proposer
        .propose_now(vec![StoreAction::Remove(ObjectRef {
            kind: ObjectKind::Node,
            id,
        })])
        .unwrap();
    let client = client_for(&joined.material);
    let mut last = None;
    eventually("the removed node's renewal is refused", || {
        // The deny set is fed asynchronously from the store's removal event.
        let r = futures_block(renew(&client, &h.peer(), &joined.material, now));
        let refused = matches!(r, Err(JoinError::Refused(_)));
        last = Some(format!("{r:?}"));
        refused
    })
    .await;
    let msg = last.unwrap();
    assert!(msg.contains("removed"), "{msg}");
    h.shutdown().await;
}

/// Runs a future to completion from a sync closure inside the multi-thread runtime.
fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_rotation_converges_and_old_and_new_chains_verify_during_it() {
    let h = Harness::start(true).await;
    let old_root = root_der(&h);
    let old_tokens = h.cluster().root_ca.join_tokens.clone();
    let mut nodes: Vec<TlsMaterial> = vec![h.manager.clone()];
    for _ in 0..2 {
        nodes.push(h.join(&h.token(Role::Worker)).await.unwrap().material);
    }
    // `docker swarm ca --rotate`.
    h.update_cluster(|c| c.spec.ca.force_rotate += 1);
    eventually("the rotation starts", || {
        h.cluster().root_ca.root_rotation.is_some()
    })
    .await;
    let rotation = h.cluster().root_ca.root_rotation.clone().unwrap();
    let new_root = swarm_net::pki::bundle::parse_pem(rotation.ca_cert_pem.as_bytes())
        .unwrap()
        .remove(0);
    let both = vec![old_root.clone(), new_root.clone()];
    // Old chains verify under both roots during the rotation.
    for m in &nodes {
        verify_chain(m.chain(), &both, now()).unwrap();
    }
    // Every node renews when marked (the renewal loop does this on its status check).
    let mut renewed = Vec::new();
    for (i, m) in nodes.iter().enumerate() {
        let id = m.identity().node_id;
        eventually("the node is marked for rotation", || {
            h.node(&id).unwrap().certificate.as_ref().unwrap().state == IssuanceState::Rotate
        })
        .await;
        let client = client_for(m);
        let fresh = renew(&client, &h.peer(), m, now).await.unwrap();
        // A new chain verifies for a peer that trusts only the old root (through the cross-signed
        // intermediate) and for one that trusts only the new root.
        verify_chain(fresh.chain(), std::slice::from_ref(&old_root), now()).unwrap();
        verify_chain(fresh.chain(), std::slice::from_ref(&new_root), now()).unwrap();
        // The node learned the new root from the status answer.
        assert!(fresh.roots().contains(&new_root));
        if i + 1 < nodes.len() {
            // Others still hold old-root chains, so the rotation cannot have ended: the node
            // trusts both roots and a not-yet-renewed peer still verifies for it. (After the last
            // renewal the rotation may end before the answer, leaving the new root alone.)
            assert!(fresh.roots().contains(&old_root));
            verify_chain(nodes[i + 1].chain(), fresh.roots(), now()).unwrap();
        }
        if i == 0 {
            // The manager serves with its renewed certificate (its renewal loop installs it).
            h.manager_tls.update(&fresh).unwrap();
        }
        renewed.push(fresh);
    }
    eventually("the rotation finishes", || {
        h.cluster().root_ca.root_rotation.is_none()
    })
    .await;
    let c = h.cluster();
    assert_eq!(root_der(&h), new_root);
    assert_ne!(c.root_ca.join_tokens, old_tokens, "tokens regenerated");
    assert_ne!(
        c.root_ca.ca_key.as_ref().unwrap().expose(),
        h.ca_key_der.as_slice()
    );
    for m in &renewed {
        verify_chain(m.chain(), std::slice::from_ref(&new_root), now()).unwrap();
    }
    // The new tokens pin the new root, and a join with them works.
    let joined = h.join(&h.token(Role::Worker)).await.unwrap();
    verify_chain(
        joined.material.chain(),
        std::slice::from_ref(&new_root),
        now(),
    )
    .unwrap();
    assert!(matches!(
        h.join(&old_tokens.worker).await,
        Err(JoinError::CaMismatch(_))
    ));
    h.shutdown().await;
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_never_appear_in_debug_or_in_plaintext_on_disk() {
    let h = Harness::start(true).await;
    let joined = h.join(&h.token(Role::Worker)).await.unwrap();
    // The CA key is in the store (sealed raft log in production) but never in Debug output.
    let hex: String = h.ca_key_der.iter().map(|b| format!("{b:02x}")).collect();
    let dec = format!("{:?}", h.ca_key_der);
    let debug = format!("{:?} {:?}", h.cluster(), h.store.view(|s| s.snapshot()));
    assert!(!debug.contains(&hex) && !debug.contains(&dec[1..dec.len() - 1]));
    assert!(debug.contains("REDACTED"));
    let node_key = joined.material.key().pkcs8_der().to_vec();
    let dbg = format!("{joined:?}");
    let node_dec = format!("{node_key:?}");
    assert!(!dbg.contains(&node_dec[1..node_dec.len() - 1]));

    // The node's certificate directory: chain and roots in PEM, the key sealed.
    let data = tempfile::tempdir().unwrap();
    let dir = CertDir::new(data.path());
    let kek = dir.local_kek(&mut OsRng).unwrap();
    dir.save(&joined.material, &kek, &mut OsRng).unwrap();
    let back = dir.load(&kek).unwrap().unwrap();
    assert_eq!(back, joined.material);
    // The same KEK comes back from its 0600 file.
    let again = dir.local_kek(&mut OsRng).unwrap();
    assert_eq!(dir.load(&again).unwrap().unwrap(), joined.material);
    // Another KEK cannot open the key.
    assert!(dir.load(&Kek::generate(&mut OsRng)).is_err());
    let mut files = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        let bytes = std::fs::read(entry.path()).unwrap();
        files += 1;
        assert!(
            !contains(&bytes, &node_key),
            "{:?} holds the node key",
            entry.path()
        );
        assert!(
            !contains(&bytes, &h.ca_key_der),
            "{:?} holds the CA key",
            entry.path()
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{:?}", entry.path());
    }
    assert_eq!(files, 4);
    // An unrelated key is not accidentally equal (the grep can fail).
    assert!(!contains(
        &std::fs::read(dir.path().join("swarm-node.crt")).unwrap(),
        PrivateKey::generate().unwrap().pkcs8_der()
    ));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_csr_ends_failed_with_the_reason() {
    let h = Harness::start(true).await;
    let roots = vec![root_der(&h)];
    let client = Client::bind(
        ANY.parse().unwrap(),
        TlsState::joining(&roots).unwrap(),
        RpcConfig::default(),
    )
    .unwrap();
    let request = swarm_node::net::ca::IssueRequest {
        csr: b"not a certificate signing request".to_vec(),
        token: Some(h.token(Role::Worker)),
        availability: NodeAvailability::Active,
    };
    // The token is shown redacted.
    assert!(!format!("{request:?}").contains("SWMTKN"));
    let answer = client
        .unary(
            &h.peer(),
            &swarm_node::net::ca::ISSUE_NODE_CERTIFICATE,
            &request,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let status = client
        .unary(
            &h.peer(),
            &NODE_CERTIFICATE_STATUS,
            &StatusRequest {
                node_id: answer.node_id,
            },
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(status.state, IssuanceState::Failed);
    assert!(status.error.contains("CSR"), "{}", status.error);
    assert!(status.chain.is_empty());
    h.shutdown().await;
}
