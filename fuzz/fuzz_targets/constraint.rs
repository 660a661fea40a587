//! Fuzzes `Constraint::parse`: it must never panic, whatever it accepts must print and parse
//! back to the same constraint, and matching must not panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarm_core::constraint::{ip_matches, Constraint};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(c) = Constraint::parse(s) {
            assert_eq!(
                Constraint::parse(&c.to_string()),
                Ok(c.clone()),
                "input {s:?}"
            );
            let _ = c.matches(Some(s));
            let _ = c.matches(None);
        }
        let _ = ip_matches(s, std::net::Ipv4Addr::new(10, 0, 0, 1).into());
        let _ = ip_matches(s, std::net::Ipv6Addr::LOCALHOST.into());
    }
});
