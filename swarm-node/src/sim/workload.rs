//! The driver of a run (a turmoil client): forms the cluster, runs the seeded workload while the
//! fault loop injects faults, heals everything, waits for convergence and runs the final checks.
//!
//! Cluster formation is what `docker swarm init` / `join` do: `m0` initialises, the other
//! managers and then the workers join `m0` with the tokens from its cluster object. Operations go
//! to a random manager's control layer (a follower forwards the proposal to the leader), each
//! waited for at most [`OP_TIMEOUT`] of virtual time; every outcome goes to the
//! `acked_writes` invariant.

use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::watch;

use super::cluster::{lock, Shared, PORT};
use super::faults::{self, Fault, HostRequest, MAX_LATENCY};
use super::invariants::convergence;
use super::ops;
use super::SimConfig;
use crate::backend::{Backend, InitRequest, JoinRequest};

/// Longest the driver waits for one operation (or one call while forming the cluster).
pub(crate) const OP_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest the cluster may take to form (every node ready, every manager a voter).
const FORM_TIMEOUT: Duration = Duration::from_secs(180);

/// Runs the whole scenario; see the module docs.
pub(crate) async fn drive(shared: Arc<Shared>, config: SimConfig) {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    if let Err(e) = form(&shared).await {
        shared.violation(&format!("formation: {e}"));
        return;
    }
    shared.event("driver", "cluster formed");
    let (stop, stopped) = watch::channel(false);
    let fault_rng = ChaCha8Rng::seed_from_u64(rng.gen());
    let faults = tokio::task::spawn_local(fault_loop(
        shared.clone(),
        config.clone(),
        fault_rng,
        stopped,
    ));
    let mut state = ops::State::default();
    for _ in 0..config.operations {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(500..5_000))).await;
        let op = state.next_op(&mut rng, &shared.hosts());
        let target = shared.managers[rng.gen_range(0..shared.managers.len())].clone();
        let acked = ops::run_op(&shared, &target, op.clone()).await;
        state.done(&op, acked);
    }
    let _ = stop.send(true);
    let _ = faults.await;
    heal(&shared);
    shared.event("driver", "healed");
    settle(&shared, config.heal_bound).await;
}

/// Forms the cluster: init on `m0`, then every other manager and every worker joins it.
async fn form(shared: &Arc<Shared>) -> Result<(), String> {
    let m0 = shared.managers[0].clone();
    shared
        .call(&m0, OP_TIMEOUT, |d| async move {
            d.init(InitRequest::default())
                .await
                .map_err(|e| e.to_string())
        })
        .await
        .ok_or("m0 did not answer the init")??;
    let tokens = shared
        .call(&m0, OP_TIMEOUT, |d| async move {
            let a = d.cluster().ok()?;
            a.store.view(|s| {
                s.cluster().map(|c| {
                    (
                        c.root_ca.join_tokens.manager.clone(),
                        c.root_ca.join_tokens.worker.clone(),
                    )
                })
            })
        })
        .await
        .flatten()
        .ok_or("no join tokens in m0's cluster object")?;
    let remote = format!("{}:{PORT}", turmoil::lookup(m0.as_str()));
    let joiners = shared.managers[1..]
        .iter()
        .map(|m| (m, &tokens.0))
        .chain(shared.workers.iter().map(|w| (w, &tokens.1)));
    for (host, token) in joiners {
        let mut tries = 0;
        loop {
            let req = JoinRequest {
                remote_addrs: vec![remote.clone()],
                join_token: zeroize::Zeroizing::new(token.clone()),
                ..JoinRequest::default()
            };
            let got = shared
                .call(host, OP_TIMEOUT, |d| async move {
                    d.join(req).await.map_err(|e| e.to_string())
                })
                .await;
            match got {
                Some(Ok(())) => break,
                other => {
                    tries += 1;
                    shared.event("driver", &format!("join of {host} failed: {other:?}"));
                    if tries == 5 {
                        return Err(format!("{host} could not join: {other:?}"));
                    }
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
        shared.event("driver", &format!("{host} joined"));
    }
    let total = shared.managers.len() + shared.workers.len();
    let managers = shared.managers.len();
    let deadline = tokio::time::Instant::now() + FORM_TIMEOUT;
    loop {
        let ready = shared
            .call(&m0, OP_TIMEOUT, move |d| async move {
                let (voters, store) = d
                    .with_manager(|m, _| (m.raft().status().voters.len(), m.store().clone()))
                    .await?;
                let ready = store.view(|s| {
                    s.iter::<swarm_core::Node>()
                        .filter(|n| n.status.state == swarm_core::objects::node::NodeState::Ready)
                        .count()
                });
                Some(voters == managers && ready == total)
            })
            .await
            .flatten()
            .unwrap_or(false);
        if ready {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "not every node ready and every manager a voter after {FORM_TIMEOUT:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Injects faults until `stop`, one at a time, healing each before the next.
async fn fault_loop(
    shared: Arc<Shared>,
    config: SimConfig,
    mut rng: ChaCha8Rng,
    mut stop: watch::Receiver<bool>,
) {
    let hosts = shared.hosts();
    loop {
        let gap = config.faults.gap(&mut rng);
        tokio::select! {
            _ = tokio::time::sleep(gap) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let Some(fault) = config.faults.draw(&mut rng, &hosts, &shared.managers) else {
            return;
        };
        let lasts = faults::duration(&mut rng);
        shared.event("fault", &format!("inject {fault:?} for {lasts:?}"));
        inject(&shared, &hosts, &fault, true);
        tokio::select! {
            _ = tokio::time::sleep(lasts) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
        shared.event("fault", &format!("heal {fault:?}"));
        inject(&shared, &hosts, &fault, false);
        if *stop.borrow() {
            return;
        }
    }
}

/// Applies (`on`) or undoes `fault`.
fn inject(shared: &Shared, hosts: &[String], fault: &Fault, on: bool) {
    fn others<'a>(hosts: &'a [String], h: &'a String) -> impl Iterator<Item = &'a String> + 'a {
        hosts.iter().filter(move |o| *o != h)
    }
    match fault {
        Fault::Isolate(h) => {
            for o in others(hosts, h) {
                if on {
                    turmoil::partition(h.as_str(), o.as_str());
                } else {
                    turmoil::repair(h.as_str(), o.as_str());
                }
            }
        }
        Fault::MuteOutgoing(h) => {
            for o in others(hosts, h) {
                if on {
                    turmoil::partition_oneway(h.as_str(), o.as_str());
                } else {
                    turmoil::repair_oneway(h.as_str(), o.as_str());
                }
            }
        }
        Fault::DeafIncoming(h) => {
            for o in others(hosts, h) {
                if on {
                    turmoil::partition_oneway(o.as_str(), h.as_str());
                } else {
                    turmoil::repair_oneway(o.as_str(), h.as_str());
                }
            }
        }
        Fault::Crash(h, seed) => shared.request(if on {
            HostRequest::Crash(h.clone(), *seed)
        } else {
            HostRequest::Restart(h.clone())
        }),
        Fault::Duplicate(rate, seed) => {
            swarm_net::sim::set_duplication(if on { *rate } else { 0.0 }, *seed)
        }
        Fault::Lossy(rate) => shared.request(HostRequest::Network {
            fail_rate: if on { *rate } else { 0.0 },
            max_latency: if on {
                Duration::from_millis(200)
            } else {
                MAX_LATENCY
            },
        }),
        // Raw OS errors 28 (`ENOSPC`) and 5 (`EIO`); `u64::MAX`: until cleared with 0.
        Fault::DiskFull(h) => shared
            .raft_disk(h)
            .fail_writes(if on { u64::MAX } else { 0 }, 28),
        Fault::FsyncErrors(h) => shared
            .raft_disk(h)
            .fail_fsyncs(if on { u64::MAX } else { 0 }, 5),
    }
}

/// Undoes every network fault (the fault loop has already restarted what it crashed).
fn heal(shared: &Shared) {
    let hosts = shared.hosts();
    for a in &hosts {
        for b in &hosts {
            if a < b {
                turmoil::repair(a.as_str(), b.as_str());
            }
        }
    }
    shared.request(HostRequest::Network {
        fail_rate: 0.0,
        max_latency: MAX_LATENCY,
    });
    swarm_net::sim::set_duplication(0.0, 0);
}

/// After healing: waits (at most `bound`) until a leader's store is converged and every manager
/// has applied as far, then checks the acknowledged writes on every manager.
async fn settle(shared: &Arc<Shared>, bound: Duration) {
    let deadline = tokio::time::Instant::now() + bound;
    let mut last_pending = Vec::new();
    let converged = loop {
        let mut leader: Option<(u64, Vec<String>)> = None;
        let mut indexes = Vec::new();
        for m in &shared.managers {
            let view = shared
                .call(m, Duration::from_secs(5), |d| async move {
                    let (leads, store) = d
                        .with_manager(|m, _| (m.raft().status().leads(), m.store().clone()))
                        .await?;
                    Some(store.view(|s| (leads, s.index(), convergence::pending(s))))
                })
                .await
                .flatten();
            if let Some((leads, index, pending)) = view {
                indexes.push(index);
                if leads {
                    leader = Some((index, pending));
                }
            }
        }
        if let Some((index, pending)) = leader {
            let caught_up =
                indexes.len() == shared.managers.len() && indexes.iter().all(|i| *i == index);
            if pending.is_empty() && caught_up {
                break true;
            }
            last_pending = pending;
        } else {
            last_pending = vec!["no manager leads".into()];
        }
        if tokio::time::Instant::now() >= deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    if converged {
        shared.event("driver", "converged");
    } else {
        shared.violation(&format!(
            "convergence: not converged {bound:?} after healing: {}",
            if last_pending.is_empty() {
                "managers not at the same index".to_string()
            } else {
                last_pending.join("; ")
            }
        ));
    }
    for m in &shared.managers {
        let host = m.clone();
        let s = shared.clone();
        let found = shared
            .call(m, Duration::from_secs(5), move |d| async move {
                let store = d.with_manager(|m, _| m.store().clone()).await?;
                Some(store.view(|st| lock(&s.checks).acked.check(&host, st)))
            })
            .await
            .flatten();
        match found {
            Some(v) => {
                for v in v {
                    shared.violation(&v);
                }
            }
            None => shared.violation(&format!("acked_writes: {m} did not answer after healing")),
        }
    }
}
