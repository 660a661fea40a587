//! Task logs across hosts (`swarm_node::net::logs`), in process on 127.0.0.1: a manager's
//! `LogBroker` served by a swarm-net `Server` with TestPki credentials, and nodes' `LogPublisher`s
//! (or raw RPC calls) holding worker certificates, reading lines from an in-memory source.
//!
//! What it proves: a manager gets a task's lines from the node running it (with `tail`, and with
//! `follow` the lines written later); a node refuses a task that is not its own and a
//! subscription naming another node; the manager refuses a batch from a node the subscription was
//! not sent to, or for a subscription that is not open; a node listens only on managers (a server
//! with a worker certificate is refused before any call); a subscriber that goes away cancels the
//! subscription; a node that goes away ends its followed part with an error naming it; a
//! subscriber that does not read stops the node from reading its runtime (bounded queues all the
//! way), and the lines flow again once it reads.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use swarm_core::{Id, Timestamp};
use swarm_net::pki::testing::TestPki;
use swarm_net::pki::DEFAULT_NODE_CERT_VALIDITY;
use swarm_net::rpc::{
    Client, Code, Peer, Router, RpcConfig, RpcError, Server, ServerOptions, TlsState,
};
use swarm_net::{NodeIdentity, Role};
use swarm_node::net::dispatch::WeightedManager;
use swarm_node::net::logs::{
    logs_routes, ListenMessage, ListenRequest, LogBroker, LogEnd, LogPublisher, LogSource,
    LogSubscription, PublishRequest, TaskLogs, WireRecord, LISTEN, MAX_BATCH_RECORDS, PUBLISH,
    SUBSCRIPTION_BUFFER,
};
use swarm_runtime::testing::unique_number;
use swarm_runtime::{LogOptions, LogRecord, LogRecords, LogStream, RuntimeError};
use tokio::sync::mpsc;

const T: Duration = Duration::from_secs(10);

fn now() -> Timestamp {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
}

fn id() -> Id {
    Id::from_u128(unique_number())
}

fn line(n: u64, text: &str) -> LogRecord {
    LogRecord {
        time: Some(Timestamp(n)),
        stream: if text.starts_with("err") {
            LogStream::Stderr
        } else {
            LogStream::Stdout
        },
        line: text.to_string(),
    }
}

/// A node's lines: what each task wrote, and for one task a channel of later lines (a follow
/// ends when the channel's sender is dropped).
#[derive(Default)]
struct Source {
    kept: HashMap<Id, Vec<LogRecord>>,
    later: Mutex<HashMap<Id, mpsc::UnboundedReceiver<LogRecord>>>,
    /// A task whose follow yields numbered lines without end, counting how many were read.
    endless: Option<(Id, Arc<AtomicUsize>)>,
}

#[async_trait::async_trait]
impl TaskLogs for Source {
    async fn log_stream(&self, task: &Id, opts: LogOptions) -> Result<LogRecords, RuntimeError> {
        if let Some((endless, read)) = &self.endless {
            if endless == task {
                let read = read.clone();
                return Ok(Box::pin(futures_util::stream::iter(0u64..).map(move |n| {
                    read.fetch_add(1, Ordering::SeqCst);
                    Ok(line(n, &format!("line {n}")))
                })));
            }
        }
        let kept = self
            .kept
            .get(task)
            .cloned()
            .ok_or(RuntimeError::NotFound { task: *task })?;
        let head = futures_util::stream::iter(opts.select(kept).into_iter().map(Ok));
        let later = if opts.follow {
            self.later.lock().unwrap().remove(task)
        } else {
            None
        };
        Ok(match later {
            Some(rx) => Box::pin(head.chain(futures_util::stream::unfold(rx, |mut rx| async {
                rx.recv().await.map(|r| (Ok(r), rx))
            }))),
            None => Box::pin(head),
        })
    }
}

struct Pki(Mutex<TestPki>);

impl Pki {
    fn new() -> Pki {
        Pki(Mutex::new(TestPki::new(unique_number() as u64, now())))
    }
    fn creds(&self, node_id: Id, role: Role) -> Arc<TlsState> {
        let mut pki = self.0.lock().unwrap();
        let identity = NodeIdentity {
            node_id,
            role,
            cluster_id: pki.cluster_id(),
        };
        TlsState::new(&pki.node_as(identity, DEFAULT_NODE_CERT_VALIDITY, now())).unwrap()
    }
    fn client(&self, node_id: Id, role: Role) -> Arc<Client> {
        Arc::new(
            Client::bind(
                "127.0.0.1:0".parse().unwrap(),
                self.creds(node_id, role),
                RpcConfig::default(),
            )
            .unwrap(),
        )
    }
}

/// A manager serving the log routes.
struct Manager {
    id: Id,
    broker: LogBroker,
    server: Server,
}

impl Manager {
    fn new(pki: &Pki, role: Role) -> Manager {
        let id = id();
        let broker = LogBroker::new();
        let server = Server::bind(
            "127.0.0.1:0".parse().unwrap(),
            pki.creds(id, role),
            &RpcConfig::default(),
            logs_routes(Router::new(), broker.clone()),
            ServerOptions::default(),
        )
        .unwrap();
        Manager { id, broker, server }
    }
    fn addr(&self) -> SocketAddr {
        self.server.local_addr().unwrap()
    }
    fn weighted(&self) -> WeightedManager {
        WeightedManager {
            addr: self.addr(),
            node_id: Some(self.id),
            weight: 1,
        }
    }
    fn peer(&self) -> Peer {
        Peer {
            addr: self.addr(),
            role: Role::Manager,
            node_id: Some(self.id),
        }
    }
    async fn wait_listening(&self, node: &Id) {
        tokio::time::timeout(T, async {
            while !self.broker.listening(node) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the node opens its listen stream");
    }
}

/// A node publishing `source` (owning `owned`) to `managers`.
fn publisher(
    pki: &Pki,
    node: Id,
    source: Source,
    owned: &[Id],
    managers: Vec<WeightedManager>,
) -> LogPublisher {
    let owned: HashSet<Id> = owned.iter().copied().collect();
    LogPublisher::start(
        pki.client(node, Role::Worker),
        LogSource {
            node_id: node,
            runtime: Arc::new(source),
            owns: Arc::new(move |t: &Id| owned.contains(t)),
        },
        Arc::new(move || managers.clone()),
    )
}

async fn next(l: &mut LogRecords) -> Option<Result<LogRecord, RuntimeError>> {
    tokio::time::timeout(T, l.next())
        .await
        .expect("a line or the end")
}

async fn collect(lines: LogRecords) -> Vec<Result<LogRecord, String>> {
    tokio::time::timeout(
        T,
        lines
            .map(|r| r.map_err(|e| e.to_string()))
            .collect::<Vec<_>>(),
    )
    .await
    .expect("the stream ends")
}

#[tokio::test]
async fn a_manager_reads_a_task_from_the_node_running_it_with_tail() {
    let pki = Pki::new();
    let m = Manager::new(&pki, Role::Manager);
    let (node, task) = (id(), id());
    let kept = vec![line(1, "one"), line(2, "err two"), line(3, "three")];
    let source = Source {
        kept: HashMap::from([(task, kept.clone())]),
        ..Default::default()
    };
    let p = publisher(&pki, node, source, &[task], vec![m.weighted()]);
    m.wait_listening(&node).await;

    let all = m
        .broker
        .subscribe(node, task, LogOptions::default())
        .await
        .expect("the node has the task's logs");
    let got = collect(all).await;
    assert_eq!(got, kept.iter().cloned().map(Ok).collect::<Vec<_>>());

    let last = m
        .broker
        .subscribe(
            node,
            task,
            LogOptions {
                tail: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(collect(last).await, vec![Ok(line(3, "three"))]);
    assert_eq!(
        m.broker.open_subscriptions(),
        0,
        "ended subscriptions are forgotten"
    );

    // A task the node never ran: no logs, as for a task that never ran on the local node.
    let other = id();
    let none = m.broker.subscribe(node, other, LogOptions::default()).await;
    assert!(none.is_err(), "no logs there");
    p.stop().await;
}

#[tokio::test]
async fn follow_sees_later_lines_and_a_lost_node_ends_it_with_an_error() {
    let pki = Pki::new();
    let m = Manager::new(&pki, Role::Manager);
    let (node, task) = (id(), id());
    let (later_tx, later_rx) = mpsc::unbounded_channel();
    let source = Source {
        kept: HashMap::from([(task, vec![line(1, "before")])]),
        later: Mutex::new(HashMap::from([(task, later_rx)])),
        ..Default::default()
    };
    let p = publisher(&pki, node, source, &[task], vec![m.weighted()]);
    m.wait_listening(&node).await;
    let mut lines = m
        .broker
        .subscribe(
            node,
            task,
            LogOptions {
                follow: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(next(&mut lines).await.unwrap().unwrap(), line(1, "before"));
    later_tx.send(line(2, "after")).unwrap();
    assert_eq!(next(&mut lines).await.unwrap().unwrap(), line(2, "after"));

    // The node goes away: its part ends with an error naming it, not a hang.
    p.stop().await;
    let end = next(&mut lines).await.expect("an error item").unwrap_err();
    let msg = end.to_string();
    assert!(msg.contains(&node.to_string()), "{msg}");
    assert!(msg.contains("no longer connected"), "{msg}");
    assert!(next(&mut lines).await.is_none());
    drop(later_tx);
}

#[tokio::test]
async fn a_subscriber_going_away_cancels_the_subscription() {
    let pki = Pki::new();
    let m = Manager::new(&pki, Role::Manager);
    let (node, task) = (id(), id());
    let (later_tx, later_rx) = mpsc::unbounded_channel();
    let source = Source {
        kept: HashMap::from([(task, vec![line(1, "x")])]),
        later: Mutex::new(HashMap::from([(task, later_rx)])),
        ..Default::default()
    };
    let p = publisher(&pki, node, source, &[task], vec![m.weighted()]);
    m.wait_listening(&node).await;
    let follow = LogOptions {
        follow: true,
        ..Default::default()
    };
    let lines = m.broker.subscribe(node, task, follow).await.unwrap();
    assert_eq!(m.broker.open_subscriptions(), 1);
    drop(lines);
    assert_eq!(m.broker.open_subscriptions(), 0);
    // The node was told: its serving task is gone, so the sender of later lines is dropped.
    tokio::time::timeout(T, later_tx.closed())
        .await
        .expect("the node stops reading the cancelled task");
    p.stop().await;
}

#[tokio::test]
async fn a_node_serves_only_its_own_tasks() {
    let pki = Pki::new();
    let m = Manager::new(&pki, Role::Manager);
    let (node, mine, foreign) = (id(), id(), id());
    // The node's runtime has both tasks' lines, but its agent controls only `mine`.
    let source = Source {
        kept: HashMap::from([
            (mine, vec![line(1, "mine")]),
            (foreign, vec![line(1, "secret of another node")]),
        ]),
        ..Default::default()
    };
    let p = publisher(&pki, node, source, &[mine], vec![m.weighted()]);
    m.wait_listening(&node).await;
    let got = collect(
        m.broker
            .subscribe(node, foreign, LogOptions::default())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(got.len(), 1, "only the refusal: {got:?}");
    let e = got[0].as_ref().unwrap_err();
    assert!(e.contains("refused"), "{e}");
    assert!(
        e.contains(&format!("task {foreign} is not a task of node {node}")),
        "{e}"
    );
    p.stop().await;

    // A subscription naming another node is refused by the node itself.
    let other = id();
    let source = LogSource {
        node_id: node,
        runtime: Arc::new(Source {
            kept: HashMap::from([(mine, vec![line(1, "mine")])]),
            ..Default::default()
        }),
        owns: Arc::new(move |t: &Id| *t == mine),
    };
    let sub = LogSubscription {
        id: 1,
        node_id: other,
        task_id: mine,
        since: None,
        tail: None,
        follow: false,
    };
    match source.open(&sub).await {
        Err(LogEnd::Refused(m)) => assert!(m.contains(&other.to_string()), "{m}"),
        Err(e) => panic!("expected a refusal, got {e:?}"),
        Ok(_) => panic!("expected a refusal, got lines"),
    }
}

#[tokio::test]
async fn the_manager_takes_lines_only_from_the_node_it_asked() {
    let pki = Pki::new();
    let m = Manager::new(&pki, Role::Manager);
    let (a, b, task) = (id(), id(), id());
    // Node `a` listens with raw calls, so the test sees the subscription it is sent.
    let client_a = pki.client(a, Role::Worker);
    let mut listen = client_a
        .server_streaming(&m.peer(), &LISTEN, &ListenRequest {}, None)
        .await
        .unwrap();
    m.wait_listening(&a).await;
    let broker = m.broker.clone();
    let subscriber = tokio::spawn(async move {
        let lines = broker
            .subscribe(a, task, LogOptions::default())
            .await
            .unwrap();
        collect(lines).await
    });
    let sub = match tokio::time::timeout(T, listen.next()).await.unwrap() {
        Some(Ok(ListenMessage::Subscribe(s))) => s,
        other => panic!("expected a subscription, got {other:?}"),
    };
    assert_eq!((sub.node_id, sub.task_id), (a, task));
    let batch = |task_id: Id, text: &str, end: Option<LogEnd>| PublishRequest {
        subscription: sub.id,
        task_id,
        records: vec![WireRecord {
            time: Some(Timestamp(5)),
            stderr: false,
            line: text.into(),
        }],
        end,
    };

    // Node `b` publishing into `a`'s subscription: refused, by its certificate's node id.
    let client_b = pki.client(b, Role::Worker);
    let e = client_b
        .unary(&m.peer(), &PUBLISH, &batch(task, "forged", None), T)
        .await
        .unwrap_err();
    assert!(matches!(e, RpcError::PermissionDenied(_)), "{e:?}");
    // `a` naming another task in its subscription: refused.
    let e = client_a
        .unary(&m.peer(), &PUBLISH, &batch(id(), "other task", None), T)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, RpcError::Status(s) if s.code == Code::InvalidArgument),
        "{e:?}"
    );
    // A subscription that is not open: refused.
    let mut unknown = batch(task, "x", None);
    unknown.subscription = sub.id + 1000;
    let e = client_a
        .unary(&m.peer(), &PUBLISH, &unknown, T)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, RpcError::Status(s) if s.code == Code::NotFound),
        "{e:?}"
    );
    // The real answer goes through, and only it reaches the subscriber.
    client_a
        .unary(
            &m.peer(),
            &PUBLISH,
            &batch(task, "real", Some(LogEnd::Done)),
            T,
        )
        .await
        .unwrap();
    let got = subscriber.await.unwrap();
    assert_eq!(
        got,
        vec![Ok(LogRecord {
            time: Some(Timestamp(5)),
            stream: LogStream::Stdout,
            line: "real".into()
        })]
    );
}

#[tokio::test]
async fn a_node_listens_only_on_managers() {
    let pki = Pki::new();
    // A server holding a worker's certificate, posing as a manager.
    let fake = Manager::new(&pki, Role::Worker);
    let node = id();
    let client = pki.client(node, Role::Worker);
    // The node's listen calls name the manager role: the connection is closed before any call.
    let e = match client
        .server_streaming(&fake.peer(), &LISTEN, &ListenRequest {}, None)
        .await
    {
        Err(e) => e,
        Ok(_) => panic!("a worker certificate was accepted as a manager"),
    };
    assert!(matches!(e, RpcError::WrongPeer { .. }), "{e:?}");
    assert!(!fake.broker.listening(&node));

    // And a subscriber on a node with no listen stream gets "not available", not a hang.
    let m = Manager::new(&pki, Role::Manager);
    let got = collect(
        m.broker
            .subscribe(node, id(), LogOptions::default())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(got.len(), 1);
    let e = got[0].as_ref().unwrap_err();
    assert!(e.contains("is not available"), "{e}");
}

#[tokio::test]
async fn a_subscriber_that_does_not_read_stops_the_node_reading() {
    let pki = Pki::new();
    let m = Manager::new(&pki, Role::Manager);
    let (node, task) = (id(), id());
    let read = Arc::new(AtomicUsize::new(0));
    let source = Source {
        endless: Some((task, read.clone())),
        ..Default::default()
    };
    let p = publisher(&pki, node, source, &[task], vec![m.weighted()]);
    m.wait_listening(&node).await;
    let follow = LogOptions {
        follow: true,
        ..Default::default()
    };
    let mut lines = m.broker.subscribe(node, task, follow).await.unwrap();
    // The manager's queue fills; the node's publish call then waits, and so does its reading.
    let queued = SUBSCRIPTION_BUFFER * MAX_BATCH_RECORDS;
    tokio::time::timeout(T, async {
        while read.load(Ordering::SeqCst) < queued {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the node fills the manager's queue");
    // Room for an endless source to run away if nothing pushed back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Queued batches, the one the stream holds, the one in the blocked publish call, the one
    // being gathered (each at most MAX_BATCH_RECORDS).
    let bound = (SUBSCRIPTION_BUFFER + 3) * MAX_BATCH_RECORDS;
    let n = read.load(Ordering::SeqCst);
    assert!(
        n <= bound,
        "the node read {n} lines for a subscriber that reads none"
    );
    // Reading again lets the lines flow, in order.
    for want in 0..(bound as u64 + 10) {
        let got = next(&mut lines).await.expect("a line").expect("no error");
        assert_eq!(got.line, format!("line {want}"));
    }
    drop(lines);
    p.stop().await;
}
