//! Fuzzes the WAL segment decoder (header, frames, torn-tail detection) and the sealed entry
//! decoder behind it: any bytes must give a typed answer, never a panic or an unbounded allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    swarm_raft::fuzzing::wal_segment(data);
});
