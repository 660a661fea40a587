//! The observer on each manager host: samples the manager's raft status and store at every change
//! (a raft status change or a batch applied, and at least every second) and feeds the running
//! invariants and the trace. It follows the manager across the daemon's own restarts of it (a
//! join, an unlock) by fetching it again when its watches end.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use swarm_core::{StoreSnapshot, WatchFilter};

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
            // A sample whose term, leadership, raft id and applied index are those of the last
            // one sees the same state: every invariant reads only these of the raft status, and
            // the store changes only by applying a batch or a snapshot, which moves its index.
            // Skipping it (raft's status changes with every replication step) saves encoding
            // and hashing the whole store again.
            let key = (st.term, store.index(), st.leads(), st.id);
            if last != Some(key) {
                let at = trace::now();
                let (index, digest) = store.view(|s| {
                    let snapshot = s.snapshot();
                    let digest: [u8; 32] = Sha256::digest(snapshot.encode()).into();
                    let replay = replay_digest(snapshot);
                    let sample = ManagerSample {
                        host: &host,
                        at,
                        raft: &st,
                        store: s,
                        digest,
                    };
                    lock(&shared.checks).on_sample(&sample);
                    (s.index(), replay)
                });
                last = Some((st.term, index, st.leads(), st.id));
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

/// The digest of a store state as the trace records it: SHA-256 of the snapshot encoding with
/// the byte strings that are random by design blanked. ring draws keys and ECDSA nonces from the
/// operating system (it takes no caller RNG), so the root CA's certificate and key, the join
/// tokens (which pin the certificate's digest) and every node's CSR and certificate chain differ
/// from run to run whatever the seed. Everything else (ids, specs, versions, timestamps, task
/// states) is covered. `stores_agree` compares the full digest, of every byte.
fn replay_digest(mut snapshot: StoreSnapshot) -> [u8; 32] {
    for cluster in &mut snapshot.clusters {
        let root = &mut Arc::make_mut(cluster).root_ca;
        root.ca_cert_pem.clear();
        root.ca_cert_digest.clear();
        root.join_tokens = Default::default();
        root.ca_key = None;
        root.root_rotation = None;
    }
    for node in &mut snapshot.nodes {
        if let Some(cert) = &mut Arc::make_mut(node).certificate {
            cert.csr.clear();
            cert.chain.clear();
        }
    }
    Sha256::digest(snapshot.encode()).into()
}

/// The first 8 hex digits of a digest (enough to tell states apart in a trace).
fn hex8(d: &[u8; 32]) -> String {
    d[..4].iter().map(|b| format!("{b:02x}")).collect()
}
