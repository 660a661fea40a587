//! [`RaftNode`]: one manager's raft, wired together: keys, WAL, state machine, openraft, the
//! transport, and the leader watchdog. It implements [`Proposer`].
//!
//! # Calling contract
//! 1. [`RaftNode::start`] opens the data directory (refusing a locked, corrupt or tampered one).
//! 2. A brand-new cluster: [`RaftNode::bootstrap`] on one manager. Others start empty and are added
//!    by the leader ([`RaftNode::add_manager`]).
//! 3. The transport delivers incoming requests to [`RaftNode::handle_rpc`].
//! 4. Changes go through [`Proposer::propose`] on any manager (followers forward to the leader);
//!    linearizable reads call [`RaftNode::read_barrier`] first, then read the store.
//! 5. [`RaftNode::shutdown`] stops it; the data directory can be reopened.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use openraft::error::RaftError;
use openraft::{Membership, ServerState};
use swarm_core::proposer::check_proposal_size;
use swarm_core::{Clock, CommitError, Proposer, SharedStore, StoreAction, Timestamp};
use swarm_secrets::UnlockKey;
use tokio::task::JoinHandle;

use crate::batcher::{leader_hint, Batcher};
use crate::config::NodeConfig;
use crate::error::{StartError, WaitError};
use crate::files::{ensure_dir_on, RaftStateFile};
use crate::keyring::Keyring;
use crate::log_store::LogStore;
use crate::network::{NetworkFactory, PeerHealth, RaftReply, RaftRpc, Transport};
use crate::state_machine::StateMachine;
use crate::types::{ManagerNode, NodeId, Raft};
use crate::wal::{OpenReport, Wal, WalOptions, WalStats};

/// The system clock (nanoseconds since the Unix epoch).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

/// The clock proposals are stamped with, replaceable while the node runs
/// ([`RaftNode::with_clock`]): the batcher holds this and reads the current clock at each entry.
struct SwapClock(std::sync::RwLock<Arc<dyn Clock>>);

impl Clock for SwapClock {
    fn now(&self) -> Timestamp {
        self.0.read().unwrap_or_else(|e| e.into_inner()).now()
    }
}

/// How to open the data directory.
#[derive(Default)]
pub struct StartOptions<'a> {
    /// The unlock key, needed when autolock is on.
    pub unlock_key: Option<&'a UnlockKey>,
    /// For a data directory without keys yet: turn autolock on with this key.
    pub autolock_new: Option<&'a UnlockKey>,
    /// Restart from the local log and snapshot as a single-voter cluster (every object kept).
    pub force_new_cluster: bool,
}

pub(crate) struct Inner {
    pub(crate) config: NodeConfig,
    pub(crate) raft: Raft,
    pub(crate) store: SharedStore,
    pub(crate) log: LogStore,
    sm: StateMachine,
    pub(crate) keys: Arc<Keyring>,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) health: Arc<PeerHealth>,
    /// Merges concurrent proposals into shared entries (group commit).
    batcher: Arc<Batcher>,
    /// The clock the batcher stamps entries with.
    clock: Arc<SwapClock>,
    report: OpenReport,
    /// Last time a leader (or a candidate we voted for) reached us; drives elections.
    pub(crate) contact: std::sync::Mutex<tokio::time::Instant>,
    /// When the leader of this node's term last reached it (an accepted append or snapshot);
    /// pre-vote answers no while that is recent ([`crate::prevote`]).
    pub(crate) heard_leader: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// Since when (term, instant) the watchdog has seen this node lead; `None` while it does not.
    pub(crate) led_since: std::sync::Mutex<Option<(u64, tokio::time::Instant)>>,
    /// The highest term of a candidate this node refused for its shorter log (see the
    /// watchdog: the next election here starts above it).
    pub(crate) refused_term: std::sync::atomic::AtomicU64,
    /// Set while this leader hands its leadership over: new proposals wait (see
    /// [`RaftNode::transfer_leadership`]).
    pub(crate) transferring: tokio::sync::watch::Sender<bool>,
    watchdog: std::sync::Mutex<Option<JoinHandle<()>>>,
}

/// One manager's raft node. Cloning gives another handle to the same node.
#[derive(Clone)]
pub struct RaftNode {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for RaftNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftNode")
            .field("id", &self.inner.config.id)
            .finish_non_exhaustive()
    }
}

/// A summary of a node's raft state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    /// This node.
    pub id: NodeId,
    /// openraft's role for it.
    pub state: ServerState,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Current term.
    pub term: u64,
    /// Last log index.
    pub last_log_index: Option<u64>,
    /// Last applied log index.
    pub last_applied: Option<u64>,
    /// Last index purged from the log (folded into a snapshot); the log holds the entries after
    /// it up to `last_log_index`.
    pub purged: Option<u64>,
    /// Voters of the effective membership.
    pub voters: Vec<NodeId>,
    /// Learners (non-voting members).
    pub learners: Vec<NodeId>,
}

impl NodeStatus {
    fn of(m: &openraft::RaftMetrics<NodeId, ManagerNode>) -> NodeStatus {
        let membership = m.membership_config.membership();
        NodeStatus {
            id: m.id,
            state: m.state,
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index,
            last_applied: m.last_applied.map(|l| l.index),
            purged: m.purged.map(|l| l.index),
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
        }
    }

    /// Whether this node is the leader it knows of (raft's view; [`RaftNode::is_leader`] also
    /// asks that a quorum answered recently).
    pub fn leads(&self) -> bool {
        self.leader == Some(self.id) && self.state == ServerState::Leader
    }

    /// Whether a membership is known (restored from the log or snapshot, or bootstrapped).
    pub fn has_membership(&self) -> bool {
        !self.voters.is_empty() || !self.learners.is_empty()
    }
}

/// A subscription to a node's [`NodeStatus`] ([`RaftNode::watch_status`]).
pub struct StatusWatch {
    rx: tokio::sync::watch::Receiver<openraft::RaftMetrics<NodeId, ManagerNode>>,
}

impl std::fmt::Debug for StatusWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusWatch").finish_non_exhaustive()
    }
}

impl StatusWatch {
    /// The current status; marks it seen, so [`StatusWatch::changed`] waits for a later one.
    pub fn current(&mut self) -> NodeStatus {
        NodeStatus::of(&self.rx.borrow_and_update())
    }

    /// Waits for a status newer than the last one seen. `false`: the node stopped, no more
    /// changes will come.
    pub async fn changed(&mut self) -> bool {
        self.rx.changed().await.is_ok()
    }
}

impl RaftNode {
    /// Opens `config.data_dir` and starts raft. `store` becomes the state machine (it is replaced
    /// by the snapshot, if any, and then follows the log). See [`StartOptions`].
    pub async fn start(
        config: NodeConfig,
        store: SharedStore,
        transport: Arc<dyn Transport>,
        opts: StartOptions<'_>,
    ) -> Result<RaftNode, StartError> {
        let raft_config = Arc::new(config.raft.to_openraft()?);
        let dir = config.data_dir.clone();
        let disk = config.raft.disk.clone();
        ensure_dir_on(&*disk, &dir)?;
        let had_state = crate::integrity::check_before_open(&*disk, &dir)?;
        // Stretching an unlock key (argon2id, ~200 ms) blocks: do it off the async worker threads.
        let (unlock, create_with) = (opts.unlock_key.cloned(), opts.autolock_new.cloned());
        let (key_dir, kdf, key_disk) = (dir.clone(), config.kdf, disk.clone());
        let keys = crate::state_machine::off_thread(disk.clone(), move || {
            Keyring::load_on(
                key_disk,
                &key_dir,
                unlock.as_ref(),
                create_with.as_ref(),
                kdf,
            )
        })
        .await
        .map_err(|e| StartError::Raft(format!("opening the key file was interrupted: {e}")))??;
        let keys = Arc::new(keys);
        let state = RaftStateFile::load_on(&*disk, &dir)?;
        let wal_opts = WalOptions {
            segment_bytes: config.raft.segment_bytes,
            prealloc_bytes: config.raft.wal_prealloc_bytes,
            expect_committed: had_state,
        };
        let (wal, report) = Wal::open_on(
            disk.clone(),
            &dir.join("wal"),
            keys.clone(),
            wal_opts,
            state.last_purged,
        )?;
        if let Some((file, offset, reason)) = &report.truncated_tail {
            tracing::warn!(file = %file.display(), offset, %reason, "raft log had a torn tail; it was truncated");
        }
        let sm = StateMachine::open_on(disk, &dir.join("snap"), keys.clone(), store.clone())?;
        crate::integrity::check_nothing_lost(&dir, &wal, &report, &state, &sm)?;
        // Authenticate every entry that will be replayed, so tampering refuses the start.
        let from = sm.applied().0.map_or(0, |l| l.index + 1);
        wal.verify_from(from)?;
        let log = LogStore::new(wal, dir.clone(), state, keys.clone());
        if opts.force_new_cluster {
            crate::membership::rewrite_as_single_voter(&log, &sm, config.id, &config.addr).await?;
        }
        let health = Arc::new(PeerHealth::default());
        let network = NetworkFactory::new(config.id, transport.clone(), health.clone());
        let raft = Raft::new(config.id, raft_config, network, log.clone(), sm.clone())
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        let clock = Arc::new(SwapClock(std::sync::RwLock::new(Arc::new(SystemClock))));
        let batcher = Batcher::new(
            raft.clone(),
            clock.clone(),
            config.raft.proposal_pipeline,
            config.raft.propose_timeout,
        );
        let node = RaftNode {
            inner: Arc::new(Inner {
                config,
                raft,
                store,
                log,
                sm,
                keys,
                transport,
                health,
                batcher,
                clock,
                report,
                contact: std::sync::Mutex::new(tokio::time::Instant::now()),
                heard_leader: std::sync::Mutex::new(None),
                led_since: std::sync::Mutex::new(None),
                refused_term: std::sync::atomic::AtomicU64::new(0),
                transferring: tokio::sync::watch::channel(false).0,
                watchdog: std::sync::Mutex::new(None),
            }),
        };
        let watchdog = tokio::spawn(crate::membership::watchdog(Arc::downgrade(&node.inner)));
        *node
            .inner
            .watchdog
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(watchdog);
        Ok(node)
    }

    /// Replaces the clock used to stamp proposals (tests, simulations), for every handle of this
    /// node. Nothing else changes: the node keeps running, its watchdog (elections, step-down)
    /// included.
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> RaftNode {
        *self
            .inner
            .clock
            .0
            .write()
            .unwrap_or_else(|e| e.into_inner()) = clock;
        self
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.config.id
    }

    /// The openraft handle (metrics, waits, low-level control).
    ///
    /// Only with the `testing` feature: swarm-raft's own tests and harness reach into openraft
    /// (forcing snapshots, waiting on raw metrics). Embedders use the seam instead:
    /// [`RaftNode::status`], [`RaftNode::watch_status`], [`RaftNode::wait_until`],
    /// [`RaftNode::trigger_election`], so openraft stays an implementation detail.
    #[cfg(feature = "testing")]
    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// The store this node applies committed entries to.
    pub fn store(&self) -> &SharedStore {
        &self.inner.store
    }

    /// What opening the log found (for example a torn tail that was cut).
    pub fn open_report(&self) -> &OpenReport {
        &self.inner.report
    }

    /// The write-ahead log.
    pub fn wal(&self) -> &Wal {
        self.inner.log.wal()
    }

    /// Write-ahead log counters since this node started: fsyncs, entries and bytes written
    /// (entries per fsync shows how well concurrent proposals share group commits).
    pub fn wal_stats(&self) -> WalStats {
        self.wal().stats()
    }

    /// The key hierarchy (status, autolock changes: see [`crate::autolock`]).
    pub fn keys(&self) -> &Keyring {
        &self.inner.keys
    }

    /// A summary of the raft state.
    pub fn status(&self) -> NodeStatus {
        NodeStatus::of(&self.inner.raft.metrics().borrow())
    }

    /// A subscription to this node's [`NodeStatus`]: it wakes on every change (leadership, term,
    /// log and apply progress, membership), for loops that follow leadership.
    pub fn watch_status(&self) -> StatusWatch {
        StatusWatch {
            rx: self.inner.raft.metrics(),
        }
    }

    /// Waits until `pred` holds for this node's status, at most `timeout`; returns the status
    /// that satisfied it. `what` names the condition in the error.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&NodeStatus) -> bool,
    ) -> Result<NodeStatus, WaitError> {
        let mut watch = self.watch_status();
        let wait = async {
            loop {
                let status = watch.current();
                if pred(&status) {
                    return Ok(status);
                }
                if !watch.changed().await {
                    return Err(WaitError::Stopped {
                        what: what.to_string(),
                    });
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .unwrap_or_else(|_| {
                Err(WaitError::Timeout {
                    what: what.to_string(),
                    after: timeout,
                })
            })
    }

    /// Starts an election now instead of after the election timeout (for example a single voter
    /// that restarted and knows nobody else can lead). Fails only when raft has stopped.
    pub async fn trigger_election(&self) -> Result<(), WaitError> {
        self.inner
            .raft
            .trigger()
            .elect()
            .await
            .map_err(|e| WaitError::Stopped {
                what: format!("an election ({e})"),
            })
    }

    /// Whether this node is the leader *and* heard from a quorum recently (an isolated leader is
    /// not considered a leader even before it steps down).
    pub fn is_leader(&self) -> bool {
        let m = self.inner.raft.metrics().borrow().clone();
        let step =
            u64::try_from(self.inner.config.raft.step_down_after.as_millis()).unwrap_or(u64::MAX);
        m.state == ServerState::Leader && m.millis_since_quorum_ack.is_some_and(|ms| ms <= step)
    }

    /// Initializes a new single-manager cluster with this node as its only voter. Refused if the
    /// node already has a log or a vote.
    pub async fn bootstrap(&self) -> Result<(), StartError> {
        let mut members = std::collections::BTreeMap::new();
        members.insert(
            self.id(),
            ManagerNode {
                addr: self.inner.config.addr.clone(),
            },
        );
        self.inner
            .raft
            .initialize(members)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))
    }

    /// Stops raft and the watchdog. The data directory can then be reopened.
    pub async fn shutdown(&self) {
        if let Some(w) = self
            .inner
            .watchdog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            w.abort();
        }
        // An append waiting out a full disk would keep openraft's core from stopping.
        self.wal().stop_retrying();
        self.inner.sm.stop_retrying();
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }

    fn leader_hint(&self, leader: Option<NodeId>) -> Option<String> {
        leader_hint(&self.inner.raft, leader)
    }

    fn timeout_ms(&self) -> u64 {
        u64::try_from(self.inner.config.raft.propose_timeout.as_millis()).unwrap_or(u64::MAX)
    }

    /// Commits on this node, which must be the leader: hands the actions to the batcher (which
    /// stamps the entry carrying them) and waits for apply.
    async fn propose_as_leader(&self, actions: Vec<StoreAction>) -> Result<u64, CommitError> {
        // While the log cannot write (full disk), say so at once rather than after the timeout.
        let mut fault = self.wal().fault();
        if let Some(msg) = fault.borrow_and_update().clone() {
            return Err(CommitError::Storage(msg));
        }
        // A leadership transfer is under way: hold the proposal until it ends, so the successor
        // has the whole log when it asks for votes; then commit here if this node still leads,
        // else send the caller to the new leader.
        let mut transferring = self.inner.transferring.subscribe();
        if *transferring.borrow_and_update() {
            let t = self.inner.config.raft.propose_timeout;
            let _ = tokio::time::timeout(t, transferring.wait_for(|busy| !*busy)).await;
            let st = self.status();
            if !st.leads() {
                return Err(CommitError::NotLeader {
                    leader: self.leader_hint(st.leader),
                });
            }
        }
        let bytes = bincode::serialized_size(&actions).unwrap_or(u64::MAX);
        let answer = tokio::time::timeout(
            self.inner.config.raft.propose_timeout,
            self.inner.batcher.submit(actions, bytes),
        );
        let res = tokio::select! {
            r = answer => r,
            Ok(f) = fault.wait_for(Option::is_some) => {
                // The entry stays queued and may still commit once the disk recovers.
                return Err(CommitError::Storage(f.clone().unwrap_or_default()));
            }
        };
        match res {
            Err(_) => Err(CommitError::NoQuorum {
                timeout_ms: self.timeout_ms(),
            }),
            Ok(Ok(answer)) => answer,
            // The batcher dropped the request: raft is shutting down.
            Ok(Err(_)) => Err(CommitError::Stopped),
        }
    }

    /// Waits until a leader is known, up to the propose timeout.
    async fn wait_leader(&self, timeout: Duration) -> Option<NodeId> {
        let r = self
            .inner
            .raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a leader")
            .await;
        r.ok().and_then(|m| m.current_leader)
    }

    /// Waits until this node applied `index` (so local reads see it).
    async fn wait_applied(&self, index: u64, timeout: Duration) -> Result<(), CommitError> {
        self.inner
            .raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "local apply")
            .await
            .map(|_| ())
            .map_err(|_| CommitError::NoQuorum {
                timeout_ms: self.timeout_ms(),
            })
    }

    /// Sends `rpc` to `leader` and waits for its answer, at most the propose timeout, and only as
    /// long as this node still follows `leader`.
    ///
    /// A leader that died (killed, host lost) does not close its connections, so a call to it
    /// would only fail when the transport gives up on the silent peer (QUIC's idle timeout) or
    /// at the propose timeout. Raft notices sooner: once this node starts an election, votes for
    /// another candidate or hears from a new leader, its `current_leader` is no longer `leader`,
    /// and the call is abandoned then (`NotLeader`), so [`Proposer::propose`] re-routes the
    /// proposal to the next leader as soon as one is known.
    ///
    /// Abandoning is no different from a timed-out call: the proposal may still have reached the
    /// old leader and be committed by its successor, as with any raft client retrying after a
    /// lost answer (an update's retry then carries a stale version and is refused by the store
    /// rather than applied twice).
    async fn forward(&self, leader: NodeId, rpc: RaftRpc) -> Result<RaftReply, CommitError> {
        let mut metrics = self.inner.raft.metrics();
        let node = metrics
            .borrow()
            .membership_config
            .membership()
            .get_node(&leader)
            .cloned();
        let node = node.ok_or(CommitError::NotLeader {
            leader: Some(leader.to_string()),
        })?;
        let call = self.inner.transport.call(leader, &node, rpc);
        let moved = async move {
            // A closed channel means raft stopped: give up the call too.
            let _ = metrics.wait_for(|m| m.current_leader != Some(leader)).await;
        };
        tokio::select! {
            r = tokio::time::timeout(self.inner.config.raft.propose_timeout, call) => match r {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(_)) | Err(_) => Err(CommitError::NoQuorum {
                    timeout_ms: self.timeout_ms(),
                }),
            },
            () = moved => Err(CommitError::NotLeader { leader: None }),
        }
    }

    /// Returns an index such that reading the local store once it applied that index is
    /// linearizable (the leader confirmed its leadership with a quorum: openraft's read index).
    /// On a follower this is the read-index protocol: the leader's index, asked over
    /// [`RaftRpc::ReadIndex`], then a wait (the propose timeout at most) until this node applied
    /// it. Errors: `NoQuorum` when no leader is known, the leader could not confirm with a
    /// quorum, or the wait timed out; `NotLeader` when the leader changed meanwhile.
    pub async fn read_barrier(&self) -> Result<u64, CommitError> {
        let timeout = self.inner.config.raft.propose_timeout;
        let leader = self
            .wait_leader(timeout)
            .await
            .ok_or(CommitError::NoQuorum {
                timeout_ms: self.timeout_ms(),
            })?;
        let index = if leader == self.id() {
            self.local_read_index().await?
        } else {
            match self.forward(leader, RaftRpc::ReadIndex).await? {
                RaftReply::ReadIndex(r) => r?,
                _ => return Err(CommitError::Stopped),
            }
        };
        self.wait_applied(index, timeout).await?;
        Ok(index)
    }

    /// Whether this node leads, confirmed now by a quorum (openraft's read index, one heartbeat
    /// round). [`NodeStatus::leads`] is raft's local view, and openraft 0.9 restores a node that
    /// led before a restart as leader until an answer carries a newer term: work only a leader
    /// may start (a new leader's marking of nodes) confirms first. False when this node does not
    /// lead, a newer term shows up, or no quorum answers within the propose timeout.
    pub async fn confirm_leadership(&self) -> bool {
        self.status().leads() && self.local_read_index().await.is_ok() && self.status().leads()
    }

    async fn local_read_index(&self) -> Result<u64, CommitError> {
        let r = tokio::time::timeout(
            self.inner.config.raft.propose_timeout,
            self.inner.raft.ensure_linearizable(),
        )
        .await;
        match r {
            Err(_) => Err(CommitError::NoQuorum {
                timeout_ms: self.timeout_ms(),
            }),
            Ok(Ok(id)) => Ok(id.map_or(0, |l| l.index)),
            Ok(Err(RaftError::APIError(e))) => {
                let leader = match e {
                    openraft::error::CheckIsLeaderError::ForwardToLeader(f) => f.leader_id,
                    openraft::error::CheckIsLeaderError::QuorumNotEnough(_) => {
                        return Err(CommitError::NoQuorum {
                            timeout_ms: self.timeout_ms(),
                        })
                    }
                };
                Err(CommitError::NotLeader {
                    leader: self.leader_hint(leader),
                })
            }
            Ok(Err(RaftError::Fatal(_))) => Err(CommitError::Stopped),
        }
    }

    /// Handles a request from another manager (called by the transport).
    pub async fn handle_rpc(&self, rpc: RaftRpc) -> RaftReply {
        let raft = &self.inner.raft;
        match rpc {
            RaftRpc::AppendEntries(r) => {
                let resp = raft.append_entries(r).await;
                if matches!(&resp, Ok(a) if !matches!(a, openraft::raft::AppendEntriesResponse::HigherVote(_)))
                {
                    self.touch();
                    self.heard_leader();
                }
                RaftReply::AppendEntries(resp)
            }
            RaftRpc::Vote(r) => {
                let (term, theirs) = (r.vote.leader_id().term, r.last_log_id);
                let resp = raft.vote(r).await;
                match &resp {
                    Ok(v) if v.vote_granted => self.touch(),
                    // Refused for its shorter log, in a term above ours: openraft keeps our
                    // term (Raft would adopt theirs); the watchdog's next election here starts
                    // above it instead of colliding with that candidate's own vote.
                    Ok(v) if term > v.vote.leader_id().term && v.last_log_id > theirs => {
                        self.inner
                            .refused_term
                            .fetch_max(term, std::sync::atomic::Ordering::Relaxed);
                    }
                    _ => {}
                }
                RaftReply::Vote(resp)
            }
            RaftRpc::InstallSnapshot(r) => {
                let resp = raft.install_snapshot(r).await;
                if resp.is_ok() {
                    self.touch();
                    self.heard_leader();
                }
                RaftReply::InstallSnapshot(resp)
            }
            RaftRpc::Propose(actions) => {
                let r = match check_proposal_size(&actions) {
                    Err(e) => Err(e),
                    Ok(()) => self.propose_as_leader(actions).await,
                };
                RaftReply::Propose(r)
            }
            RaftRpc::ReadIndex => RaftReply::ReadIndex(self.local_read_index().await),
            RaftRpc::TimeoutNow(t) => RaftReply::TimeoutNow(self.timeout_now(&t)),
            RaftRpc::PreVote(r) => RaftReply::PreVote(self.pre_vote(&r)),
        }
    }

    pub(crate) fn touch(&self) {
        *self.inner.contact.lock().unwrap_or_else(|e| e.into_inner()) = tokio::time::Instant::now();
    }

    pub(crate) fn fault(&self) -> Option<String> {
        self.inner
            .raft
            .metrics()
            .borrow()
            .running_state
            .as_ref()
            .err()
            .map(|e| e.to_string())
    }

    /// The fatal error that stopped raft, if any (for example a tampered record read at run time).
    pub fn stopped_by(&self) -> Option<String> {
        self.fault()
    }
}

#[async_trait]
impl Proposer for RaftNode {
    /// Commits `actions` as one batch: on the leader directly, on a follower by forwarding to the
    /// leader (then waiting until this node applied it too). Errors: `NotLeader` with a hint if the
    /// leader changed under us twice, `NoQuorum` after the propose timeout, `Rejected` if the store
    /// refused the batch (identically on every replica).
    async fn propose(&self, actions: Vec<StoreAction>) -> Result<u64, CommitError> {
        check_proposal_size(&actions)?;
        let timeout = self.inner.config.raft.propose_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let no_quorum = CommitError::NoQuorum {
            timeout_ms: self.timeout_ms(),
        };
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(leader) = self.wait_leader(left).await else {
                return Err(no_quorum);
            };
            let r = if leader == self.id() {
                self.propose_as_leader(actions.clone()).await
            } else {
                match self
                    .forward(leader, RaftRpc::Propose(actions.clone()))
                    .await
                {
                    Ok(RaftReply::Propose(Ok(index))) => {
                        self.wait_applied(index, timeout).await?;
                        Ok(index)
                    }
                    Ok(RaftReply::Propose(Err(e))) => Err(e),
                    Ok(_) => Err(CommitError::Stopped),
                    // The leader we knew is unreachable: wait for another one below.
                    Err(_) => Err(CommitError::NotLeader { leader: None }),
                }
            };
            match r {
                Err(e @ CommitError::NotLeader { .. }) => {
                    // The leader moved or is gone: wait (bounded) until another leader is known.
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    if left.is_zero() {
                        return Err(if leader == self.id() { e } else { no_quorum });
                    }
                    let changed = self
                        .inner
                        .raft
                        .wait(Some(left))
                        .metrics(
                            |m| m.current_leader.is_some() && m.current_leader != Some(leader),
                            "leader change",
                        )
                        .await;
                    if changed.is_err() {
                        return Err(if matches!(e, CommitError::NotLeader { leader: Some(_) }) {
                            e
                        } else {
                            no_quorum
                        });
                    }
                }
                other => return other,
            }
        }
    }

    /// On a follower, [`RaftNode::read_barrier`]: the leader's read index, applied here. On the
    /// leader, nothing: like SwarmKit, whose control API reads the leader's store without a
    /// quorum round (a leader deposed without knowing it yet may serve a read up to a step-down
    /// timeout old; an update staged from it is refused where it commits, by the version check).
    async fn sync_reads(&self) -> Result<(), CommitError> {
        if self.status().leads() {
            return Ok(());
        }
        self.read_barrier().await.map(|_| ())
    }

    /// On the leader: waits until its store has applied its whole log, as of the call (entries
    /// of earlier terms commit with this term's first entry; a proposal that timed out is still
    /// in the log). Elsewhere `NotLeader`.
    async fn settle(&self) -> Result<(), CommitError> {
        let not_leader = |s: &NodeStatus| CommitError::NotLeader {
            leader: self.leader_hint(s.leader),
        };
        let st = self.status();
        if !st.leads() {
            return Err(not_leader(&st));
        }
        if let Some(last) = st.last_log_index {
            self.wait_applied(last, self.inner.config.raft.propose_timeout)
                .await?;
        }
        let st = self.status();
        if st.leads() {
            Ok(())
        } else {
            Err(not_leader(&st))
        }
    }
}

/// Membership for a brand-new single-voter cluster of `id` at `addr`.
pub(crate) fn single_voter(id: NodeId, addr: &str) -> Membership<NodeId, ManagerNode> {
    let mut nodes = std::collections::BTreeMap::new();
    nodes.insert(
        id,
        ManagerNode {
            addr: addr.to_string(),
        },
    );
    let voters = std::collections::BTreeSet::from([id]);
    Membership::new(vec![voters], nodes)
}
