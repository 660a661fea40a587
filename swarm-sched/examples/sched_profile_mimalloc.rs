//! `sched_profile` with mimalloc as the global allocator, to measure what the allocator changes.
//!
//! Run: `cargo run --release -p swarm-sched --features testing --example sched_profile_mimalloc -- NODES TASKS [ROUNDS] [third]`

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "sched_profile.rs"]
mod profile;

fn main() {
    profile::main();
}
