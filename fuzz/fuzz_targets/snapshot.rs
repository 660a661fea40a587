//! Fuzzes the snapshot file decoder (header, sealed chunks) and the snapshot payload decoder: any
//! bytes must give a typed answer, never a panic or an unbounded allocation. The input is also
//! read as header fields and chunk plaintexts by `swarm_raft::fuzzing::build_snapshot`, which
//! writes valid checksums and seals, so the fuzzer reaches the chunk-place and length rules and
//! the payload decoder behind them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    swarm_raft::fuzzing::snapshot(data);
});
