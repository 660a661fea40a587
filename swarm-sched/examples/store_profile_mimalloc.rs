//! `store_profile` with mimalloc as the global allocator.
//!
//! Run: `cargo run --release -p swarm-sched --features testing --example store_profile_mimalloc -- [ROUNDS]`

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "store_profile.rs"]
mod profile;

fn main() {
    profile::main();
}
