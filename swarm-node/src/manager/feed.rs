//! What the dispatcher's sessions are fed: one store watch shared by every session
//! ([`AssignmentFeed`]), routed to each node's session by the node ids of the task events, and
//! the per-session streamer ([`stream`]) turning that into assignment sets.
//!
//! Policy: the store delivers every event to every watcher and tests each watcher's filter
//! under its write lock; one watcher per session made every commit cost `sessions x events`
//! there (10,000 sessions x a 200-task batch = 2 million filter calls while readers wait). The
//! feed holds the only watch (tasks only: `NodeAssignments` ignores secret and config events)
//! and routes each commit's task events, off the store lock, with one map lookup per event: an
//! update goes to the node the task is on now and, when it moved, to the node it left (which
//! forgets it). A session gets a message only for commits that touched its node.
//!
//! No gap, no double: a session registers with the feed before it reads its full set from the
//! store (at index `I`); events of commits up to `I` it receives afterwards are already in the
//! full set and are skipped; events it missed before registering were applied before the read,
//! so the full set holds them too. When the feed's own watch lags or the store is reset, every
//! session is told to resynchronise (a fresh full set).
//!
//! Not here: what a set holds (`manager::assign`), sessions and liveness (`crate::dispatcher`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use swarm_core::dispatch::AssignmentSet;
use swarm_core::{Event, Id, Object, ObjectKind, SharedStore, WatchFilter};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::manager::assign::NodeAssignments;

/// The feed's watch limit: events queued before it lags (then every session resynchronises).
const FEED_WATCH_LIMIT: usize = 1 << 20;

/// What a session's streamer receives.
#[derive(Debug)]
pub enum FeedItem {
    /// The events of the commit at `index` about this node's tasks.
    Commit {
        /// The batch index.
        index: u64,
        /// The events, in store order.
        events: Vec<Event>,
    },
    /// Read everything again (the feed lagged or the store was reset).
    Resync,
}

#[derive(Default)]
struct Routes {
    /// Per node, its registered sessions (registration id, sender).
    sessions: HashMap<Id, Vec<(u64, mpsc::UnboundedSender<FeedItem>)>>,
    next: u64,
}

/// One store watch routed to the sessions by node. Cheap to clone. See the module docs.
#[derive(Clone)]
pub struct AssignmentFeed {
    routes: Arc<Mutex<Routes>>,
}

impl std::fmt::Debug for AssignmentFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssignmentFeed")
            .field("nodes", &self.lock().sessions.len())
            .finish()
    }
}

/// A session's place in the feed; dropping it unregisters.
pub struct Registration {
    feed: AssignmentFeed,
    node: Id,
    id: u64,
    /// The session's items.
    pub rx: mpsc::UnboundedReceiver<FeedItem>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut r = self.feed.lock();
        if let Some(v) = r.sessions.get_mut(&self.node) {
            v.retain(|(id, _)| *id != self.id);
            if v.is_empty() {
                r.sessions.remove(&self.node);
            }
        }
    }
}

impl AssignmentFeed {
    /// Starts the feed over `store` on the current runtime; it runs until `stop` turns true.
    pub fn start(
        store: SharedStore,
        stop: watch::Receiver<bool>,
    ) -> (AssignmentFeed, JoinHandle<()>) {
        let feed = AssignmentFeed {
            routes: Arc::default(),
        };
        let handle = tokio::spawn(feed.clone().run(store, stop));
        (feed, handle)
    }

    fn lock(&self) -> MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a session of `node`: from now on it receives the commits touching the node.
    pub fn register(&self, node: Id) -> Registration {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut r = self.lock();
        r.next += 1;
        let id = r.next;
        r.sessions.entry(node).or_default().push((id, tx));
        Registration {
            feed: self.clone(),
            node,
            id,
            rx,
        }
    }

    /// Nodes with at least one registered session.
    pub fn nodes(&self) -> usize {
        self.lock().sessions.len()
    }

    fn resync_all(&self) {
        let r = self.lock();
        for v in r.sessions.values() {
            for (_, tx) in v {
                let _ = tx.send(FeedItem::Resync);
            }
        }
    }

    async fn run(self, store: SharedStore, mut stop: watch::Receiver<bool>) {
        let filter = || WatchFilter::kinds(&[ObjectKind::Task]).with_limit(FEED_WATCH_LIMIT);
        let mut watcher = store.watch(filter());
        // This commit's events per node, until its marker.
        // Ordered by node: sessions are sent to in one order every run (a simulation replays it).
        let mut pending: BTreeMap<Id, Vec<Event>> = BTreeMap::new();
        loop {
            let events = tokio::select! {
                e = watcher.recv_many() => e,
                _ = stop.wait_for(|s| *s) => return,
            };
            let events = match events {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "assignment feed restarted; every session resynchronises");
                    pending.clear();
                    watcher = store.watch(filter());
                    self.resync_all();
                    continue;
                }
            };
            for ev in events {
                match &ev {
                    Event::Commit { index } => {
                        if pending.is_empty() {
                            continue;
                        }
                        let r = self.lock();
                        for (node, events) in std::mem::take(&mut pending) {
                            let Some(v) = r.sessions.get(&node) else {
                                continue;
                            };
                            if let [(_, tx)] = v.as_slice() {
                                let _ = tx.send(FeedItem::Commit {
                                    index: *index,
                                    events,
                                });
                            } else {
                                for (_, tx) in v {
                                    let _ = tx.send(FeedItem::Commit {
                                        index: *index,
                                        events: events.clone(),
                                    });
                                }
                            }
                        }
                    }
                    Event::Reset { .. } => {
                        pending.clear();
                        self.resync_all();
                    }
                    Event::Created(Object::Task(t)) | Event::Removed(Object::Task(t)) => {
                        if let Some(n) = t.node_id {
                            pending.entry(n).or_default().push(ev);
                        }
                    }
                    Event::Updated {
                        old: Object::Task(old),
                        new: Object::Task(new),
                    } => {
                        if let Some(o) = old.node_id.filter(|o| Some(*o) != new.node_id) {
                            pending.entry(o).or_default().push(ev.clone());
                        }
                        if let Some(n) = new.node_id {
                            pending.entry(n).or_default().push(ev);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// How the streamer batches incremental sets.
#[derive(Clone, Copy, Debug)]
pub struct Batching {
    /// Send once the node's changes have been quiet this long...
    pub quiet: Duration,
    /// ...or once this many of its tasks changed.
    pub max: usize,
}

/// Streams `node`'s assignments until the session (`close`), the receiver or the feed ends: a
/// full set, then incremental ones batched per `batching`.
pub async fn stream(
    store: SharedStore,
    mut reg: Registration,
    node: Id,
    tx: mpsc::UnboundedSender<AssignmentSet>,
    mut close: watch::Receiver<bool>,
    batching: Batching,
) {
    let mut a = NodeAssignments::new(node);
    let mut sequence = 1;
    // The simulation's `secrets_sent` invariant watches every set sent (feature `sim`).
    #[cfg(feature = "sim")]
    let tap = crate::sim::tap::Stream::open(node);
    let (full, mut seen) = store.view(|s| (a.full(s, sequence), s.index()));
    #[cfg(feature = "sim")]
    tap.sent(&full);
    if tx.send(full).is_err() {
        return;
    }
    // When the first change not sent yet arrived, and when to send.
    let mut first_pending: Option<tokio::time::Instant> = None;
    let mut due: Option<tokio::time::Instant> = None;
    loop {
        let quiet = async {
            match due {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let item = tokio::select! {
            i = reg.rx.recv() => i,
            _ = quiet => {
                due = None;
                let seq = sequence + 1;
                if let Some(set) = store.view(|s| a.take_delta(s, seq)) {
                    sequence = seq;
                    #[cfg(feature = "sim")]
                    tap.sent(&set);
                    if tx.send(set).is_err() {
                        return;
                    }
                    if let Some(t) = first_pending.take() {
                        crate::metrics::global()
                            .dispatcher_assignment_seconds
                            .observe(t.elapsed().as_secs_f64());
                    }
                }
                first_pending = None;
                continue;
            }
            _ = tx.closed() => return,
            _ = close.wait_for(|c| *c) => return,
        };
        match item {
            None => return,
            Some(FeedItem::Commit { index, events }) => {
                if index <= seen {
                    // Already in the full set this session read.
                    continue;
                }
                for e in &events {
                    a.handle_event(e);
                }
                first_pending.get_or_insert_with(tokio::time::Instant::now);
                due = Some(tokio::time::Instant::now() + batching.quiet);
                if a.pending_tasks() >= batching.max {
                    // Send at once: the quiet branch runs on the next turn.
                    due = Some(tokio::time::Instant::now());
                }
            }
            Some(FeedItem::Resync) => {
                sequence += 1;
                let seq = sequence;
                let (full, index) = store.view(|s| (a.full(s, seq), s.index()));
                seen = index;
                #[cfg(feature = "sim")]
                tap.sent(&full);
                if tx.send(full).is_err() {
                    return;
                }
                (first_pending, due) = (None, None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_core::{Batch, Store, StoreAction, Task, TaskState};

    const WAIT: Duration = Duration::from_secs(10);

    fn task(n: u128, node: u128) -> Task {
        let svc = swarm_core::testing::service(1, "s", 1);
        let mut t = swarm_core::testing::task(n, &svc, n as u64);
        t.node_id = Some(Id::from_u128(node));
        t.status.state = TaskState::Assigned;
        t
    }

    struct Fixture {
        store: SharedStore,
        feed: AssignmentFeed,
        _stop: watch::Sender<bool>,
        index: u64,
    }

    impl Fixture {
        fn new() -> Fixture {
            let store = SharedStore::new(Store::new());
            let (stop, rx) = watch::channel(false);
            let (feed, _) = AssignmentFeed::start(store.clone(), rx);
            Fixture {
                store,
                feed,
                _stop: stop,
                index: 0,
            }
        }

        fn apply(&mut self, actions: Vec<StoreAction>) {
            self.index += 1;
            self.store
                .apply(Batch {
                    index: self.index,
                    timestamp: Default::default(),
                    actions,
                })
                .expect("applied");
        }

        fn create(&mut self, t: Task) {
            self.apply(vec![StoreAction::Create(Object::from(t))]);
        }

        /// Moves task `n` to `node` (read back for its version).
        fn move_task(&mut self, n: u128, node: u128) {
            let mut t = self
                .store
                .view(|s| (**s.get::<Task>(&Id::from_u128(n)).expect("task")).clone());
            t.node_id = Some(Id::from_u128(node));
            self.apply(vec![StoreAction::Update(Object::from(t))]);
        }

        fn session(
            &self,
            reg: Registration,
            node: u128,
        ) -> (mpsc::UnboundedReceiver<AssignmentSet>, watch::Sender<bool>) {
            let (tx, rx) = mpsc::unbounded_channel();
            let (close, close_rx) = watch::channel(false);
            let batching = Batching {
                quiet: Duration::from_millis(5),
                max: 100,
            };
            tokio::spawn(stream(
                self.store.clone(),
                reg,
                Id::from_u128(node),
                tx,
                close_rx,
                batching,
            ));
            (rx, close)
        }
    }

    async fn next(rx: &mut mpsc::UnboundedReceiver<AssignmentSet>) -> AssignmentSet {
        tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("a set in time")
            .expect("streamer alive")
    }

    fn ids(set: &AssignmentSet) -> Vec<Id> {
        set.tasks.iter().map(|t| t.id).collect()
    }

    #[tokio::test]
    async fn each_session_gets_only_its_nodes_commits_and_a_moved_task_leaves_its_old_node() {
        let mut f = Fixture::new();
        f.create(task(1, 7));
        let (mut a, _ca) = f.session(f.feed.register(Id::from_u128(7)), 7);
        let (mut b, _cb) = f.session(f.feed.register(Id::from_u128(8)), 8);
        let full_a = next(&mut a).await;
        assert!(full_a.full);
        assert_eq!(ids(&full_a), vec![Id::from_u128(1)]);
        assert!(next(&mut b).await.tasks.is_empty());
        assert_eq!(f.feed.nodes(), 2);

        f.create(task(2, 8));
        assert_eq!(ids(&next(&mut b).await), vec![Id::from_u128(2)]);
        f.move_task(1, 8);
        // Node 7's next set is the withdrawal: it never heard of node 8's task 2.
        let d = next(&mut a).await;
        assert!(!d.full);
        assert!(d.tasks.is_empty(), "{d:?}");
        assert_eq!(d.removed_tasks, vec![Id::from_u128(1)]);
        assert_eq!(ids(&next(&mut b).await), vec![Id::from_u128(1)]);
    }

    #[tokio::test]
    async fn commits_already_in_the_full_set_are_not_sent_again() {
        let mut f = Fixture::new();
        // Registered first, then a commit the feed routes to the registration, then the
        // streamer reads its full set (which holds that commit).
        let reg = f.feed.register(Id::from_u128(7));
        f.create(task(1, 7));
        let (mut a, _c) = f.session(reg, 7);
        assert_eq!(ids(&next(&mut a).await), vec![Id::from_u128(1)]);
        f.create(task(2, 7));
        let d = next(&mut a).await;
        assert_eq!(ids(&d), vec![Id::from_u128(2)], "task 1 only once: {d:?}");
    }

    #[tokio::test]
    async fn a_dropped_registration_leaves_the_routes() {
        let f = Fixture::new();
        let r1 = f.feed.register(Id::from_u128(7));
        let r2 = f.feed.register(Id::from_u128(7));
        assert_eq!(f.feed.nodes(), 1);
        drop(r1);
        assert_eq!(f.feed.nodes(), 1, "the node's other session stays");
        drop(r2);
        assert_eq!(f.feed.nodes(), 0);
    }
}
