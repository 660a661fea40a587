//! Fuzzes the join-token parser (`SWMTKN-1-...`): any bytes give a token or a typed error, never a
//! panic, and every accepted token prints back to the same text. The check lives in
//! `swarm_net::fuzzing::join_token`, which `swarm-net/tests/fuzz_corpus.rs` replays.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| swarm_net::fuzzing::join_token(data));
