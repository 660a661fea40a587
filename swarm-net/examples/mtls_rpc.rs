//! Serving one typed RPC over QUIC with mutual TLS, with a cluster CA made in the example.
//!
//! Run: `cargo run -p swarm-net --example mtls_rpc`
//!
//! 1. A cluster root CA (ECDSA P-256) is generated, and it issues two node certificates from
//!    CSRs: a manager (the server) and a worker (the client). The PKI reads no clock: `now` and
//!    the RNG are arguments, so the example passes the wall clock and the OS RNG.
//! 2. The embedder declares its method as a `const` [`Unary`] (name, access level, size limits)
//!    and serves it with a [`Router`] on 127.0.0.1.
//! 3. The worker calls it; the handler sees the caller's identity from its certificate.
//! 4. Two refusals: a manager-only method called by the worker, and a client whose certificate
//!    comes from another cluster's CA.
//!
//! Exits non-zero if a call that should succeed fails or one that should be refused is not.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand_core::OsRng;
use swarm_core::{Id, Timestamp};
use swarm_net::pki::{make_csr, PrivateKey, RootCa, TlsMaterial, DEFAULT_NODE_CERT_VALIDITY};
use swarm_net::rpc::{
    Access, CallContext, Client, Code, Peer, Router, RpcConfig, RpcError, Server, ServerOptions,
    Status, TlsState, Unary,
};
use swarm_net::{NodeIdentity, Role};

/// Any node of the cluster may ask; requests up to 1 KiB, answers up to 1 KiB.
const GREET: Unary<String, String> = Unary::new("demo.greet", Access::Node, 1024, 1024);
/// Managers only.
const SECRET_PLAN: Unary<(), String> = Unary::new("demo.plan", Access::Manager, 16, 1024);

const T: Duration = Duration::from_secs(10);

fn now() -> Timestamp {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
}

/// A cluster CA: its root and the cluster id it writes into every certificate.
struct Cluster {
    ca: RootCa,
    id: Id,
}

impl Cluster {
    fn new() -> Result<Cluster, swarm_net::Error> {
        let ca = RootCa::generate(PrivateKey::generate()?, now(), &mut OsRng)?;
        Ok(Cluster {
            ca,
            id: Id::generate(&mut OsRng),
        })
    }

    /// What a joining node does: make a key and a CSR; the CA sets the subject (node id, role,
    /// cluster) and signs. The node's credentials trust only this cluster's root.
    fn node(&self, role: Role) -> Result<TlsMaterial, swarm_net::Error> {
        let key = PrivateKey::generate()?;
        let csr = make_csr(&key)?;
        let identity = NodeIdentity {
            node_id: Id::generate(&mut OsRng),
            role,
            cluster_id: self.id,
        };
        let issued = self.ca.issue(
            &csr,
            &identity,
            DEFAULT_NODE_CERT_VALIDITY,
            now(),
            &mut OsRng,
        )?;
        TlsMaterial::new(issued.chain, key, vec![self.ca.cert_der().to_vec()])
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cluster = Cluster::new()?;
    let manager = cluster.node(Role::Manager)?;
    let worker = cluster.node(Role::Worker)?;

    // The server: the manager's credentials, the embedder's methods.
    let router = Router::new()
        .unary(&GREET, |ctx: CallContext, name: String| async move {
            let peer = ctx
                .peer
                .ok_or_else(|| Status::new(Code::Internal, "no peer identity"))?;
            Ok(format!(
                "hello {name}, {} {} of cluster {}",
                peer.identity.role, peer.identity.node_id, peer.identity.cluster_id
            ))
        })
        .unary(&SECRET_PLAN, |_ctx, ()| async move {
            Ok("only managers read this".to_string())
        });
    let loopback: SocketAddr = "127.0.0.1:0".parse()?;
    let server = Server::bind(
        loopback,
        TlsState::new(&manager)?,
        &RpcConfig::default(),
        router,
        ServerOptions::default(),
    )?;
    // Who the client expects to reach: a manager, with this node id (checked before sending).
    let peer = Peer {
        addr: server.local_addr()?,
        role: Role::Manager,
        node_id: Some(manager.identity().node_id),
    };
    println!("serving demo.greet on {}", peer.addr);

    // The worker calls.
    let client = Client::bind(loopback, TlsState::new(&worker)?, RpcConfig::default())?;
    let answer = client
        .unary(&peer, &GREET, &"worker".to_string(), T)
        .await?;
    println!("answer: {answer}");
    if !answer.contains(&worker.identity().node_id.to_string()) {
        return Err("the server did not see the worker's certificate identity".into());
    }

    // Refused: a worker calling a manager-only method.
    match client.unary(&peer, &SECRET_PLAN, &(), T).await {
        Err(RpcError::PermissionDenied(why)) => println!("refused as expected: {why}"),
        other => return Err(format!("a worker read demo.plan: {other:?}").into()),
    }

    // Refused: a node of another cluster (its certificate does not chain to our root).
    let stranger = Cluster::new()?.node(Role::Manager)?;
    let outsider = Client::bind(loopback, TlsState::new(&stranger)?, RpcConfig::default())?;
    match outsider
        .unary(&peer, &GREET, &"outsider".to_string(), T)
        .await
    {
        Err(e @ (RpcError::Authentication(_) | RpcError::WrongPeer { .. })) => {
            println!("refused as expected: {e}")
        }
        other => return Err(format!("a foreign certificate was served: {other:?}").into()),
    }

    server.shutdown(Duration::from_secs(1)).await;
    Ok(())
}
