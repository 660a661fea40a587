//! swarm-core store benchmarks: task status updates with 100 000 tasks stored, snapshot /
//! restore of 100 000 tasks, and how fill and restore scale from 10 000 to 1 000 000 tasks.
//!
//! Run: `cargo bench -p swarm-benches --bench core_store` (`-- store_scale` for the scaling rows;
//! the 1M rows need about 6 GiB of memory; `-- service_ls` for the `service ls` counts).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode, Throughput};
use swarm_core::action::{Batch, StoreAction};
use swarm_core::testing::{id, typical_task};
use swarm_core::{Object, Store, StoreSnapshot, Task, TaskState, Timestamp};

const TASKS: u128 = 100_000;
const BATCH: usize = 200;

fn store_with_tasks() -> Store {
    let mut st = Store::new();
    let svc = id(7);
    let mut index = 0;
    let mut actions = Vec::with_capacity(BATCH);
    for n in 0..TASKS {
        actions.push(StoreAction::Create(
            typical_task(1 + n, svc, Some(id(10_000 + n % 1000))).into(),
        ));
        if actions.len() == BATCH {
            index += 1;
            st.apply(Batch {
                index,
                timestamp: Timestamp::from_secs(index),
                actions: std::mem::take(&mut actions),
            })
            .expect("fixture applies");
        }
    }
    st
}

/// Status updates as an agent reports them: same state, new timestamp and message.
fn status_batch(st: &Store, start: u128, now: Timestamp) -> Vec<StoreAction> {
    (0..BATCH as u128)
        .map(|i| {
            let tid = id(1 + (start + i) % TASKS);
            let mut t: Task = (**st.get::<Task>(&tid).expect("task exists")).clone();
            t.status.timestamp = now;
            t.status.message = "started".into();
            StoreAction::Update(Object::Task(Arc::new(t)))
        })
        .collect()
}

fn bench_status_updates(c: &mut Criterion) {
    let mut st = store_with_tasks();
    let mut g = c.benchmark_group("store_apply");
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut cursor = 0u128;
    g.bench_function("task_status_updates_100k_stored_batch_200", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let index = st.index() + 1;
                let actions = status_batch(&st, cursor, Timestamp::from_secs(index));
                cursor += BATCH as u128;
                let batch = Batch {
                    index,
                    timestamp: Timestamp::from_secs(index),
                    actions,
                };
                let t0 = Instant::now();
                st.apply(black_box(batch)).expect("fresh versions apply");
                total += t0.elapsed();
            }
            total
        })
    });
    g.finish();
}

fn bench_snapshot(c: &mut Criterion) {
    let st = store_with_tasks();
    let mut g = c.benchmark_group("store_snapshot_100k_tasks");
    g.sample_size(10);
    g.bench_function("snapshot_and_encode", |b| {
        b.iter(|| black_box(st.snapshot().encode()))
    });
    let bytes = st.snapshot().encode();
    println!("snapshot of 100k typical tasks: {} bytes", bytes.len());
    g.bench_function("decode_and_restore", |b| {
        b.iter_batched(
            Store::new,
            |mut fresh| {
                let snap = StoreSnapshot::decode(&bytes, 1 << 32).expect("decodes");
                fresh.restore(snap);
                fresh
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// `n` typical tasks (each its own spec copy, 1 000 nodes), as create actions in batches of 200.
fn create_batches(n: u128) -> Vec<Batch> {
    let svc = id(7);
    let mut out = Vec::with_capacity((n as usize).div_ceil(BATCH));
    let mut actions = Vec::with_capacity(BATCH);
    for k in 0..n {
        actions.push(StoreAction::Create(
            typical_task(1 + k, svc, Some(id(10_000 + k % 1000))).into(),
        ));
        if actions.len() == BATCH || k + 1 == n {
            let index = out.len() as u64 + 1;
            out.push(Batch {
                index,
                timestamp: Timestamp::from_secs(index),
                actions: std::mem::take(&mut actions),
            });
        }
    }
    out
}

/// Fill (every create batch applied to an empty store) and restore (decode a snapshot and rebuild
/// every index) of 10k, 100k and 1M tasks. Criterion reports the time per task (throughput =
/// tasks); linear scaling means equal per-task figures. Building the batches and dropping the
/// stores are outside the timed region.
fn bench_scale(c: &mut Criterion) {
    let mut g = c.benchmark_group("store_scale");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1));
    for (name, n) in [("10k", 10_000u128), ("100k", 100_000), ("1M", 1_000_000)] {
        g.throughput(Throughput::Elements(n as u64));
        g.measurement_time(Duration::from_secs(if n >= 1_000_000 { 20 } else { 5 }));
        g.bench_function(format!("fill/{name}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let batches = create_batches(n);
                    let mut st = Store::new();
                    let t0 = Instant::now();
                    for batch in batches {
                        st.apply(batch).expect("fixture applies");
                    }
                    total += t0.elapsed();
                    drop(black_box(st));
                }
                total
            })
        });
        let bytes = {
            let mut st = Store::new();
            for batch in create_batches(n) {
                st.apply(batch).expect("fixture applies");
            }
            st.snapshot().encode()
        };
        g.bench_function(format!("restore/{name}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut st = Store::new();
                    let t0 = Instant::now();
                    let snap = StoreSnapshot::decode(&bytes, 1 << 36).expect("decodes");
                    st.restore(snap);
                    total += t0.elapsed();
                    drop(black_box(st));
                }
                total
            })
        });
    }
    g.finish();
}

/// `docker service ls` counts (running / desired) of 100 services of 1 000 running tasks each:
/// from the store's per-service counts, and by walking every task of each service (what
/// `service ls` did before the counts existed).
fn bench_service_counts(c: &mut Criterion) {
    const SERVICES: u128 = 100;
    const PER: u128 = 1_000;
    let mut st = Store::new();
    for s in 0..SERVICES {
        let actions = (0..PER)
            .map(|i| {
                let mut t = typical_task(1 + s * PER + i, id(1_000_000 + s), None);
                t.status.state = TaskState::Running;
                StoreAction::Create(t.into())
            })
            .collect();
        st.apply(Batch {
            index: st.index() + 1,
            timestamp: Timestamp::from_secs(1),
            actions,
        })
        .expect("fixture applies");
    }
    let services: Vec<_> = (0..SERVICES).map(|s| id(1_000_000 + s)).collect();
    let mut g = c.benchmark_group("service_ls_100_services_100k_tasks");
    g.bench_function("task_counts", |b| {
        b.iter(|| {
            let running: u64 = services
                .iter()
                .map(|s| st.task_counts(s, None).running)
                .sum();
            assert_eq!(running, (SERVICES * PER) as u64);
            black_box(running)
        })
    });
    g.bench_function("walk_tasks", |b| {
        b.iter(|| {
            let running: u64 = services
                .iter()
                .map(|s| {
                    st.tasks_by_service(s)
                        .filter(|t| t.status.state == TaskState::Running)
                        .count() as u64
                })
                .sum();
            assert_eq!(running, (SERVICES * PER) as u64);
            black_box(running)
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_status_updates,
    bench_snapshot,
    bench_scale,
    bench_service_counts
);
criterion_main!(benches);
