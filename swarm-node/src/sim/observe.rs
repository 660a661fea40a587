//! The observer on each manager host: samples the manager's raft status and store at every change
//! (a raft status change or a batch applied, and at least every second) and feeds the running
//! invariants and the trace. It follows the manager across the daemon's own restarts of it (a
//! join, an unlock) by fetching it again when its watches end.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use swarm_core::WatchFilter;

use super::cluster::{lock, Shared};
use super::invariants::ManagerSample;
use super::trace;
use crate::daemon::Daemon;

/// How often the observer looks again when nothing changed, or while no manager runs.
const IDLE: Duration = Duration::from_secs(1);

/// Runs until the host's process ends (it is a task of that process).
pub(crate) async fn observe(daemon: Arc<Daemon>, shared: Arc<Shared>, host: String) {
    let mut last: Option<(u64, u64, bool, u64)> = None;
    loop {
        let parts = daemon
            .with_manager(|m, _| (m.raft().clone(), m.store().clone()))
            .await;
        let Some((raft, store)) = parts else {
            tokio::time::sleep(IDLE).await;
            continue;
        };
        let mut status = raft.watch_status();
        let watcher = store.watch(WatchFilter::all());
        loop {
            let st = status.current();
            let at = trace::now();
            let (index, digest) = store.view(|s| {
                let digest: [u8; 32] = Sha256::digest(s.snapshot().encode()).into();
                let sample = ManagerSample {
                    host: &host,
                    at,
                    raft: &st,
                    store: s,
                    digest,
                };
                lock(&shared.checks).on_sample(&sample);
                (s.index(), digest)
            });
            let key = (st.term, index, st.leads(), st.id);
            if last != Some(key) {
                last = Some(key);
                let what = format!(
                    "term={} leader={:?} leads={} index={index} store={}",
                    st.term,
                    st.leader,
                    st.leads(),
                    hex8(&digest)
                );
                shared.event(&host, &what);
            }
            tokio::select! {
                alive = status.changed() => if !alive { break },
                got = watcher.recv_many() => if got.is_err() { break },
                _ = tokio::time::sleep(IDLE) => {
                    // The manager may have been replaced (a join finished, a restart).
                    let same = daemon
                        .with_manager(|m, _| m.raft().status().id == st.id)
                        .await
                        .unwrap_or(false);
                    if !same {
                        break;
                    }
                }
            }
        }
    }
}

/// The first 8 hex digits of a digest (enough to tell states apart in a trace).
fn hex8(d: &[u8; 32]) -> String {
    d[..4].iter().map(|b| format!("{b:02x}")).collect()
}
