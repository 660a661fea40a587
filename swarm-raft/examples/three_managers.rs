//! Three swarm-raft managers in one process, with an embedder's own replicated command.
//!
//! Run: `cargo run -p swarm-raft --example three_managers`
//!
//! # The extension point this shows
//! swarm-raft's state machine is swarm-core's [`Store`]: every log entry is a batch of
//! [`StoreAction`]s, applied by every manager at the same index. There is no generic state machine
//! to plug in. An embedder adds its own replicated commands on top of that seam:
//! 1. **propose**: encode the command into store objects (here a `Config` object per command,
//!    named by sequence, its payload the encoded command) and call [`Proposer::propose`] on any
//!    manager; followers forward to the leader, and a batch commits atomically or not at all;
//! 2. **apply**: every replica watches its store ([`SharedStore::watch`]) and folds the command
//!    objects, in commit order, into its own state; a snapshot install shows up as
//!    [`Event::Reset`], after which the state is rebuilt from the store.
//!
//! The command here is `Transfer { from, to, amount }` over account balances. Checks a command
//! needs (an overdraft rule, say) belong on the proposing side, before `propose`, as swarm-node's
//! control layer validates its own objects: the store only refuses what breaks its own rules.
//!
//! # What it does
//! Starts managers 1-3 with their own data directories (a temporary directory) over a small
//! in-memory [`Transport`] written below (a real cluster uses swarm-net's QUIC transport), node 1
//! bootstraps and adds 2 and 3. It proposes transfers through a follower, stops the leader, waits
//! for a new one, proposes more, and checks that the surviving replicas agree on every balance.
//! Exits non-zero if they do not.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use swarm_core::objects::secret::ConfigSpec;
use swarm_core::{
    Annotations, Config, Event, Id, Meta, Object, ObjectKind, Proposer, SharedStore, Store,
    StoreAction, WatchFilter, Watcher,
};
use swarm_raft::types::ManagerNode;
use swarm_raft::{
    NodeConfig, NodeId, RaftConfig, RaftNode, RaftReply, RaftRpc, StartOptions, Transport,
    TransportError,
};

const T: Duration = Duration::from_secs(10);

// ---- the transport: every manager in this process --------------------------------------------

/// Delivers each request straight to the addressed node's [`RaftNode::handle_rpc`].
#[derive(Clone, Default)]
struct InProcess {
    nodes: Arc<Mutex<HashMap<NodeId, RaftNode>>>,
}

#[async_trait]
impl Transport for InProcess {
    async fn call(
        &self,
        target: NodeId,
        _node: &ManagerNode,
        rpc: RaftRpc,
    ) -> Result<RaftReply, TransportError> {
        let node = self
            .nodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&target)
            .cloned();
        match node {
            Some(n) => Ok(n.handle_rpc(rpc).await),
            None => Err(TransportError::Unreachable(target, "stopped".into())),
        }
    }
}

// ---- the embedder's command and state ----------------------------------------------------------

/// The embedder's replicated command.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Transfer {
    from: String,
    to: String,
    amount: u64,
}

impl Transfer {
    fn encode(&self) -> Vec<u8> {
        format!("{} {} {}", self.from, self.to, self.amount).into_bytes()
    }

    fn decode(bytes: &[u8]) -> Option<Transfer> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut parts = text.split(' ');
        let t = Transfer {
            from: parts.next()?.to_string(),
            to: parts.next()?.to_string(),
            amount: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(t)
    }

    /// The store action that carries command number `seq`.
    fn action(&self, seq: u64, rng_id: u128) -> StoreAction {
        StoreAction::Create(Object::from(Config {
            id: Id::from_u128(rng_id),
            meta: Meta::default(),
            spec: ConfigSpec {
                annotations: Annotations::named(format!("ledger.{seq:012}")),
                data: self.encode(),
                templating: None,
            },
        }))
    }
}

/// One replica's state: balances folded from the commands in commit order.
struct Ledger {
    watcher: Watcher,
    balances: BTreeMap<String, i64>,
    applied: u64,
}

impl Ledger {
    /// Starts following `store` (its current contents, then every later commit).
    fn follow(store: &SharedStore) -> Ledger {
        let ((balances, applied), watcher) =
            store.view_and_watch(WatchFilter::kinds(&[ObjectKind::Config]), Ledger::rebuild);
        Ledger {
            watcher,
            balances,
            applied,
        }
    }

    /// The state from the store alone (start, and after a snapshot install).
    fn rebuild(s: &Store) -> (BTreeMap<String, i64>, u64) {
        let mut commands: Vec<(&str, Transfer)> = s
            .iter::<Config>()
            .filter_map(|c| {
                let name = c.spec.annotations.name.as_str();
                name.starts_with("ledger.")
                    .then(|| Transfer::decode(&c.spec.data).map(|t| (name, t)))
                    .flatten()
            })
            .collect();
        commands.sort_by(|a, b| a.0.cmp(b.0));
        let mut balances = BTreeMap::new();
        for (_, t) in &commands {
            Ledger::apply_to(&mut balances, t);
        }
        (balances, commands.len() as u64)
    }

    fn apply_to(balances: &mut BTreeMap<String, i64>, t: &Transfer) {
        let amount = i64::try_from(t.amount).unwrap_or(i64::MAX);
        *balances.entry(t.from.clone()).or_default() -= amount;
        *balances.entry(t.to.clone()).or_default() += amount;
    }

    /// Applies every committed command the watcher delivered since the last call.
    fn catch_up(&mut self, store: &SharedStore) -> Result<(), String> {
        let events = match self.watcher.drain() {
            Ok(events) => events,
            Err(e) => {
                // Lagged: re-read the store and watch again.
                eprintln!("ledger watcher: {e}");
                *self = Ledger::follow(store);
                return Ok(());
            }
        };
        for event in events {
            match event {
                Event::Created(Object::Config(c))
                    if c.spec.annotations.name.starts_with("ledger.") =>
                {
                    let t = Transfer::decode(&c.spec.data).ok_or_else(|| {
                        format!("undecodable command {}", c.spec.annotations.name)
                    })?;
                    Ledger::apply_to(&mut self.balances, &t);
                    self.applied += 1;
                }
                Event::Reset { .. } => {
                    (self.balances, self.applied) = store.view(Ledger::rebuild);
                }
                _ => {}
            }
        }
        Ok(())
    }
}

// ---- the cluster -------------------------------------------------------------------------------

fn raft_config() -> RaftConfig {
    // Short timers so the example's elections take well under a second.
    RaftConfig {
        heartbeat: Duration::from_millis(50),
        election_timeout_min: Duration::from_millis(300),
        election_timeout_max: Duration::from_millis(600),
        step_down_after: Duration::from_millis(650),
        propose_timeout: Duration::from_secs(5),
        ..RaftConfig::default()
    }
}

async fn start(id: NodeId, dir: &std::path::Path, net: &InProcess) -> Result<RaftNode, String> {
    let mut config = NodeConfig::new(id, format!("manager-{id}"), dir.join(format!("m{id}")));
    config.raft = raft_config();
    let node = RaftNode::start(
        config,
        SharedStore::default(),
        Arc::new(net.clone()),
        StartOptions::default(),
    )
    .await
    .map_err(|e| format!("start manager {id}: {e}"))?;
    net.nodes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, node.clone());
    Ok(node)
}

async fn leader_among(nodes: &BTreeMap<NodeId, RaftNode>) -> Result<NodeId, String> {
    let any = nodes.values().next().ok_or("no manager runs")?;
    let status = any
        .wait_until(T, "a leader", |s| {
            s.leader.is_some_and(|l| nodes.contains_key(&l))
        })
        .await
        .map_err(|e| e.to_string())?;
    status.leader.ok_or_else(|| "no leader".into())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let net = InProcess::default();
    let mut nodes = BTreeMap::new();

    let first = start(1, dir.path(), &net).await?;
    first.bootstrap().await.map_err(|e| e.to_string())?;
    first
        .wait_until(T, "manager 1 leads", |s| s.leads())
        .await
        .map_err(|e| e.to_string())?;
    nodes.insert(1, first.clone());
    for id in [2, 3] {
        nodes.insert(id, start(id, dir.path(), &net).await?);
        first
            .add_manager(id, format!("manager-{id}"))
            .await
            .map_err(|e| format!("add manager {id}: {e}"))?;
    }
    let mut ledgers: BTreeMap<NodeId, Ledger> = nodes
        .iter()
        .map(|(id, n)| (*id, Ledger::follow(n.store())))
        .collect();
    println!("managers {:?} voting", first.status().voters);

    let transfers = [
        ("bank", "alice", 100),
        ("bank", "bob", 50),
        ("alice", "bob", 30),
        ("bob", "carol", 70),
    ];
    let mut seq = 0u64;
    let mut propose = |via: &RaftNode, from: &str, to: &str, amount: u64| {
        seq += 1;
        let t = Transfer {
            from: from.into(),
            to: to.into(),
            amount,
        };
        let action = t.action(seq, 0x5eed_0000_0000 + u128::from(seq));
        let via = via.clone();
        async move { via.propose(vec![action]).await.map_err(|e| e.to_string()) }
    };

    // Proposals through a follower: it forwards them to the leader.
    let leader = leader_among(&nodes).await?;
    let follower = nodes
        .iter()
        .find(|(id, _)| **id != leader)
        .map(|(_, n)| n.clone())
        .ok_or("no follower")?;
    let mut last = 0;
    for (from, to, amount) in transfers {
        last = propose(&follower, from, to, amount).await?;
    }
    println!(
        "4 transfers committed (last at log index {last}) through follower {}",
        follower.id()
    );

    // The leader goes away; the other two elect a new one and carry on.
    println!("stopping leader {leader}");
    net.nodes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&leader);
    if let Some(n) = nodes.remove(&leader) {
        n.shutdown().await;
    }
    ledgers.remove(&leader);
    let new_leader = leader_among(&nodes).await?;
    println!("manager {new_leader} leads now");
    last = propose(&nodes[&new_leader], "carol", "alice", 20).await?;

    // Every surviving replica applied everything and folded the same state.
    let mut states = Vec::new();
    for (id, node) in &nodes {
        node.wait_until(T, "the last transfer is applied", |s| {
            s.last_applied >= Some(last)
        })
        .await
        .map_err(|e| format!("manager {id}: {e}"))?;
        let ledger = ledgers.get_mut(id).ok_or("no ledger")?;
        ledger.catch_up(node.store())?;
        println!(
            "manager {id}: {} commands, {:?}",
            ledger.applied, ledger.balances
        );
        states.push((ledger.applied, ledger.balances.clone()));
    }
    for node in nodes.values() {
        node.shutdown().await;
    }
    let expected: BTreeMap<String, i64> =
        [("alice", 90), ("bank", -150), ("bob", 10), ("carol", 50)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
    if states.iter().any(|s| *s != (5, expected.clone())) {
        return Err(format!("the replicas disagree or are wrong: {states:?}"));
    }
    println!("the surviving replicas agree");
    Ok(())
}
