//! Fuzzes the Docker API's request-body decoding: any bytes, as the body of every endpoint that
//! has one (service, secret, config, network, node, swarm specs; init and unlock requests), are
//! decoded with Go's case-insensitive keys, converted and validated; never a panic, and every body
//! that decodes survives serialize + decode. The check lives in `swarm_node::fuzzing`, which
//! `swarm-node/tests/fuzz_corpus.rs` replays.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = swarm_node::fuzzing::request_body(data);
});
