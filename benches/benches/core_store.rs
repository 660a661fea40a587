//! swarm-core store benchmarks: task status updates with 100 000 tasks stored, and snapshot /
//! restore of 100 000 tasks.
//!
//! Run: `cargo bench -p swarm-benches --bench core_store`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use swarm_core::action::{Batch, StoreAction};
use swarm_core::testing::{id, typical_task};
use swarm_core::{Object, Store, StoreSnapshot, Task, Timestamp};

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

criterion_group!(benches, bench_status_updates, bench_snapshot);
criterion_main!(benches);
