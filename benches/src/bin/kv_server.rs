//! One swarm-raft member serving puts, for the etcd comparison (docs/BENCHMARKS.md, "swarm-raft
//! beside etcd"; driven by `kv_compare`, loaded by `kv_load`).
//!
//! ```text
//! kv_server --id 1 --data DIR --raft 127.0.0.1:P --client 127.0.0.1:Q [--bootstrap] [--add 2=ADDR]...
//! ```
//! A real [`RaftNode`] with its WAL (fsync on every flush) and snapshots in `DIR`, the default raft
//! timing, and the swarm-core store as its state machine. Each put is one proposal holding one
//! store action: the config named after the key is created, or updated (at its current version)
//! with the new value as its data. Raft traffic goes over loopback TCP ([`TcpTransport`]), so a
//! 3-member cluster is 3 processes. `--bootstrap` makes a new cluster of this member and then adds
//! every `--add ID=RAFT_ADDR` (learner, then voter), retrying until each peer is up.
//!
//! Clients speak the [`Request`]/[`Response`] protocol of `swarm_benches::kv`, one request at a time
//! per connection. SIGTERM or SIGINT shuts raft down and exits 0.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use swarm_benches::kv::{
    read_msg, write_msg, FrameError, Request, Response, ServerStatus, TcpTransport,
};
use swarm_core::objects::secret::ConfigSpec;
use swarm_core::{Annotations, Config, Id, Meta, Proposer, SharedStore, Store, StoreAction};
use swarm_raft::{NodeConfig, RaftNode, RaftRpc, StartOptions};
use tokio::net::{TcpListener, TcpStream};

struct Args {
    id: u64,
    data: std::path::PathBuf,
    raft: String,
    client: String,
    bootstrap: bool,
    add: Vec<(u64, String)>,
}

const USAGE: &str =
    "usage: kv_server --id N --data DIR --raft ADDR --client ADDR [--bootstrap] [--add ID=ADDR]...";

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut id, mut data, mut raft, mut client) = (None, None, None, None);
    let (mut bootstrap, mut add) = (false, Vec::new());
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--id" => id = Some(val()?.parse::<u64>().map_err(|e| format!("--id: {e}"))?),
            "--data" => data = Some(std::path::PathBuf::from(val()?)),
            "--raft" => raft = Some(val()?),
            "--client" => client = Some(val()?),
            "--bootstrap" => bootstrap = true,
            "--add" => {
                let v = val()?;
                let (i, addr) = v
                    .split_once('=')
                    .ok_or(format!("--add wants ID=ADDR, got {v:?}"))?;
                let i = i.parse::<u64>().map_err(|e| format!("--add {v:?}: {e}"))?;
                add.push((i, addr.to_string()));
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let missing = |n: &str| format!("{n} is required");
    Ok(Args {
        id: id.ok_or_else(|| missing("--id"))?,
        data: data.ok_or_else(|| missing("--data"))?,
        raft: raft.ok_or_else(|| missing("--raft"))?,
        client: client.ok_or_else(|| missing("--client"))?,
        bootstrap,
        add,
    })
}

/// The config id a key maps to (FNV-1a over the key, 128 bits).
fn key_id(key: &str) -> Id {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in key.bytes() {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    Id::from_u128(h)
}

/// The one store action a put proposes.
fn put_action(store: &SharedStore, key: String, value: Vec<u8>) -> StoreAction {
    let id = key_id(&key);
    store.view(|s| match s.get::<Config>(&id) {
        Some(old) => StoreAction::Update(
            Config {
                id,
                meta: old.meta.clone(),
                spec: ConfigSpec {
                    annotations: old.spec.annotations.clone(),
                    data: value,
                    templating: None,
                },
            }
            .into(),
        ),
        None => StoreAction::Create(
            Config {
                id,
                meta: Meta::default(),
                spec: ConfigSpec {
                    annotations: Annotations::named(key),
                    data: value,
                    templating: None,
                },
            }
            .into(),
        ),
    })
}

fn status(node: &RaftNode) -> ServerStatus {
    let st = node.status();
    let wal = node.wal_stats();
    ServerStatus {
        id: node.id(),
        leader: node.is_leader(),
        voters: st.voters.len() as u32,
        fsyncs: wal.fsyncs,
        entries: wal.entries,
        last_log_index: st.last_log_index.unwrap_or(0),
    }
}

async fn serve_client(node: RaftNode, mut s: TcpStream) -> Result<(), FrameError> {
    s.set_nodelay(true)?;
    while let Some(req) = read_msg::<Request>(&mut s).await? {
        let resp = match req {
            Request::Put { key, value } => {
                let action = put_action(node.store(), key, value);
                Response::Put(node.propose(vec![action]).await.map_err(|e| e.to_string()))
            }
            Request::Get { key } => Response::Get(
                node.store()
                    .view(|s| s.get::<Config>(&key_id(&key)).map(|c| c.spec.data.clone())),
            ),
            Request::Status => Response::Status(status(&node)),
        };
        write_msg(&mut s, &resp).await?;
    }
    Ok(())
}

async fn serve_raft(node: RaftNode, mut s: TcpStream) -> Result<(), FrameError> {
    s.set_nodelay(true)?;
    while let Some(rpc) = read_msg::<RaftRpc>(&mut s).await? {
        let reply = node.handle_rpc(rpc).await;
        write_msg(&mut s, &reply).await?;
    }
    Ok(())
}

fn accept_loop<F, Fut>(listener: TcpListener, node: RaftNode, what: &'static str, serve: F)
where
    F: Fn(RaftNode, TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), FrameError>> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((s, _)) => {
                    let conn = serve(node.clone(), s);
                    tokio::spawn(async move {
                        match conn.await {
                            // A peer or client that went away (stopped, killed) is not news.
                            Err(FrameError::Io(e))
                                if matches!(
                                    e.kind(),
                                    std::io::ErrorKind::ConnectionReset
                                        | std::io::ErrorKind::BrokenPipe
                                        | std::io::ErrorKind::UnexpectedEof
                                ) => {}
                            Err(e) => eprintln!("kv_server: {what} connection: {e}"),
                            Ok(()) => {}
                        }
                    });
                }
                Err(e) => {
                    eprintln!("kv_server: accepting {what} connections: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
}

/// Bootstraps, waits to lead, then adds every peer (retrying while it is not up yet).
async fn form_cluster(node: RaftNode, peers: Vec<(u64, String)>) -> Result<(), String> {
    node.bootstrap()
        .await
        .map_err(|e| format!("bootstrap: {e}"))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !node.is_leader() {
        if tokio::time::Instant::now() > deadline {
            return Err("not leader 60 s after bootstrap".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (id, addr) in peers {
        loop {
            match node.add_manager(id, addr.clone()).await {
                Ok(()) => break,
                Err(e) if tokio::time::Instant::now() > deadline => {
                    return Err(format!("adding manager {id} at {addr}: {e}"))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    Ok(())
}

async fn run(args: Args) -> Result<(), String> {
    let raft_listener = TcpListener::bind(&args.raft)
        .await
        .map_err(|e| format!("binding raft address {}: {e}", args.raft))?;
    let client_listener = TcpListener::bind(&args.client)
        .await
        .map_err(|e| format!("binding client address {}: {e}", args.client))?;
    let config = NodeConfig::new(args.id, args.raft.clone(), args.data.clone());
    let store = SharedStore::new(Store::new());
    let node = RaftNode::start(
        config,
        store,
        Arc::new(TcpTransport::new()),
        StartOptions::default(),
    )
    .await
    .map_err(|e| format!("starting raft in {}: {e}", args.data.display()))?;
    accept_loop(raft_listener, node.clone(), "raft", serve_raft);
    accept_loop(client_listener, node.clone(), "client", serve_client);
    if args.bootstrap {
        let (n, peers) = (node.clone(), args.add);
        tokio::spawn(async move {
            if let Err(e) = form_cluster(n, peers).await {
                eprintln!("kv_server: {e}");
                std::process::exit(1);
            }
        });
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("SIGTERM handler: {e}"))?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    node.shutdown().await;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("kv_server: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kv_server: {e}");
            ExitCode::FAILURE
        }
    }
}
