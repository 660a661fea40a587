//! Standalone copy of the `swarmkit/*` timed region of `benches/benches/sched_scheduler.rs`, for
//! profiling (`perf record`) and for measuring thread CPU time and page faults per phase when the
//! machine is shared (wall clock is meaningless under load).
//!
//! Run: `cargo run --release -p swarm-sched --features testing --example sched_profile -- NODES TASKS [ROUNDS] [third] [per=K] [pre=N]`
//! (`per=K`: K tasks per service, sharing their spec as the orchestrators' tasks do; default 1,
//! SwarmKit's shape; `pre=N`: N tasks placed before the region, see `main`)
//! Prints, per round, thread CPU µs per task for: the services commit (setup in the bench, shown
//! for reference), the nodes commit, the tasks commit, settle (events + placement + assignment
//! commits) and the bench's timed region (nodes + tasks + settle); and the region's minor page
//! faults.

use std::time::Instant;

use swarm_core::{Node, Object, Service, Task, TaskSpec};
use swarm_sched::testing::{labeled_node, node, service, task, tasks, Harness};
use swarm_sched::Scheduler;

fn thread_cpu_ns() -> u128 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

fn minor_faults() -> u64 {
    let s = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // Field 10 (1-based) is minflt; the command name in field 2 has no spaces here.
    s.split_whitespace()
        .nth(9)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Resident set size in MiB (`/proc/self/statm`; 0 where unavailable).
fn rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / (1024.0 * 1024.0)
}

/// `perf record --control fifo:CTL -D -1`: with `PERF_CTL=CTL` set, only the timed regions are
/// recorded (the example writes `enable` / `disable` to the control fifo around them).
fn perf_ctl(cmd: &str) {
    if let Ok(path) = std::env::var("PERF_CTL") {
        let _ = std::fs::write(path, format!("{cmd}\n"));
    }
}

fn shape(
    nodes: usize,
    count: usize,
    third: bool,
    per: usize,
) -> (Vec<Object>, Vec<Object>, Vec<Object>) {
    let nodes: Vec<Node> = (0..nodes)
        .map(|i| {
            if third && i % 3 == 0 {
                labeled_node(i as u128 + 1, &[("net", "special")])
            } else {
                node(i as u128 + 1)
            }
        })
        .collect();
    let services: Vec<Service> = (0..count.div_ceil(per))
        .map(|i| {
            let mut svc = service(1_000_000 + i as u128, per as u64);
            if third {
                svc.spec.task.placement.constraints = vec!["node.labels.net==special".into()];
            }
            svc
        })
        .collect();
    let tasks = services
        .iter()
        .enumerate()
        .flat_map(|(i, svc)| {
            if per == 1 {
                // SwarmKit's shape, built exactly as the bench builds it.
                vec![task(svc, 1, 10_000_000 + i as u128)]
            } else {
                tasks(svc, 10_000_000 + (i * per) as u128, per as u64)
            }
        })
        .take(count)
        .map(Object::from)
        .collect();
    (
        nodes.into_iter().map(Object::from).collect(),
        services.into_iter().map(Object::from).collect(),
        tasks,
    )
}

/// A deep copy of a task object (its own allocation and spec), other objects as they are.
fn fresh_copy(o: &Object) -> Object {
    match o {
        Object::Task(t) => {
            let mut copy = Task::clone(t);
            copy.spec = std::sync::Arc::new(TaskSpec::clone(&t.spec));
            Object::from(copy)
        }
        other => other.clone(),
    }
}

pub fn main() {
    let args: Vec<String> = std::env::args().collect();
    let nodes: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let count: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let rounds: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(3);
    let third = args.iter().any(|a| a == "third");
    let per: usize = args
        .iter()
        .find_map(|a| a.strip_prefix("per=")?.parse().ok())
        .unwrap_or(1)
        .max(1);
    // `pre=N`: N tasks (of their own services) placed before the region, whose work is then
    // the creation and placement of TASKS more on a cluster that already holds N (the nodes are
    // committed before the region too): how the cost of a placement grows with the tasks
    // already placed.
    let pre: Option<usize> = args
        .iter()
        .find_map(|a| a.strip_prefix("pre=")?.parse().ok());
    for round in 0..rounds {
        let (n, s, mut t) = shape(nodes, count + pre.unwrap_or(0), third, per);
        let mut h = Harness::new();
        let c0 = thread_cpu_ns();
        h.create(s);
        let c1 = thread_cpu_ns();
        h.events();
        let mut sched = Scheduler::new();
        sched.handle_reset(&h.store);
        let mut n = Some(n);
        if let Some(pre) = pre {
            h.create(n.take().unwrap_or_default());
            let rest = t.split_off(pre);
            h.create(std::mem::replace(&mut t, rest));
            h.settle(&mut sched);
            // Built afresh after the preload, as the 1k-task shapes build theirs right before
            // the region: the region's own objects are as warm as theirs.
            t = t.iter().map(fresh_copy).collect();
        }
        let wall = Instant::now();
        let f0 = minor_faults();
        let m0 = rss_mib();
        perf_ctl("enable");
        let c2 = thread_cpu_ns();
        if let Some(n) = n {
            h.create(n);
        }
        let c3 = thread_cpu_ns();
        h.create(t);
        let c4 = thread_cpu_ns();
        let m1 = rss_mib();
        let placed = h.settle(&mut sched);
        let c5 = thread_cpu_ns();
        let m2 = rss_mib();
        perf_ctl("disable");
        let f1 = minor_faults();
        let wall = wall.elapsed();
        assert!(placed > 0 && sched.stats().unassigned == 0);
        let per = |ns: u128| ns as f64 / count as f64 / 1000.0;
        println!(
            "round {round} {nodes}x{count}: (services {:.2}) nodes {:.2} tasks {:.2} settle {:.2} region {:.2} us/task (region cpu {:.1} ms, wall {:.1} ms, faults {}, rss {:.0} +{:.0} +{:.0} MiB)",
            per(c1 - c0),
            per(c3 - c2),
            per(c4 - c3),
            per(c5 - c4),
            per(c5 - c2),
            (c5 - c2) as f64 / 1e6,
            wall.as_secs_f64() * 1e3,
            f1 - f0,
            m0,
            m1 - m0,
            m2 - m1
        );
        drop(h);
        drop(sched);
    }
}
