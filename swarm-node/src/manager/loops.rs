//! The leader-only loops: swarm-sched's [`Orchestrator`] and [`Scheduler`], driven exactly as their
//! driver contracts say.
//!
//! While this manager is the raft leader, one task:
//! 1. subscribes with `view_and_watch` and, under that view, resets the scheduler; the orchestrator
//!    is told it became leader (its first tick is a full pass);
//! 2. feeds every store event, in order, to both;
//! 3. whenever events were drained (after commit markers) or the orchestrator's `next_deadline`
//!    passed, ticks the orchestrator and proposes its actions (in batches of 200); then polls the
//!    scheduler and proposes its placements. A refused orchestrator proposal calls
//!    `handle_commit_failed`; a refused scheduler proposal calls `handle_rejected`;
//! 4. on `Reset` or a lagged watch, resubscribes and resets.
//!
//! Losing leadership ends the task; becoming leader again starts a fresh one.

use std::sync::Arc;
use std::time::Duration;

use swarm_core::proposer::propose_in_batches;
use swarm_core::{Clock, Event, Proposer, SharedStore, StoreAction, WatchFilter, Watcher};
use swarm_raft::RaftNode;
use swarm_sched::{Orchestrator, Scheduler};
use tokio::sync::watch;

/// Runs the loops whenever `raft` is leader, until `stop` is set.
pub(crate) async fn supervise(
    raft: RaftNode,
    store: SharedStore,
    clock: Arc<dyn Clock>,
    entropy: swarm_core::Entropy,
    mut stop: watch::Receiver<bool>,
) {
    let mut status = raft.watch_status();
    loop {
        // Wait until this node leads.
        while !status.current().leads() {
            tokio::select! {
                alive = status.changed() => if !alive { return },
                _ = stop.wait_for(|s| *s) => return,
            }
        }
        tracing::info!("this manager leads: starting the orchestrator and the scheduler");
        let lost = async {
            while status.changed().await {
                if !status.current().leads() {
                    return;
                }
            }
        };
        let metered = crate::metrics::MeteredProposer::new(Arc::new(raft.clone()));
        let run = run_loops(&metered, &store, clock.as_ref(), entropy.clone());
        tokio::select! {
            () = run => {}
            () = lost => tracing::info!("leadership lost: loops stopped"),
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// What the last wait ended with.
enum Wake {
    Events(Vec<Event>),
    Lagged,
    Deadline,
}

async fn run_loops(
    proposer: &dyn Proposer,
    store: &SharedStore,
    clock: &dyn Clock,
    mut entropy: swarm_core::Entropy,
) {
    // The store must hold the whole log before the first decision: an orchestrator batch of
    // the previous leader that is in this log commits with this term's first entry, and a tick
    // that read the store before it was applied would create the same slots' tasks again
    // (defect 9 of docs/SIMULATION.md: every slot of a service running twice).
    settle(proposer).await;
    let mut orch = Orchestrator::new();
    let mut sched = Scheduler::new();
    orch.handle_became_leader();
    let ((), mut watcher) = store.view_and_watch(WatchFilter::all(), |s| sched.handle_reset(s));
    // Whether commits arrived since the last tick. The orchestrator's contract is a tick after
    // every commit, not only when `has_work` says so: a delayed start waiting for an old task to
    // stop, or a rolling update waiting for its new task to run, is advanced by a tick after the
    // task's status changes, and such an event marks no work.
    let mut committed = true;
    loop {
        // Drain whatever is queued before deciding (events only mark work).
        match watcher.drain() {
            Ok(events) => {
                committed |= !events.is_empty();
                feed(&mut orch, &mut sched, &events);
            }
            Err(_) => resubscribe(store, &mut watcher, &mut orch, &mut sched),
        }
        if sched.needs_reset() {
            store.view(|s| sched.handle_reset(s));
        }
        let now = clock.now();
        let due = orch.next_deadline().is_some_and(|d| d <= now);
        if committed || orch.has_work() || due {
            committed = false;
            let actions = store.view(|s| orch.tick(s, now, &mut entropy));
            if !actions.is_empty() {
                if let Err(e) = propose_in_batches(proposer, actions).await {
                    tracing::warn!(error = %e, "orchestrator proposal failed; the next tick re-reads the store once it holds the whole log");
                    orch.handle_commit_failed();
                    pause_after_failure(&e).await;
                    // The failed batch may still commit: the re-read must see it if it does.
                    settle(proposer).await;
                }
                continue;
            }
        }
        if sched.has_work() {
            let actions = sched.poll_actions(clock.now());
            if !actions.is_empty() {
                propose_placements(proposer, store, &mut sched, actions).await;
                continue;
            }
        }
        match wait(&watcher, &orch, clock).await {
            Wake::Events(events) => {
                committed |= !events.is_empty();
                feed(&mut orch, &mut sched, &events);
            }
            Wake::Lagged => resubscribe(store, &mut watcher, &mut orch, &mut sched),
            Wake::Deadline => {}
        }
    }
}

fn feed(orch: &mut Orchestrator, sched: &mut Scheduler, events: &[Event]) {
    for e in events {
        orch.handle_event(e);
        sched.handle_event(e);
    }
}

fn resubscribe(
    store: &SharedStore,
    watcher: &mut Watcher,
    orch: &mut Orchestrator,
    sched: &mut Scheduler,
) {
    tracing::warn!("the loops' store watch lagged: resubscribing with a full pass");
    let ((), w) = store.view_and_watch(WatchFilter::all(), |s| sched.handle_reset(s));
    *watcher = w;
    orch.handle_commit_failed();
}

async fn wait(watcher: &Watcher, orch: &Orchestrator, clock: &dyn Clock) -> Wake {
    let sleep = match orch.next_deadline() {
        Some(d) => Duration::from_nanos(d.0.saturating_sub(clock.now().0)),
        // Nothing timed: wake up once a minute anyway (cheap, and bounds any missed wake-up).
        None => Duration::from_secs(60),
    };
    tokio::select! {
        r = watcher.recv_many() => match r {
            Ok(events) => Wake::Events(events),
            Err(_) => Wake::Lagged,
        },
        _ = tokio::time::sleep(sleep) => Wake::Deadline,
    }
}

/// Proposes the scheduler's placements chunk by chunk; a refused chunk is handed back.
async fn propose_placements(
    proposer: &dyn Proposer,
    store: &SharedStore,
    sched: &mut Scheduler,
    actions: Vec<StoreAction>,
) {
    for chunk in swarm_core::action::split_into_batches(actions) {
        let placed = chunk.len() as u64;
        match proposer.propose(chunk.clone()).await {
            Ok(_) => crate::metrics::global().scheduler_placements.inc_by(placed),
            Err(e) => {
                tracing::debug!(error = %e, "scheduler proposal refused; those tasks are retried");
                store.view(|s| sched.handle_rejected(s, &chunk));
                pause_after_failure(&e).await;
            }
        }
    }
}

/// Backs off after a refused proposal so that a refusal that repeats (a stopped raft, or a store
/// rule the loops keep breaking) cannot spin the loop: briefly after a conflict, which the next
/// tick usually resolves, longer otherwise.
/// Returns once the store holds every entry of this leader's log ([`Proposer::settle`]), trying
/// again while it cannot tell (no quorum). While this node does not lead it keeps waiting: the
/// supervisor stops these loops when leadership is lost.
async fn settle(proposer: &dyn Proposer) {
    while let Err(e) = proposer.settle().await {
        tracing::debug!(error = %e, "waiting for the store to hold the whole log");
        pause_after_failure(&e).await;
    }
}

async fn pause_after_failure(e: &swarm_core::CommitError) {
    let pause = match e {
        swarm_core::CommitError::Rejected(_) => Duration::from_millis(10),
        _ => Duration::from_millis(200),
    };
    tokio::time::sleep(pause).await;
}
