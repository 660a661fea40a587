//! Fuzzes the sealed-record decoder: header peek and open (at a fixed place and at the header's own
//! place) must give a typed error or the whole plaintext, never a panic or a partial plaintext. The
//! check lives in `swarm_secrets::fuzzing::sealed_record`, which `swarm-secrets/tests/fuzz_corpus.rs`
//! replays.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| swarm_secrets::fuzzing::sealed_record(data));
