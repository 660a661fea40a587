//! Fuzzes the placement-preference parsers: they must never panic, and whatever they accept must
//! parse back from its descriptor unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarm_core::placement::SpreadPreference;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let parsed = [
            SpreadPreference::parse(s),
            SpreadPreference::parse_descriptor(s),
        ];
        for p in parsed.into_iter().flatten() {
            let again = SpreadPreference::parse_descriptor(&p.descriptor());
            assert_eq!(again, Ok(p), "input {s:?}");
        }
    }
});
