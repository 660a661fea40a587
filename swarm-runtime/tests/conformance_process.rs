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
/// namespaces are on) must keep the whole contract; a second runtime on the same supervisor
/// directory plays the restarted daemon for the `recover` cases.
mod supervised {
    use super::*;
    use swarm_core::objects::service::ContainerSpec;
    use swarm_runtime::process::SupervisorOptions;
    use swarm_runtime::testing::{Behaviour, Fixture, Probe};
    use swarm_runtime::Runtime;

    pub(super) struct SupervisedFixture {
        shell: ShellFixture,
        second: Arc<dyn Runtime>,
        _dir: tempfile::TempDir,
    }

    impl Fixture for SupervisedFixture {
        fn runtime(&self) -> Arc<dyn Runtime> {
            self.shell.runtime()
        }
        fn spec(&self, b: &Behaviour) -> ContainerSpec {
            self.shell.spec(b)
        }
        fn probe(&self, p: &Probe) -> Vec<String> {
            self.shell.probe(p)
        }
        fn sets_hostname(&self) -> bool {
            self.shell.sets_hostname()
        }
        fn sets_owner(&self) -> bool {
            self.shell.sets_owner()
        }
        fn second_instance(&self) -> Option<Arc<dyn Runtime>> {
            Some(self.second.clone())
        }
    }

    fn runtime(dir: &std::path::Path, namespaces: bool) -> Arc<dyn Runtime> {
        Arc::new(
            ProcessRuntime::with_options(ProcessOptions {
                namespaces,
                stage_dir: None,
                volumes_dir: None,
                supervisor: Some(SupervisorOptions {
                    program: env!("CARGO_BIN_EXE_swarm-supervisor").into(),
                    args: Vec::new(),
                    dir: dir.join("supervisors"),
                }),
            })
            .expect("process runtime"),
        )
    }

    pub(super) fn fixture(namespaces: bool) -> Option<SupervisedFixture> {
        if namespaces && !is_root() {
            eprintln!("SKIPPED: process runtime with namespaces needs root");
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        Some(SupervisedFixture {
            shell: ShellFixture {
                runtime: runtime(dir.path(), namespaces),
                image: String::new(),
                sets_hostname: namespaces,
                sets_owner: is_root(),
                host_paths: !namespaces,
            },
            second: runtime(dir.path(), namespaces),
            _dir: dir,
        })
    }

    mod with_namespaces {
        fn fixture() -> Option<super::SupervisedFixture> {
            super::fixture(true)
        }
        swarm_runtime::conformance_tests!(fixture());
    }

    mod without_namespaces {
        fn fixture() -> Option<super::SupervisedFixture> {
            super::fixture(false)
        }
        swarm_runtime::conformance_tests!(fixture());
    }
}
