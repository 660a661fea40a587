//! [`Route`]: one published port as its listener sees it: the current backends (replaced as a
//! whole by the driver, read per connection or UDP session by the listener) and whether the
//! listener is bound.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use super::view::Backend;
use super::PortKey;

/// One published port. Shared by the driver (writes backends), its listener (reads them) and
/// the mesh's observers ([`super::RoutingMesh::backends`], the port check).
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) key: PortKey,
    backends: RwLock<Arc<[Backend]>>,
    /// Bumped on every backend change, so UDP sessions notice cheaply that theirs may be gone.
    generation: AtomicU64,
    /// Round-robin cursor.
    next: AtomicUsize,
    bound: AtomicBool,
}

impl Route {
    pub(crate) fn new(key: PortKey, backends: Vec<Backend>) -> Route {
        Route {
            key,
            backends: RwLock::new(backends.into()),
            generation: AtomicU64::new(0),
            next: AtomicUsize::new(0),
            bound: AtomicBool::new(false),
        }
    }

    /// Replaces the backends (no-op when equal, so sessions are not disturbed for nothing).
    pub(crate) fn set_backends(&self, backends: Vec<Backend>) {
        let mut cur = self.backends.write().unwrap_or_else(|e| e.into_inner());
        if **cur != *backends {
            *cur = backends.into();
            self.generation.fetch_add(1, Ordering::Release);
        }
    }

    /// The current backends.
    pub(crate) fn backends(&self) -> Arc<[Backend]> {
        self.backends
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The backend of `task` on this route, if it is one now (a stream from another node names
    /// the task it chose; the answer also says where the task is reached).
    pub(crate) fn backend_of(&self, task: &swarm_core::Id) -> Option<Backend> {
        self.backends().iter().find(|b| b.task == *task).copied()
    }

    /// The current backends in the order to try them: round robin over successive calls, each
    /// backend once.
    pub(crate) fn candidates(&self) -> impl Iterator<Item = Backend> {
        let list = self.backends();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = list.len();
        (0..n).map(move |i| list[(start + i) % n])
    }

    pub(crate) fn set_bound(&self, bound: bool) {
        self.bound.store(bound, Ordering::Release);
    }

    pub(crate) fn is_bound(&self) -> bool {
        self.bound.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use swarm_core::objects::service::Protocol;

    #[test]
    fn round_robin_tries_each_backend_once() {
        let backend = |n: u16| Backend {
            task: swarm_core::Id::from_u128(u128::from(n)),
            node: None,
            addr: SocketAddr::from(([127, 0, 0, 1], n)),
            node_addr: None,
            node_manager: false,
        };
        let (a, b, c) = (backend(1), backend(2), backend(3));
        let r = Route::new(
            PortKey {
                port: 80,
                protocol: Protocol::Tcp,
            },
            vec![a, b, c],
        );
        assert_eq!(r.candidates().collect::<Vec<_>>(), vec![a, b, c]);
        assert_eq!(r.candidates().collect::<Vec<_>>(), vec![b, c, a]);
        let g = r.generation();
        r.set_backends(vec![a, b, c]);
        assert_eq!(r.generation(), g, "same set: same generation");
        r.set_backends(vec![c]);
        assert_eq!(r.generation(), g + 1);
        assert_eq!(r.candidates().collect::<Vec<_>>(), vec![c]);
        r.set_backends(vec![]);
        assert_eq!(r.candidates().count(), 0);
        r.set_backends(vec![a, b]);
        assert_eq!(r.backend_of(&b.task), Some(b));
        assert_eq!(r.backend_of(&c.task), None);
    }
}
