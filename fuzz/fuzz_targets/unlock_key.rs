//! Fuzzes the unlock-key parser (`SWMKEY-1-...`): any bytes give a key or a typed error, never a
//! panic, and every accepted key survives format + parse. The check lives in
//! `swarm_secrets::fuzzing::unlock_key`, which `swarm-secrets/tests/fuzz_corpus.rs` replays.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| swarm_secrets::fuzzing::unlock_key(data));
