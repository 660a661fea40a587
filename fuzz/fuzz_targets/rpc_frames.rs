//! Fuzzes the RPC frame decoder (`u32` length + bincode, limit checked before allocating): any bytes
//! give frames or a typed error, never a panic, and accepted frames re-encode to the same bytes. The
//! check lives in `swarm_net::fuzzing::rpc_frames`, which `swarm-net/tests/rpc_frame.rs` replays.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| swarm_net::fuzzing::rpc_frames(data));
