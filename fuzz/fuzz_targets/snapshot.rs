//! Fuzzes the snapshot file decoder (header, sealed chunks) and the snapshot payload decoder: any
//! bytes must give a typed answer, never a panic or an unbounded allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    swarm_raft::fuzzing::snapshot(data);
});
