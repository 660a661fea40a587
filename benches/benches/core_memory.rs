//! Heap per stored task, measured with a counting allocator (not a criterion benchmark: it prints).
//!
//! Run: `cargo bench -p swarm-benches --bench core_memory`
//!
//! Each task is the "typical task" (image, 3 env vars, 1 secret reference, 1 constraint) with its
//! own copy of the spec, as if every task came from a different service version: the worst case. Tasks
//! created by the orchestrators from one service version share one `Arc<TaskSpec>`, which is also
//! measured.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;

use swarm_core::action::{Batch, StoreAction};
use swarm_core::testing::{id, typical_task};
use swarm_core::{Store, Timestamp};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const N: u128 = 100_000;

fn fill(shared_spec: bool) -> (Store, isize) {
    let before = LIVE.load(Ordering::Relaxed);
    let mut st = Store::new();
    let template = typical_task(0, id(7), None);
    let mut actions = Vec::new();
    let mut index = 0;
    for n in 0..N {
        let mut t = typical_task(1 + n, id(7), Some(id(10_000 + n % 1000)));
        if shared_spec {
            t.spec = Arc::clone(&template.spec);
        }
        actions.push(StoreAction::Create(t.into()));
        if actions.len() == 200 {
            index += 1;
            st.apply(Batch {
                index,
                timestamp: Timestamp::from_secs(index),
                actions: std::mem::take(&mut actions),
            })
            .expect("applies");
        }
    }
    drop(template);
    let used = LIVE.load(Ordering::Relaxed) - before;
    (st, used)
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    for shared in [false, true] {
        let (st, used) = fill(shared);
        println!(
            "heap per stored task ({}): {} bytes ({} tasks, {:.1} MiB total, indexes included)",
            if shared {
                "spec shared per service version"
            } else {
                "own spec copy per task"
            },
            used / N as isize,
            N,
            used as f64 / (1024.0 * 1024.0)
        );
        drop(st);
    }
}
