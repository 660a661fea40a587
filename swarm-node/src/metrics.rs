//! Metrics in Prometheus' text format (0.0.4), served only when `--metrics-addr HOST:PORT` is
//! given (as dockerd's `metrics-addr`): `GET /metrics` on that address.
//!
//! The counters and histograms live in one process-wide [`Metrics`] ([`global`]) and are bumped
//! where things happen: around every proposal ([`MeteredProposer`]: raft commit latency), in
//! the leader loops (placements), in the dispatcher (sessions, status reports, assignment
//! latency), in the API layer (requests by route, method and status, latency). What is a state
//! rather than an event is read at scrape time: the raft log (entries kept, term, leader
//! changes seen by [`watch_raft`]), pending tasks by the scheduler's reason, and this node's
//! tasks by observed state, from the store of the backend being served.
//!
//! The crate is `prometheus` (the text format 0.0.4 encoder) rather than `prometheus-client`:
//! the latter writes OpenMetrics, whose counter families (`# TYPE x counter` over `x_total`
//! samples) Debian's `promtool check metrics` (2.42) rejects.
//!
//! Metric names (all prefixed `swarm_`):
//! - `raft_commit_seconds` (histogram, `result` = ok | error), `raft_leader_changes_total`,
//!   `raft_log_entries`, `raft_term`, `raft_is_leader`;
//! - `scheduler_placements_total`, `scheduler_pending_tasks` (`reason`);
//! - `dispatcher_sessions`, `dispatcher_sessions_opened_total`,
//!   `dispatcher_status_reports_total` (the in-process session is its own heartbeat: each report
//!   of a node is the heartbeat a remote node would send), `dispatcher_assignment_seconds`;
//! - `api_requests_total` (`route`, `method`, `status`), `api_request_seconds` (`route`, `method`);
//! - `agent_tasks` (`state`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use async_trait::async_trait;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use swarm_core::objects::task::TaskState;
use swarm_core::{CommitError, Id, Proposer, SharedStore, StoreAction};
use thiserror::Error;

use crate::backend::Backend;

/// Latency buckets in seconds: 100 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Longest pending-task reason kept as a label value (the scheduler's explanations are short;
/// this bounds a pathological one).
const MAX_REASON: usize = 200;

/// Every metric of the process. See the module docs for names and meanings.
pub struct Metrics {
    registry: Registry,
    /// Time from proposing a change to its commit, by result.
    pub raft_commit_seconds: HistogramVec,
    /// Times the known raft leader changed (including the first election).
    pub raft_leader_changes: IntCounter,
    raft_log_entries: IntGauge,
    raft_term: IntGauge,
    raft_is_leader: IntGauge,
    /// Tasks the scheduler assigned to a node (committed).
    pub scheduler_placements: IntCounter,
    scheduler_pending: IntGaugeVec,
    /// Dispatcher sessions open now.
    pub dispatcher_sessions: IntGauge,
    /// Dispatcher sessions opened.
    pub dispatcher_sessions_opened: IntCounter,
    /// Status reports received from agents.
    pub dispatcher_status_reports: IntCounter,
    /// Time from a committed change reaching a node's assignment stream to its assignment set
    /// being sent to the node's session.
    pub dispatcher_assignment_seconds: Histogram,
    /// API requests by route template, method and status.
    pub api_requests: IntCounterVec,
    /// API request latency by route template and method (to the response head; a streamed body
    /// is not included).
    pub api_request_seconds: HistogramVec,
    agent_tasks: IntGaugeVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Why the metrics could not be set up or served.
#[derive(Debug, Error)]
pub enum MetricsError {
    /// A metric could not be created or registered (a programming error: names are fixed).
    #[error("metric setup failed: {0}")]
    Setup(#[from] prometheus::Error),
    /// `--metrics-addr` could not be bound.
    #[error("cannot listen for metrics on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

fn histogram(name: &str, help: &str) -> HistogramOpts {
    HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec())
}

impl Metrics {
    fn new() -> Result<Metrics, MetricsError> {
        let r = Registry::new_custom(Some("swarm".into()), None)?;
        let m = Metrics {
            raft_commit_seconds: HistogramVec::new(
                histogram(
                    "raft_commit_seconds",
                    "Time from proposing a change to its commit (or failure), in seconds.",
                ),
                &["result"],
            )?,
            raft_leader_changes: IntCounter::new(
                "raft_leader_changes_total",
                "Times the raft leader this manager knows of changed.",
            )?,
            raft_log_entries: IntGauge::new(
                "raft_log_entries",
                "Raft log entries kept (last index minus the purged index).",
            )?,
            raft_term: IntGauge::new("raft_term", "Current raft term.")?,
            raft_is_leader: IntGauge::new("raft_is_leader", "1 when this manager leads raft.")?,
            scheduler_placements: IntCounter::new(
                "scheduler_placements_total",
                "Tasks the scheduler assigned to nodes (committed).",
            )?,
            scheduler_pending: IntGaugeVec::new(
                Opts::new(
                    "scheduler_pending_tasks",
                    "Tasks waiting for a node, by the scheduler's reason.",
                ),
                &["reason"],
            )?,
            dispatcher_sessions: IntGauge::new(
                "dispatcher_sessions",
                "Agent sessions open on this manager's dispatcher.",
            )?,
            dispatcher_sessions_opened: IntCounter::new(
                "dispatcher_sessions_opened_total",
                "Agent sessions opened on this manager's dispatcher.",
            )?,
            dispatcher_status_reports: IntCounter::new(
                "dispatcher_status_reports_total",
                "Task status reports (heartbeats) received from agents.",
            )?,
            dispatcher_assignment_seconds: Histogram::with_opts(histogram(
                "dispatcher_assignment_seconds",
                "Time from a committed change reaching a node's assignment stream to the assignments being sent, in seconds.",
            ))?,
            api_requests: IntCounterVec::new(
                Opts::new("api_requests_total", "Docker API requests answered."),
                &["route", "method", "status"],
            )?,
            api_request_seconds: HistogramVec::new(
                histogram(
                    "api_request_seconds",
                    "Docker API request latency to the response head, in seconds.",
                ),
                &["route", "method"],
            )?,
            agent_tasks: IntGaugeVec::new(
                Opts::new("agent_tasks", "Tasks assigned to this node, by observed state."),
                &["state"],
            )?,
            registry: r,
        };
        let reg = &m.registry;
        reg.register(Box::new(m.raft_commit_seconds.clone()))?;
        reg.register(Box::new(m.raft_leader_changes.clone()))?;
        reg.register(Box::new(m.raft_log_entries.clone()))?;
        reg.register(Box::new(m.raft_term.clone()))?;
        reg.register(Box::new(m.raft_is_leader.clone()))?;
        reg.register(Box::new(m.scheduler_placements.clone()))?;
        reg.register(Box::new(m.scheduler_pending.clone()))?;
        reg.register(Box::new(m.dispatcher_sessions.clone()))?;
        reg.register(Box::new(m.dispatcher_sessions_opened.clone()))?;
        reg.register(Box::new(m.dispatcher_status_reports.clone()))?;
        reg.register(Box::new(m.dispatcher_assignment_seconds.clone()))?;
        reg.register(Box::new(m.api_requests.clone()))?;
        reg.register(Box::new(m.api_request_seconds.clone()))?;
        reg.register(Box::new(m.agent_tasks.clone()))?;
        Ok(m)
    }

    /// Sets the scrape-time gauges from `store` (this node is `node`).
    pub fn observe_store(&self, store: &SharedStore, node: Option<Id>) {
        let (pending, mine) = store.view(|s| {
            let mut pending: BTreeMap<String, i64> = BTreeMap::new();
            let mut mine: BTreeMap<&'static str, i64> = BTreeMap::new();
            for t in s.iter::<swarm_core::Task>() {
                if t.status.state == TaskState::Pending && t.desired_state <= TaskState::Running {
                    let why = if t.status.err.is_empty() {
                        "waiting for the scheduler"
                    } else {
                        t.status.err.as_str()
                    };
                    let mut why = why.to_string();
                    if why.len() > MAX_REASON {
                        let mut end = MAX_REASON;
                        while !why.is_char_boundary(end) {
                            end -= 1;
                        }
                        why.truncate(end);
                    }
                    *pending.entry(why).or_default() += 1;
                }
                if node.is_some() && t.node_id == node {
                    *mine.entry(t.status.state.as_str()).or_default() += 1;
                }
            }
            (pending, mine)
        });
        self.scheduler_pending.reset();
        for (why, n) in pending {
            self.scheduler_pending
                .with_label_values(&[why.as_str()])
                .set(n);
        }
        self.agent_tasks.reset();
        for (state, n) in mine {
            self.agent_tasks.with_label_values(&[state]).set(n);
        }
    }

    /// The page: every metric in the text format.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        // Encoding into memory fails only on a malformed family, which the fixed set excludes.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!("encoding metrics failed: {e}");
        }
        out
    }
}

/// The process's metrics (created on first use).
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| match Metrics::new() {
        Ok(m) => m,
        // Names and labels are constants: this cannot fail at run time.
        Err(e) => panic!("metrics setup: {e}"),
    })
}

/// A [`Proposer`] that records each proposal's commit latency.
pub struct MeteredProposer<P: ?Sized> {
    inner: Arc<P>,
}

impl<P: ?Sized> MeteredProposer<P> {
    /// Wraps `inner`.
    pub fn new(inner: Arc<P>) -> MeteredProposer<P> {
        MeteredProposer { inner }
    }
}

#[async_trait]
impl<P: Proposer + ?Sized + 'static> Proposer for MeteredProposer<P> {
    async fn propose(&self, actions: Vec<StoreAction>) -> Result<u64, CommitError> {
        let start = Instant::now();
        let r = self.inner.propose(actions).await;
        let result = if r.is_ok() { "ok" } else { "error" };
        global()
            .raft_commit_seconds
            .with_label_values(&[result])
            .observe(start.elapsed().as_secs_f64());
        r
    }

    async fn sync_reads(&self) -> Result<(), CommitError> {
        self.inner.sync_reads().await
    }

    async fn settle(&self) -> Result<(), CommitError> {
        self.inner.settle().await
    }
}

/// Follows a raft node's metrics until it stops: counts leader changes, keeps the log size,
/// term and leadership gauges current.
pub async fn watch_raft(raft: swarm_raft::RaftNode) {
    let mut watch = raft.watch_status();
    drop(raft);
    let mut leader = None;
    loop {
        let s = watch.current();
        if s.leader.is_some() && s.leader != leader {
            global().raft_leader_changes.inc();
        }
        leader = s.leader;
        let last = s.last_log_index.unwrap_or(0);
        let purged = s.purged.unwrap_or(0);
        let g = global();
        g.raft_log_entries
            .set(i64::try_from(last.saturating_sub(purged)).unwrap_or(i64::MAX));
        g.raft_term.set(i64::try_from(s.term).unwrap_or(i64::MAX));
        g.raft_is_leader.set(i64::from(s.leads()));
        if !watch.changed().await {
            return;
        }
    }
}

/// Counts an API request and its latency under its route template (`/services/{id}`; paths
/// that match no route count as `other`). A layer of the API's inner router.
pub(crate) async fn api_layer(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "other".to_string(), |p| p.as_str().to_string());
    let method = req.method().as_str().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    let g = global();
    g.api_request_seconds
        .with_label_values(&[route.as_str(), method.as_str()])
        .observe(start.elapsed().as_secs_f64());
    g.api_requests
        .with_label_values(&[route.as_str(), method.as_str(), resp.status().as_str()])
        .inc();
    resp
}

/// Content type of the text format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn page(State(backend): State<Arc<dyn Backend>>) -> Response {
    let g = global();
    if let Ok(access) = backend.cluster() {
        g.observe_store(&access.store, Some(access.node_id));
    }
    let mut resp = (StatusCode::OK, g.encode()).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    resp
}

/// The metrics application: `GET /metrics` (everything else 404).
pub fn router(backend: Arc<dyn Backend>) -> Router {
    Router::new()
        .route("/metrics", get(page))
        .with_state(backend)
}

/// Binds the metrics address (a taken or invalid one fails the daemon's start).
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, MetricsError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })
}

/// Serves [`router`] on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    backend: Arc<dyn Backend>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(backend))
        .with_graceful_shutdown(shutdown)
        .await
}
