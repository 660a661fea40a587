//! The mesh's driver task: feeds store events to the [`RouteTable`] and turns its changes into
//! listeners (opened, re-pointed, closed).
//!
//! 1. `view_and_watch` services and tasks; under that view, reset the table;
//! 2. apply the table's changes, wait for events, feed them in order, repeat;
//! 3. on `Reset` or a lagged watch, resubscribe and reset (ports no longer published close);
//! 4. on stop (or when the store is dropped), close every listener and wait until each socket is
//!    closed.

use std::collections::HashMap;
use std::sync::Arc;

use swarm_core::objects::service::Protocol;
use swarm_core::store::WatchError;
use swarm_core::{Event, ObjectKind, SharedStore, WatchFilter};
use tokio::task::JoinHandle;

use super::route::Route;
use super::table::{RouteChange, RouteTable};
use super::{tcp, udp, PortKey, Shared};

fn filter() -> WatchFilter {
    WatchFilter::kinds(&[ObjectKind::Service, ObjectKind::Task])
}

/// Runs until `shared.stop` is set or the store is dropped.
pub(crate) async fn run(shared: Arc<Shared>, store: SharedStore) {
    let mut stop = shared.stop.subscribe();
    let mut table = RouteTable::new();
    let mut listeners: HashMap<PortKey, JoinHandle<()>> = HashMap::new();
    let ((), mut watcher) = store.view_and_watch(filter(), |s| table.handle_reset(s));
    loop {
        apply(&shared, &mut listeners, table.poll_changes()).await;
        let events = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            r = watcher.recv_many() => r,
        };
        match events {
            Ok(events) if !events.iter().any(|e| matches!(e, Event::Reset { .. })) => {
                for e in &events {
                    table.handle_event(e);
                }
            }
            Ok(_) | Err(WatchError::Lagged) => {
                tracing::debug!("routing mesh: store reset or watch lagged; re-reading the store");
                let ((), w) = store.view_and_watch(filter(), |s| table.handle_reset(s));
                watcher = w;
            }
            Err(WatchError::Closed) => break,
        }
    }
    shared.lock_routes().clear();
    for (_, h) in listeners {
        h.abort();
        let _ = h.await;
    }
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
