//! Watches: filtered event queues fed by [`super::Store::apply`].
//!
//! A [`Watcher`] is a runtime-agnostic queue: drain it synchronously ([`Watcher::try_recv`],
//! [`Watcher::drain`]) in tests and simulations, or await it ([`Watcher::recv`]) from any async
//! runtime. A watcher that falls more than its limit behind is closed with [`WatchError::Lagged`]
//! rather than letting memory grow without bound; its owner re-reads the store and watches again.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use thiserror::Error;

use crate::object::{Object, ObjectKind};

/// A change the store applied.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// An object was created.
    Created(Object),
    /// An object was replaced.
    Updated {
        /// Before.
        old: Object,
        /// After.
        new: Object,
    },
    /// An object was removed (its last state).
    Removed(Object),
    /// Every event of the batch at `index` has been delivered: reconcile now.
    Commit {
        /// The batch's index.
        index: u64,
    },
    /// The store was replaced by a snapshot at `index`: re-read everything.
    Reset {
        /// The snapshot's index.
        index: u64,
    },
}

impl Event {
    /// The object the event is about (the new state for updates); `None` for markers.
    pub fn object(&self) -> Option<&Object> {
        match self {
            Event::Created(o) | Event::Removed(o) => Some(o),
            Event::Updated { new, .. } => Some(new),
            Event::Commit { .. } | Event::Reset { .. } => None,
        }
    }
}

type Predicate = Arc<dyn Fn(&Object) -> bool + Send + Sync>;

/// Which events a watcher receives. Markers ([`Event::Commit`], [`Event::Reset`]) always pass.
#[derive(Clone)]
pub struct WatchFilter {
    kinds: u8,
    predicate: Option<Predicate>,
    limit: usize,
}

/// Default number of undelivered events after which a watcher is closed as lagging.
pub const DEFAULT_WATCH_LIMIT: usize = 1 << 20;

impl Default for WatchFilter {
    fn default() -> Self {
        WatchFilter::all()
    }
}

impl std::fmt::Debug for WatchFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchFilter")
            .field("kinds", &self.kinds)
            .field("predicate", &self.predicate.is_some())
            .field("limit", &self.limit)
            .finish()
    }
}

impl WatchFilter {
    /// Every event.
    pub fn all() -> WatchFilter {
        WatchFilter {
            kinds: u8::MAX,
            predicate: None,
            limit: DEFAULT_WATCH_LIMIT,
        }
    }

    /// Events about these kinds only.
    pub fn kinds(kinds: &[ObjectKind]) -> WatchFilter {
        WatchFilter {
            kinds: kinds.iter().fold(0, |m, k| m | k.bit()),
            ..WatchFilter::all()
        }
    }

    /// Additionally require `pred` to hold for the event's object (for updates: old or new state).
    pub fn with_predicate(
        mut self,
        pred: impl Fn(&Object) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.predicate = Some(Arc::new(pred));
        self
    }

    /// Close the watcher as lagging once this many events are queued.
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit.max(1);
        self
    }

    fn matches(&self, ev: &Event) -> bool {
        let pass = |o: &Object| {
            self.kinds & o.kind().bit() != 0 && self.predicate.as_ref().is_none_or(|p| p(o))
        };
        match ev {
            Event::Created(o) | Event::Removed(o) => pass(o),
            Event::Updated { old, new } => pass(new) || pass(old),
            Event::Commit { .. } | Event::Reset { .. } => true,
        }
    }
}

/// Why a watcher stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum WatchError {
    /// The consumer fell too far behind; events were dropped. Re-read the store and watch again.
    #[error("watcher fell too far behind and was closed; re-read the store and watch again")]
    Lagged,
    /// The store was dropped.
    #[error("the store was dropped")]
    Closed,
}

#[derive(Default)]
struct Queue {
    events: VecDeque<Event>,
    waker: Option<Waker>,
    closed: Option<WatchError>,
}

fn lock(q: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    // A panic while holding this lock cannot leave the queue inconsistent (only pushes and pops).
    q.lock().unwrap_or_else(|e| e.into_inner())
}

/// The store's end of a watch.
pub(crate) struct Subscription {
    filter: WatchFilter,
    queue: Arc<Mutex<Queue>>,
}

impl Subscription {
    /// Queues (copies of) the matching events; returns false once the watcher is gone or closed.
    pub(crate) fn deliver(&self, events: &[Event]) -> bool {
        self.deliver_each(events.iter().map(Cow::Borrowed))
    }

    /// [`Subscription::deliver`] handing over the events themselves (the last subscription of a
    /// publish takes them without a copy: no reference count touched per event).
    pub(crate) fn deliver_owned(&self, events: Vec<Event>) -> bool {
        self.deliver_each(events.into_iter().map(Cow::Owned))
    }

    fn deliver_each<'a>(&self, events: impl Iterator<Item = Cow<'a, Event>>) -> bool {
        if Arc::strong_count(&self.queue) == 1 {
            return false;
        }
        let mut q = lock(&self.queue);
        if q.closed.is_some() {
            return false;
        }
        let before = q.events.len();
        let mut only_markers = true;
        let mut last_is_commit = false;
        for ev in events {
            last_is_commit = matches!(*ev, Event::Commit { .. });
            if self.filter.matches(&ev) {
                if ev.object().is_some() {
                    only_markers = false;
                }
                q.events.push_back(ev.into_owned());
            }
        }
        // A commit marker alone tells this watcher nothing: drop it to keep idle watchers cheap.
        if only_markers && last_is_commit {
            q.events.truncate(before);
        }
        if q.events.len() > self.filter.limit {
            q.events.clear();
            q.closed = Some(WatchError::Lagged);
        }
        if q.events.len() > before || q.closed.is_some() {
            if let Some(w) = q.waker.take() {
                w.wake();
            }
        }
        q.closed.is_none()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut q = lock(&self.queue);
        if q.closed.is_none() {
            q.closed = Some(WatchError::Closed);
        }
        if let Some(w) = q.waker.take() {
            w.wake();
        }
    }
}

/// The consumer's end of a watch. Dropping it unsubscribes.
pub struct Watcher {
    queue: Arc<Mutex<Queue>>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let q = lock(&self.queue);
        f.debug_struct("Watcher")
            .field("queued", &q.events.len())
            .field("closed", &q.closed)
            .finish()
    }
}

pub(crate) fn channel(filter: WatchFilter) -> (Subscription, Watcher) {
    let queue = Arc::new(Mutex::new(Queue::default()));
    (
        Subscription {
            filter,
            queue: queue.clone(),
        },
        Watcher { queue },
    )
}

impl Watcher {
    /// The next queued event, if any. Queued events are still delivered after the store closes.
    pub fn try_recv(&self) -> Result<Option<Event>, WatchError> {
        let mut q = lock(&self.queue);
        match q.events.pop_front() {
            Some(e) => Ok(Some(e)),
            None => q.closed.map_or(Ok(None), Err),
        }
    }

    /// Every queued event.
    pub fn drain(&self) -> Result<Vec<Event>, WatchError> {
        let mut q = lock(&self.queue);
        if q.events.is_empty() {
            if let Some(e) = q.closed {
                return Err(e);
            }
        }
        Ok(q.events.drain(..).collect())
    }

    /// Waits for the next event.
    pub fn recv(&self) -> impl Future<Output = Result<Event, WatchError>> + '_ {
        Recv {
            w: self,
            many: false,
        }
        .map_one()
    }

    /// Waits until at least one event is queued, then takes all queued events.
    pub fn recv_many(&self) -> impl Future<Output = Result<Vec<Event>, WatchError>> + '_ {
        Recv {
            w: self,
            many: true,
        }
    }
}

struct Recv<'a> {
    w: &'a Watcher,
    many: bool,
}

impl Recv<'_> {
    async fn map_one(self) -> Result<Event, WatchError> {
        let mut v = self.await?;
        // `many == false` returns exactly one event.
        v.pop().ok_or(WatchError::Closed)
    }
}

impl Future for Recv<'_> {
    type Output = Result<Vec<Event>, WatchError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut q = lock(&self.w.queue);
        if !q.events.is_empty() {
            let out = if self.many {
                q.events.drain(..).collect()
            } else {
                q.events.pop_front().into_iter().collect()
            };
            return Poll::Ready(Ok(out));
        }
        if let Some(e) = q.closed {
            return Poll::Ready(Err(e));
        }
        q.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}
