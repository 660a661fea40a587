//! Where the simulation watches what production code sends (feature `sim`): today the
//! assignment sets a dispatcher hands to a node's session (`manager::feed::stream` calls
//! [`Stream::sent`]), for the `secrets_sent` invariant.
//!
//! The tap is per thread: a simulation runs every host on its own thread, and `set` installs
//! the run's observer there (and `clear` removes it at the end). Outside a simulation, or with
//! no observer installed, a tap does nothing.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use swarm_core::dispatch::AssignmentSet;
use swarm_core::Id;

/// Receives (stream id, node, set) for every assignment set sent on this thread.
pub(crate) type Observer = Rc<dyn Fn(u64, Id, &AssignmentSet)>;

thread_local! {
    static OBSERVER: RefCell<Option<Observer>> = const { RefCell::new(None) };
    static NEXT_STREAM: Cell<u64> = const { Cell::new(0) };
}

/// Installs `observer` for this thread.
pub(crate) fn set(observer: Observer) {
    OBSERVER.with(|o| *o.borrow_mut() = Some(observer));
    NEXT_STREAM.with(|n| n.set(0));
}

/// Removes this thread's observer.
pub(crate) fn clear() {
    OBSERVER.with(|o| *o.borrow_mut() = None);
}

/// One assignment stream (one session of one node on one manager).
#[derive(Debug)]
pub struct Stream {
    id: u64,
    node: Id,
}

impl Stream {
    /// A new stream to `node`.
    pub fn open(node: Id) -> Stream {
        let id = NEXT_STREAM.with(|n| {
            let id = n.get() + 1;
            n.set(id);
            id
        });
        Stream { id, node }
    }

    /// `set` is being sent on this stream.
    pub fn sent(&self, set: &AssignmentSet) {
        let observer = OBSERVER.with(|o| o.borrow().clone());
        if let Some(f) = observer {
            f(self.id, self.node, set);
        }
    }
}
