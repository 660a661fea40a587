//! The mesh's driver task: feeds store events to the [`RouteTable`] and turns its changes into
//! listeners (opened, re-pointed, closed); or, on a node without a store, the same from a
//! manager's view stream ([`run_remote`]).
//!
//! 1. `view_and_watch` services, tasks and nodes; under that view, reset the table;
//! 2. apply the table's changes, wait for events, feed them in order, repeat;
//! 3. on `Reset` or a lagged watch, resubscribe and reset (ports no longer published close);
//! 4. on stop (or when the store is dropped), close every listener and wait until each socket is
//!    closed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use swarm_core::objects::service::Protocol;
use swarm_core::store::WatchError;
use swarm_core::{Event, ObjectKind, SharedStore, WatchFilter};
use swarm_net::rpc::{Client, Peer};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::names::{self, NameView};
use super::route::Route;
use super::table::{RouteChange, RouteTable};
use super::view::{self, MeshView, ViewUpdate};
use super::{tcp, udp, PortKey, Shared};
use crate::net::mesh::MESH_ROUTES;

/// First wait before subscribing again after a view stream failed; doubled up to
/// [`RESUBSCRIBE_MAX`].
const RESUBSCRIBE_FIRST: Duration = Duration::from_millis(200);
const RESUBSCRIBE_MAX: Duration = Duration::from_secs(3);

fn filter() -> WatchFilter {
    WatchFilter::kinds(&[
        ObjectKind::Service,
        ObjectKind::Task,
        ObjectKind::Node,
        ObjectKind::Network,
    ])
}

/// The names view is rebuilt at most this often (a rebuild reads every service and task).
const NAMES_EVERY: Duration = Duration::from_millis(200);

/// Runs until `shared.stop` is set or the store is dropped.
pub(crate) async fn run(shared: Arc<Shared>, store: SharedStore) {
    let mut stop = shared.stop.subscribe();
    let mut table = RouteTable::new();
    let mut listeners: HashMap<PortKey, JoinHandle<()>> = HashMap::new();
    let mut current = MeshView::new();
    let ((), mut watcher) = store.view_and_watch(filter(), |s| table.handle_reset(s));
    let mut names_dirty = true;
    let mut names_at: Option<Instant> = None;
    loop {
        let changes = table.poll_changes();
        publish(&shared, &mut current, &changes);
        apply(&shared, &mut listeners, changes).await;
        if names_dirty && names_at.is_none_or(|t| t.elapsed() >= NAMES_EVERY) {
            publish_names(&shared, &store);
            names_dirty = false;
            names_at = Some(Instant::now());
        }
        let names_due = names_at.filter(|_| names_dirty).map(|t| t + NAMES_EVERY);
        let events = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            () = sleep_until_some(names_due) => continue,
            r = watcher.recv_many() => r,
        };
        match events {
            Ok(events) if !events.iter().any(|e| matches!(e, Event::Reset { .. })) => {
                for e in &events {
                    names_dirty |= names::affects(e);
                    table.handle_event(e);
                }
            }
            Ok(_) | Err(WatchError::Lagged) => {
                tracing::debug!("routing mesh: store reset or watch lagged; re-reading the store");
                let ((), w) = store.view_and_watch(filter(), |s| table.handle_reset(s));
                watcher = w;
                names_dirty = true;
            }
            Err(WatchError::Closed) => break,
        }
    }
    close_all(&shared, listeners).await;
}

/// Sleeps until `at`; never returns without one.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Closes every listener and waits until each socket is closed.
async fn close_all(shared: &Shared, listeners: HashMap<PortKey, JoinHandle<()>>) {
    shared.lock_routes().clear();
    for (_, h) in listeners {
        h.abort();
        let _ = h.await;
    }
}

/// Records `changes` in the view other nodes subscribe to and the connect handler reads.
fn publish(shared: &Shared, current: &mut MeshView, changes: &[RouteChange]) {
    if changes.is_empty() {
        return;
    }
    view::apply_changes(current, changes);
    shared.view.send_replace(Arc::new(current.clone()));
}

/// Rebuilds the names view from the store and publishes it if it changed. The whole view is
/// rebuilt (linear in services and tasks), after events that may change it
/// ([`names::affects`]), at most every [`NAMES_EVERY`].
fn publish_names(shared: &Shared, store: &SharedStore) {
    let names = store.view(NameView::build);
    shared.names.send_if_modified(|old| {
        if **old == names {
            return false;
        }
        *old = Arc::new(names);
        true
    });
}

/// A node without a store: subscribes to one manager's view at a time (`managers()` in turn,
/// moving on when a stream fails or ends) and applies it like the store driver. While no
/// manager answers, the last view keeps serving. Runs until `shared.stop` is set.
pub(crate) async fn run_remote(
    shared: Arc<Shared>,
    client: Arc<Client>,
    managers: Arc<dyn Fn() -> Vec<Peer> + Send + Sync>,
) {
    let mut stop = shared.stop.subscribe();
    let mut listeners: HashMap<PortKey, JoinHandle<()>> = HashMap::new();
    let mut current = MeshView::new();
    let mut next = 0usize;
    let mut wait = RESUBSCRIBE_FIRST;
    'subscribe: loop {
        let peers = managers();
        if let Some(peer) = peers.get(next % peers.len().max(1)).copied() {
            next = next.wrapping_add(1);
            let call = client.server_streaming(&peer, &MESH_ROUTES, &(), None);
            let stream = tokio::select! {
                s = call => s,
                _ = stop.wait_for(|s| *s) => break 'subscribe,
            };
            match stream {
                Ok(mut stream) => loop {
                    let item = tokio::select! {
                        i = stream.next() => i,
                        _ = stop.wait_for(|s| *s) => break 'subscribe,
                    };
                    match item {
                        Some(Ok(ViewUpdate::Names(names))) => {
                            wait = RESUBSCRIBE_FIRST;
                            shared.names.send_replace(Arc::new(names));
                        }
                        Some(Ok(update)) => {
                            wait = RESUBSCRIBE_FIRST;
                            let changes = view::receive(&mut current, update);
                            shared.view.send_replace(Arc::new(current.clone()));
                            apply(&shared, &mut listeners, changes).await;
                        }
                        Some(Err(e)) => {
                            tracing::debug!(manager = %peer.addr, error = %e, "routing mesh: view stream failed; subscribing to another manager");
                            break;
                        }
                        None => break,
                    }
                },
                Err(e) => {
                    tracing::debug!(manager = %peer.addr, error = %e, "routing mesh: view subscription refused; trying another manager");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        wait = (wait * 2).min(RESUBSCRIBE_MAX);
    }
    close_all(&shared, listeners).await;
}

async fn apply(
    shared: &Arc<Shared>,
    listeners: &mut HashMap<PortKey, JoinHandle<()>>,
    changes: Vec<RouteChange>,
) {
    for change in changes {
        match change {
            RouteChange::Publish { key, backends } => {
                let existing = shared.lock_routes().get(&key).cloned();
                if let Some(route) = existing {
                    route.set_backends(backends);
                    continue;
                }
                let route = Arc::new(Route::new(key, backends));
                let handle = match key.protocol {
                    Protocol::Tcp => tokio::spawn(tcp::serve(route.clone(), shared.clone())),
                    Protocol::Udp => tokio::spawn(udp::serve(route.clone(), shared.clone())),
                    // The table never publishes SCTP (it warns instead).
                    Protocol::Sctp => continue,
                };
                tracing::info!(
                    "routing mesh: publishing {}:{}/{}",
                    shared.config.addr,
                    key.port,
                    key.protocol.as_str()
                );
                shared.lock_routes().insert(key, route);
                listeners.insert(key, handle);
            }
            RouteChange::Unpublish { key } => {
                shared.lock_routes().remove(&key);
                if let Some(h) = listeners.remove(&key) {
                    // Awaiting the aborted task means its socket is closed: a service publishing
                    // the same port next can bind it at once.
                    h.abort();
                    let _ = h.await;
                    tracing::info!(
                        "routing mesh: closed {}:{}/{}",
                        shared.config.addr,
                        key.port,
                        key.protocol.as_str()
                    );
                }
            }
        }
    }
}
