//! Criterion benchmarks for the swarm crates; see `benches/` and docs/BENCHMARKS.md.
#![warn(missing_docs)]

pub mod kv;
