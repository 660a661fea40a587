//! Fuzzes `parse_duration`: it must never panic, and whatever it accepts must survive
//! `format_duration` and a second parse unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarm_core::duration::{format_duration, parse_duration};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(d) = parse_duration(s) {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "input {s:?}");
        }
    }
});
