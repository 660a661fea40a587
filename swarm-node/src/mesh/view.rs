//! The mesh view: every published port with its backends, as one node's listeners need it, and
//! how it travels from a manager (which computes it from its store) to the other nodes.
//!
//! A [`Backend`] names the task, the node running it and where that node's swarm listener is
//! reached, so a node forwards a connection either to the task directly (its own tasks) or
//! through a stream to the task's node. The wire form is a [`ViewUpdate`]: the full view first,
//! then the ports that changed ([`diff`]). Pure: no I/O.
//!
//! The services' names, VIPs and tasks travel beside it, whole, as [`ViewUpdate::Names`]
//! (`names.rs`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use swarm_core::Id;

use super::names::NameView;
use super::table::RouteChange;
use super::PortKey;

/// The engine label under which a node reports the address its swarm listener is reached on
/// (`host:port`), for the other nodes' mesh streams. Managers are also found by their raft
/// address when the label is missing.
pub const MESH_ADDR_LABEL: &str = "com.docker.swarm.mesh.addr";

/// One task behind a published port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Backend {
    /// The task.
    pub task: Id,
    /// The node running it (None: a task the store assigns to no node, only in tests of a
    /// single node: forwarded locally).
    pub node: Option<Id>,
    /// The task's address and target port, as its own node reaches it.
    pub addr: SocketAddr,
    /// Where the node's swarm listener is reached (None: the node reported no address; only
    /// that node itself can then forward to the task).
    pub node_addr: Option<SocketAddr>,
    /// Whether the node is a manager (the role its certificate must name).
    pub node_manager: bool,
}

/// The whole view: each published port and its backends.
pub type MeshView = BTreeMap<PortKey, Arc<[Backend]>>;

/// One item of the `mesh.v1.routes` stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ViewUpdate {
    /// Every published port now (the first item, and again when the sender lost track); ports
    /// not listed are not published.
    Full(Vec<(PortKey, Vec<Backend>)>),
    /// Ports published or re-pointed (`Some`) or no longer published (`None`).
    Changes(Vec<(PortKey, Option<Vec<Backend>>)>),
    /// The services' names, VIPs and running tasks, whole (after the first full view, and
    /// again whenever they change).
    Names(NameView),
}

/// Applies route-table changes to `view`.
pub(crate) fn apply_changes(view: &mut MeshView, changes: &[RouteChange]) {
    for c in changes {
        match c {
            RouteChange::Publish { key, backends } => {
                view.insert(*key, backends.clone().into());
            }
            RouteChange::Unpublish { key } => {
                view.remove(key);
            }
        }
    }
}

/// The full view as an update.
pub(crate) fn full(view: &MeshView) -> ViewUpdate {
    ViewUpdate::Full(view.iter().map(|(k, b)| (*k, b.to_vec())).collect())
}

/// What changed from `old` to `new`, `None` when nothing did. Ports whose backend list is the
/// same allocation are skipped without comparing.
pub(crate) fn diff(old: &MeshView, new: &MeshView) -> Option<ViewUpdate> {
    let mut out = Vec::new();
    for (k, b) in new {
        match old.get(k) {
            Some(o) if Arc::ptr_eq(o, b) || **o == **b => {}
            _ => out.push((*k, Some(b.to_vec()))),
        }
    }
    for k in old.keys() {
        if !new.contains_key(k) {
            out.push((*k, None));
        }
    }
    (!out.is_empty()).then_some(ViewUpdate::Changes(out))
}

/// Turns a received update into route-table changes for the listeners, keeping `view` (what
/// this node was told so far) current. A full view unpublishes the ports it no longer lists.
pub(crate) fn receive(view: &mut MeshView, update: ViewUpdate) -> Vec<RouteChange> {
    let mut changes = Vec::new();
    match update {
        ViewUpdate::Full(ports) => {
            let listed: BTreeMap<PortKey, Vec<Backend>> = ports.into_iter().collect();
            for k in view.keys() {
                if !listed.contains_key(k) {
                    changes.push(RouteChange::Unpublish { key: *k });
                }
            }
            for (key, backends) in listed {
                changes.push(RouteChange::Publish { key, backends });
            }
        }
        // Names change no route: the caller keeps them.
        ViewUpdate::Names(_) => {}
        ViewUpdate::Changes(ports) => {
            for (key, backends) in ports {
                changes.push(match backends {
                    Some(backends) => RouteChange::Publish { key, backends },
                    None => RouteChange::Unpublish { key },
                });
            }
        }
    }
    apply_changes(view, &changes);
    changes
}

#[cfg(test)]
mod tests {
    use swarm_core::objects::service::Protocol;

    use super::*;

    fn key(port: u16) -> PortKey {
        PortKey {
            port,
            protocol: Protocol::Tcp,
        }
    }

    fn backend(task: u128, node: u128) -> Backend {
        Backend {
            task: Id::from_u128(task),
            node: Some(Id::from_u128(node)),
            addr: SocketAddr::from(([127, 0, 0, 1], 8000 + task as u16)),
            node_addr: Some(SocketAddr::from(([10, 0, 0, node as u8], 2377))),
            node_manager: node == 1,
        }
    }

    fn view(ports: &[(u16, &[Backend])]) -> MeshView {
        ports
            .iter()
            .map(|(p, b)| (key(*p), b.to_vec().into()))
            .collect()
    }

    /// The sender's diffs, replayed by a receiver that started from the full view, rebuild the
    /// sender's view at every step; a full view unpublishes what it no longer lists.
    #[test]
    fn diffs_replayed_after_a_full_view_rebuild_the_view() {
        let steps = [
            view(&[(80, &[backend(1, 1)])]),
            view(&[(80, &[backend(1, 1), backend(2, 2)]), (81, &[])]),
            view(&[(80, &[backend(2, 2)]), (81, &[])]),
            view(&[(81, &[backend(3, 2)])]),
            view(&[]),
        ];
        let mut got = MeshView::new();
        let mut changes = receive(&mut got, full(&steps[0]));
        assert_eq!(
            changes,
            vec![RouteChange::Publish {
                key: key(80),
                backends: vec![backend(1, 1)]
            }]
        );
        for w in steps.windows(2) {
            match diff(&w[0], &w[1]) {
                Some(update) => changes = receive(&mut got, update),
                None => panic!("{:?} -> {:?} has changes", w[0], w[1]),
            }
            assert_eq!(got, w[1]);
            assert!(!changes.is_empty());
        }
        assert_eq!(
            diff(&steps[1], &steps[1].clone()),
            None,
            "no change, no item"
        );
        // A receiver that knew ports 80 and 81 and reconnects to a sender publishing only 82.
        let mut got = steps[1].clone();
        let changes = receive(&mut got, full(&view(&[(82, &[backend(4, 1)])])));
        assert_eq!(
            changes,
            vec![
                RouteChange::Unpublish { key: key(80) },
                RouteChange::Unpublish { key: key(81) },
                RouteChange::Publish {
                    key: key(82),
                    backends: vec![backend(4, 1)]
                },
            ]
        );
        assert_eq!(got, view(&[(82, &[backend(4, 1)])]));
    }
}
