//! The [`Proposer`] conformance suite (feature `testing`): the contract written on [`Proposer`],
//! checked against any implementation. swarm-core runs it against [`crate::LocalProposer`]
//! (`tests/proposer_conformance.rs`), swarm-raft against its `RaftNode` on one manager and
//! through a follower of three.
//!
//! An implementer provides a [`ProposerFixture`] (the proposer, the store it applies to, and
//! the stores of the other replicas if any) and calls [`run_all`], or each case on its own. A
//! case that finds a broken clause panics with the clause and what it saw, as a test should.
//! Cases share the fixture: they create objects with fresh ids and names and never assume an
//! empty store.
//!
//! Clauses checked:
//! 1. `Ok(index)` means applied to the local store at `index`: a read right after the call sees
//!    every object at version `index` ([`committed_batch_is_applied_locally`]).
//! 2. Indexes increase from one committed proposal to the next ([`indexes_increase`]).
//! 3. A batch commits atomically or not at all: one refused action refuses the batch with
//!    [`CommitError::Rejected`] and none of its actions is applied ([`batch_is_atomic`]); an
//!    update at a stale version is refused the same way ([`stale_update_is_rejected`]).
//! 4. An oversized proposal is refused with [`CommitError::TooLarge`] before anything is applied
//!    ([`oversized_proposal_is_refused`]).
//! 5. One batch, one timestamp, the same on every replica, which applies the same objects at the
//!    same index ([`replicas_apply_the_same_batch`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

use crate::action::{StoreAction, MAX_PROPOSAL_BYTES};
use crate::meta::{Annotations, Meta};
use crate::object::{Object, ObjectKind, ObjectRef};
use crate::objects::secret::{Config, ConfigSpec};
use crate::proposer::{CommitError, Proposer};
use crate::store::SharedStore;
use crate::Id;

/// How the suite drives one [`Proposer`] implementation.
#[async_trait]
pub trait ProposerFixture: Send + Sync {
    /// The proposer under test.
    fn proposer(&self) -> Arc<dyn Proposer>;

    /// The store `proposer` applies committed batches to (the proposing node's).
    fn store(&self) -> SharedStore;

    /// The stores of the other replicas (none for a single-store proposer).
    fn replicas(&self) -> Vec<SharedStore> {
        Vec::new()
    }

    /// Waits until every replica applied `index` (replication is asynchronous; only the local
    /// store is current when `propose` returns). Default: nothing to wait for.
    async fn settle(&self, index: u64) {
        let _ = index;
    }
}

/// A fresh number for ids and names, distinct across cases and runs in one process.
fn fresh() -> u128 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    // High bits keep these ids away from the small numbers fixtures use.
    (0xc0f0_u128 << 100) | u128::from(NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A config named `conformance-<n>` (configs have unique names and no references).
fn config(n: u128) -> Config {
    Config {
        id: Id::from_u128(n),
        meta: Meta::default(),
        spec: ConfigSpec {
            annotations: Annotations::named(format!("conformance-{n}")),
            data: b"conformance".to_vec(),
            templating: None,
        },
    }
}

fn create(c: &Config) -> StoreAction {
    StoreAction::Create(Object::from(c.clone()))
}

fn get(store: &SharedStore, id: Id) -> Option<Arc<Config>> {
    store.view(|s| s.get::<Config>(&id).cloned())
}

async fn propose_ok(f: &dyn ProposerFixture, actions: Vec<StoreAction>, what: &str) -> u64 {
    match f.proposer().propose(actions).await {
        Ok(index) => index,
        Err(e) => panic!("clause: a valid proposal commits; {what} failed: {e}"),
    }
}

/// Clause 1: after `Ok(index)`, the local store holds the batch at `index`.
pub async fn committed_batch_is_applied_locally(f: &dyn ProposerFixture) {
    let (a, b) = (config(fresh()), config(fresh()));
    let index = propose_ok(f, vec![create(&a), create(&b)], "creating two configs").await;
    let store = f.store();
    assert!(
        store.index() >= index,
        "clause 1: propose returned index {index} but the local store is at {}",
        store.index()
    );
    for c in [&a, &b] {
        let got = get(&store, c.id).unwrap_or_else(|| {
            panic!(
                "clause 1: config {} is missing right after Ok({index})",
                c.id
            )
        });
        assert_eq!(
            got.meta.version.0, index,
            "clause 1: an object of the batch committed at {index} has version {}",
            got.meta.version.0
        );
    }
}

/// Clause 2: successive committed proposals get increasing indexes.
pub async fn indexes_increase(f: &dyn ProposerFixture) {
    let mut last = 0;
    for round in 0..3 {
        let index = propose_ok(f, vec![create(&config(fresh()))], "a create").await;
        assert!(
            index > last,
            "clause 2: proposal {round} committed at {index}, not after the previous one at {last}"
        );
        last = index;
    }
}

/// Clause 3: a batch with one refused action is refused whole, and nothing of it is applied.
pub async fn batch_is_atomic(f: &dyn ProposerFixture) {
    let existing = config(fresh());
    propose_ok(f, vec![create(&existing)], "creating a config").await;
    let fresh_one = config(fresh());
    // Same name as `existing`, another id: the store refuses it (names are unique).
    let mut clash = config(fresh());
    clash.spec.annotations.name = existing.spec.annotations.name.clone();
    let result = f
        .proposer()
        .propose(vec![create(&fresh_one), create(&clash)])
        .await;
    assert!(
        matches!(result, Err(CommitError::Rejected(_))),
        "clause 3: a batch with a name clash must be Rejected, got {result:?}"
    );
    let store = f.store();
    assert!(
        get(&store, fresh_one.id).is_none(),
        "clause 3: the valid action of a refused batch was applied"
    );
    assert!(
        get(&store, clash.id).is_none(),
        "clause 3: the refused action was applied"
    );
    // The proposer still works after a refusal.
    propose_ok(f, vec![create(&fresh_one)], "the valid action alone").await;
}

/// Clause 3: an update carrying a stale version is refused and changes nothing.
pub async fn stale_update_is_rejected(f: &dyn ProposerFixture) {
    let c = config(fresh());
    propose_ok(f, vec![create(&c)], "creating a config").await;
    let store = f.store();
    let current = get(&store, c.id).expect("the config just committed");
    let mut stale = (*current).clone();
    stale.meta.version.0 = current.meta.version.0.saturating_sub(1);
    stale
        .spec
        .annotations
        .labels
        .insert("conformance".into(), "stale".into());
    let result = f
        .proposer()
        .propose(vec![StoreAction::Update(Object::from(stale))])
        .await;
    assert!(
        matches!(result, Err(CommitError::Rejected(_))),
        "clause 3: an update at a stale version must be Rejected, got {result:?}"
    );
    assert_eq!(
        get(&store, c.id).as_deref(),
        Some(&*current),
        "clause 3: a refused update changed the object"
    );
}

/// Clause 4: a proposal over [`MAX_PROPOSAL_BYTES`] is refused as `TooLarge`, nothing applied.
pub async fn oversized_proposal_is_refused(f: &dyn ProposerFixture) {
    let mut big = config(fresh());
    big.spec.data = vec![7; 600 * 1024];
    let others: Vec<Config> = (0..2)
        .map(|_| {
            let mut c = config(fresh());
            c.spec.data = vec![7; 600 * 1024];
            c
        })
        .collect();
    let mut actions = vec![create(&big)];
    actions.extend(others.iter().map(create));
    let result = f.proposer().propose(actions).await;
    assert!(
        matches!(result, Err(CommitError::TooLarge { limit, .. }) if limit == MAX_PROPOSAL_BYTES),
        "clause 4: a proposal of ~1.8 MiB must be TooLarge, got {result:?}"
    );
    let store = f.store();
    assert!(
        get(&store, big.id).is_none() && others.iter().all(|c| get(&store, c.id).is_none()),
        "clause 4: part of an oversized proposal was applied"
    );
}

/// Clause 5: every replica applies the same batch at the same index, with one timestamp.
pub async fn replicas_apply_the_same_batch(f: &dyn ProposerFixture) {
    let (a, b) = (config(fresh()), config(fresh()));
    let index = propose_ok(f, vec![create(&a), create(&b)], "creating two configs").await;
    let local = f.store();
    let (ga, gb) = (
        get(&local, a.id).expect("committed"),
        get(&local, b.id).expect("committed"),
    );
    assert_eq!(
        ga.meta.created_at, gb.meta.created_at,
        "clause 5: two objects of one batch carry different timestamps"
    );
    f.settle(index).await;
    for (n, replica) in f.replicas().iter().enumerate() {
        for want in [&ga, &gb] {
            let got = get(replica, want.id);
            assert_eq!(
                got.as_deref(),
                Some(&**want),
                "clause 5: replica {n} applied something else for {} (index {index})",
                want.id
            );
        }
    }
    // Remove them again so a long-lived fixture does not grow (and to check removal commits).
    let removes = [a.id, b.id]
        .into_iter()
        .map(|id| {
            StoreAction::Remove(ObjectRef {
                kind: ObjectKind::Config,
                id,
            })
        })
        .collect();
    propose_ok(f, removes, "removing the two configs").await;
    assert!(get(&local, a.id).is_none() && get(&local, b.id).is_none());
}

/// Every case, in order.
pub async fn run_all(f: &dyn ProposerFixture) {
    committed_batch_is_applied_locally(f).await;
    indexes_increase(f).await;
    batch_is_atomic(f).await;
    stale_update_is_rejected(f).await;
    oversized_proposal_is_refused(f).await;
    replicas_apply_the_same_batch(f).await;
}
