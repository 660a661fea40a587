//! The `process` runtime passes the conformance suite twice: with private namespaces (as root) and
//! without them (files in a per-task tmpfs directory named by `SWARM_SECRETS_DIR`).

use std::sync::Arc;

use swarm_runtime::testing::ShellFixture;
use swarm_runtime::{ProcessOptions, ProcessRuntime};

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
            eprintln!("SKIPPED: process runtime with namespaces needs root");
            return None;
        }
        let rt = ProcessRuntime::with_options(ProcessOptions {
            namespaces: true,
            stage_dir: None,
            volumes_dir: None,
            supervisor: None,
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
            supervisor: None,
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

/// Supervised tasks (each under a `swarm-supervisor` process, the PID-namespace init when
/// namespaces are on) must keep the whole contract.
mod supervised {
    use super::*;
    use swarm_runtime::process::SupervisorOptions;

    fn fixture(namespaces: bool) -> Option<ShellFixture> {
        if namespaces && !is_root() {
            eprintln!("SKIPPED: process runtime with namespaces needs root");
            return None;
        }
        // Leaked on purpose: the fixture's runtime lives for the whole test binary.
        let dir = Box::leak(Box::new(tempfile::tempdir().expect("temp dir")));
        let rt = ProcessRuntime::with_options(ProcessOptions {
            namespaces,
            stage_dir: None,
            volumes_dir: None,
            supervisor: Some(SupervisorOptions {
                program: env!("CARGO_BIN_EXE_swarm-supervisor").into(),
                args: Vec::new(),
                dir: dir.path().join("supervisors"),
            }),
        })
        .expect("process runtime");
        Some(ShellFixture {
            runtime: Arc::new(rt),
            image: String::new(),
            sets_hostname: namespaces,
            sets_owner: is_root(),
            host_paths: !namespaces,
        })
    }

    mod with_namespaces {
        fn fixture() -> Option<swarm_runtime::testing::ShellFixture> {
            super::fixture(true)
        }
        swarm_runtime::conformance_tests!(fixture());
    }

    mod without_namespaces {
        fn fixture() -> Option<swarm_runtime::testing::ShellFixture> {
            super::fixture(false)
        }
        swarm_runtime::conformance_tests!(fixture());
    }
}
