//! Reporting a test that cannot run on this machine (no root, no Docker Engine, no `docker`
//! CLI), shared by every test of this crate that needs one (`#[path = "skip/mod.rs"] mod skip;`
//! from a test file, `#[path = "../skip/mod.rs"]` from a support module).
//!
//! Outside CI a skip is a loud `SKIPPED: <why>` written straight to the process's stderr: libtest
//! captures `eprintln!` of passing tests, and a test that did not run must not look like one that
//! passed. In CI (the `CI` environment variable set, as CI services do, to anything but `false` or
//! `0`) the machine runs as root with an engine, so a skip means a broken environment: it fails
//! the test instead ("this test must run in CI: <why>").
#![allow(dead_code)]

use std::io::Write;

/// Whether the tests run in CI, where nothing may be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Reports that the calling test does not run here because of `why`; the caller then returns.
/// Panics in CI (see the module docs).
pub fn skip(why: &str) {
    assert!(!in_ci(), "this test must run in CI: {why}");
    let _ = writeln!(
        std::io::stderr(),
        "\n**********\nSKIPPED: {why}; this test did not run\n**********"
    );
}
