//! The `process` runtime passes the conformance suite twice: with private namespaces (as root) and
//! without them (files in a per-task tmpfs directory named by `SWARM_SECRETS_DIR`).

use std::sync::Arc;

use swarm_runtime::testing::ShellFixture;
use swarm_runtime::{ProcessOptions, ProcessRuntime};

#[path = "support/skip.rs"]
mod skip;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

mod with_namespaces {
    use super::*;

    fn fixture() -> Option<ShellFixture> {
        if !is_root() {
            skip::skip("the process runtime with namespaces needs root");
            return None;
        }
        let rt = ProcessRuntime::with_options(ProcessOptions {
            namespaces: true,
            stage_dir: None,
            volumes_dir: None,
        })
        .expect("process runtime");
        Some(ShellFixture {
            runtime: Arc::new(rt),
            image: String::new(),
            sets_hostname: true,
            sets_owner: true,
            host_paths: false,
        })
    }

    swarm_runtime::conformance_tests!(fixture());
}

mod without_namespaces {
    use super::*;

    fn fixture() -> Option<ShellFixture> {
        let rt = ProcessRuntime::with_options(ProcessOptions {
            namespaces: false,
            stage_dir: None,
            volumes_dir: None,
        })
        .expect("process runtime");
        Some(ShellFixture {
            runtime: Arc::new(rt),
            image: String::new(),
            sets_hostname: false,
            sets_owner: is_root(),
            host_paths: true,
        })
    }

    swarm_runtime::conformance_tests!(fixture());
}
