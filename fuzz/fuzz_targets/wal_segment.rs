//! Fuzzes the WAL segment decoder (header, frames, torn-tail detection) and the sealed entry
//! decoder behind it: any bytes must give a typed answer, never a panic or an unbounded allocation.
//! The input is also read as frame bodies, lengths and indexes by
//! `swarm_raft::fuzzing::build_wal_segment`, which writes valid checksums and seals, so the
//! fuzzer reaches the index-order and torn-tail rules and the entry decoder behind the checksums.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    swarm_raft::fuzzing::wal_segment(data);
});
