//! Conformance cases for cancel-safety, bounded stops and `recover` (contract clauses 9-11).
//!
//! "Nothing left" is checked through [`Runtime::recover`], the runtime's inventory of what it
//! holds for a node, found in the world (a leaked container would be found, adopted and listed).
//! Each case uses a node id of its own, so cases sharing a runtime or an engine never see each
//! other's tasks.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use swarm_core::Id;

use super::{unique_id, Behaviour, Fixture, Probe};
use crate::runtime::{Runtime, RuntimeState, TaskConfig};

/// Upper bound on any single step (the contract's own bounds are shorter).
const STEP: Duration = Duration::from_secs(30);

async fn step<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what} did not finish within {STEP:?}"),
    }
}

/// Where a lifecycle future is dropped.
#[derive(Clone, Copy, Debug)]
enum Cut {
    /// After this many polls.
    Polls(usize),
    /// After this long.
    After(Duration),
    /// Never: the call completes.
    Never,
}

const CUTS: &[Cut] = &[
    Cut::Polls(1),
    Cut::Polls(2),
    Cut::Polls(4),
    Cut::After(Duration::from_millis(1)),
    Cut::After(Duration::from_millis(10)),
    Cut::After(Duration::from_millis(50)),
    Cut::After(Duration::from_millis(200)),
    Cut::Never,
];

/// Runs `f` until `cut`; `Some(output)` when it completed first.
async fn run_until<F: Future>(f: F, cut: Cut) -> Option<F::Output> {
    let mut f = pin!(f);
    match cut {
        Cut::Polls(n) => {
            for _ in 0..n {
                let polled = std::future::poll_fn(|cx| Poll::Ready(f.as_mut().poll(cx))).await;
                if let Poll::Ready(v) = polled {
                    return Some(v);
                }
                tokio::task::yield_now().await;
            }
            None
        }
        Cut::After(d) => tokio::time::timeout(d, f).await.ok(),
        Cut::Never => Some(step("the uncut call", f).await),
    }
}

fn config(f: &dyn Fixture, b: &Behaviour) -> TaskConfig {
    let mut c = TaskConfig::new(unique_id(), "conformance", f.spec(b));
    c.node_id = unique_id();
    c.container.stop_grace_period = Some(Duration::from_secs(10));
    c
}

/// The tasks `recover` lists for `node`.
async fn inventory(rt: &dyn Runtime, node: &Id) -> Vec<(Id, RuntimeState)> {
    step("recover", rt.recover(node))
        .await
        .expect("recover")
        .into_iter()
        .map(|r| (r.task, r.state))
        .collect()
}

async fn assert_nothing_left(rt: &dyn Runtime, c: &TaskConfig, what: &str) {
    let left = inventory(rt, &c.node_id).await;
    assert!(
        left.iter().all(|(t, _)| *t != c.task_id),
        "{what}: the runtime still holds the task after remove: {left:?}"
    );
}

/// A `prepare` dropped at any point leaves nothing `remove` cannot free; a completed one is
/// listed by `recover` until removed.
pub async fn cancelled_prepare_leaves_nothing(f: &dyn Fixture) {
    let rt = f.runtime();
    for cut in CUTS {
        let c = config(f, &Behaviour::RunForever);
        let done = run_until(rt.prepare(&c), *cut).await;
        if let Some(r) = done {
            r.expect("prepare");
            let held = inventory(&*rt, &c.node_id).await;
            assert!(
                held.contains(&(c.task_id, RuntimeState::Created)),
                "a prepared task is listed by recover as created: {held:?}"
            );
        }
        step("remove", rt.remove(&c.task_id)).await.expect("remove");
        assert_nothing_left(&*rt, &c, &format!("prepare cut at {cut:?}")).await;
    }
}

/// A `start` dropped at any point leaves a task that is either not started or running with its
/// exit observed: `shutdown` and `wait` return, `remove` frees it.
pub async fn cancelled_start_leaves_an_observed_task(f: &dyn Fixture) {
    let rt = f.runtime();
    for cut in CUTS {
        let c = config(f, &Behaviour::RunForever);
        step("prepare", rt.prepare(&c)).await.expect("prepare");
        if let Some(r) = run_until(rt.start(&c.task_id), *cut).await {
            r.expect("start");
        }
        let state = step("inspect", rt.inspect(&c.task_id))
            .await
            .expect("inspect")
            .state;
        step("shutdown", rt.shutdown(&c.task_id))
            .await
            .expect("shutdown");
        if state == RuntimeState::Running {
            step("wait after shutdown", rt.wait(&c.task_id))
                .await
                .expect("wait");
        }
        step("remove", rt.remove(&c.task_id)).await.expect("remove");
        assert_nothing_left(&*rt, &c, &format!("start cut at {cut:?}")).await;
    }
}

/// A task that exits at once, racing its own `start`, still reports its exit code.
pub async fn exit_during_start_is_reported(f: &dyn Fixture) {
    let rt = f.runtime();
    let c = config(
        f,
        &Behaviour::Exit {
            code: 3,
            after: Duration::ZERO,
        },
    );
    step("prepare", rt.prepare(&c)).await.expect("prepare");
    step("start", rt.start(&c.task_id)).await.expect("start");
    let exit = step("wait", rt.wait(&c.task_id)).await.expect("wait");
    assert_eq!(
        exit.code, 3,
        "the exit code of a task that exited during start"
    );
    step("remove", rt.remove(&c.task_id)).await.expect("remove");
    assert_nothing_left(&*rt, &c, "exited task").await;
}

/// `recover` lists the node's tasks with their state, and never another node's.
pub async fn recover_lists_this_nodes_tasks_only(f: &dyn Fixture) {
    let rt = f.runtime();
    let mine = config(f, &Behaviour::RunForever);
    let other = config(f, &Behaviour::RunForever);
    for c in [&mine, &other] {
        step("prepare", rt.prepare(c)).await.expect("prepare");
        step("start", rt.start(&c.task_id)).await.expect("start");
    }
    let held = inventory(&*rt, &mine.node_id).await;
    assert_eq!(held, vec![(mine.task_id, RuntimeState::Running)]);
    for c in [&mine, &other] {
        step("remove", rt.remove(&c.task_id)).await.expect("remove");
    }
    assert_nothing_left(&*rt, &mine, "removed task").await;
}

/// A second instance of the adapter (a restarted daemon) adopts a running task through
/// `recover`: it reports it running, serves its logs and exec, stops it with its stop signal and
/// sees its exit, and frees it. Runs only for adapters whose fixture offers a second instance.
pub async fn recover_adopts_a_running_task(f: &dyn Fixture) {
    let Some(second) = f.second_instance() else {
        return;
    };
    let rt = f.runtime();
    let c = config(f, &Behaviour::Print("adopt-me".into()));
    step("prepare", rt.prepare(&c)).await.expect("prepare");
    step("start", rt.start(&c.task_id)).await.expect("start");
    let held = inventory(&*second, &c.node_id).await;
    assert_eq!(held, vec![(c.task_id, RuntimeState::Running)]);
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let logs = second.logs(&c.task_id, None).await.expect("logs");
        if logs.iter().any(|l| l.line == "adopt-me") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the adopted task's output never showed: {logs:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = step(
        "exec",
        second.exec(&c.task_id, &f.probe(&Probe::Succeed), STEP),
    )
    .await
    .expect("exec in the adopted task");
    assert_eq!(r.exit_code, 0);
    step("shutdown", second.shutdown(&c.task_id))
        .await
        .expect("shutdown");
    let exit = step("wait", second.wait(&c.task_id)).await.expect("wait");
    assert!(!exit.success(), "stopped by its stop signal: {exit:?}");
    step("remove", second.remove(&c.task_id))
        .await
        .expect("remove");
    step("remove", rt.remove(&c.task_id)).await.expect("remove");
    assert_nothing_left(&*second, &c, "adopted task").await;
}

/// A second instance adopts a task that exited before it looked (the node was down when it
/// ended): `recover` lists it exited and `wait` reports its exit code.
pub async fn recover_adopts_an_exited_task(f: &dyn Fixture) {
    let Some(second) = f.second_instance() else {
        return;
    };
    let rt = f.runtime();
    let c = config(
        f,
        &Behaviour::Exit {
            code: 3,
            after: Duration::ZERO,
        },
    );
    step("prepare", rt.prepare(&c)).await.expect("prepare");
    step("start", rt.start(&c.task_id)).await.expect("start");
    assert_eq!(
        step("wait", rt.wait(&c.task_id)).await.expect("wait").code,
        3
    );
    let held = inventory(&*second, &c.node_id).await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert!(
        matches!(held[0], (t, RuntimeState::Exited(e)) if t == c.task_id && e.code == 3),
        "{held:?}"
    );
    let exit = step("wait", second.wait(&c.task_id)).await.expect("wait");
    assert_eq!(exit.code, 3, "the adopted task's exit code");
    step("remove", second.remove(&c.task_id))
        .await
        .expect("remove");
    step("remove", rt.remove(&c.task_id)).await.expect("remove");
    assert_nothing_left(&*second, &c, "adopted exited task").await;
}
