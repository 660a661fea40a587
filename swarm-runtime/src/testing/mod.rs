//! Test support (feature `testing`): the adapter conformance suite and its fixtures.
//!
//! An adapter author implements [`Fixture`] (how to express each [`Behaviour`] and [`Probe`] in
//! the adapter's terms) and runs [`conformance::run_all`], or expands
//! [`conformance_tests!`](crate::conformance_tests) into one `#[tokio::test]` per case.
//!
//! A dispatcher author implements [`dispatch::DispatcherFixture`] and runs
//! [`dispatch::run_all`]: the `Dispatcher`/`Session` conformance suite.

mod cancel;
pub mod conformance;
pub mod dispatch;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use swarm_core::objects::service::ContainerSpec;
use swarm_core::Id;

use crate::runtime::Runtime;

/// What a test task does, in adapter-neutral terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Runs until stopped; exits promptly on the stop signal.
    RunForever,
    /// Exits with `code` after `after`.
    Exit {
        /// Exit code.
        code: i32,
        /// Delay before exiting.
        after: Duration,
    },
    /// Ignores the stop signal; only `SIGKILL` ends it. Prints [`IGNORING_STOP`] once the
    /// signal is ignored, so a test can stop it only after that.
    IgnoreStop,
    /// Prints `text` on stdout, then runs until stopped.
    Print(String),
    /// Cannot start (missing binary, or scripted failure).
    FailStart,
}

/// The line a [`Behaviour::IgnoreStop`] task prints once it ignores the stop signal.
pub const IGNORING_STOP: &str = "ignoring-stop";

/// A command to exec inside a running test task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// Exits 0.
    Succeed,
    /// Exits with this code.
    Fail(i32),
    /// Prints the file at this in-task path.
    ReadFile(String),
    /// Prints `<octal mode> <uid> <gid>` of the file at this in-task path.
    StatFile(String),
    /// Prints an environment variable.
    PrintEnv(String),
    /// Prints the hostname.
    Hostname,
    /// Sleeps this many seconds.
    Sleep(u32),
}

/// How the conformance suite drives one adapter.
pub trait Fixture: Send + Sync {
    /// The runtime under test (may be shared between cases: task ids are unique).
    fn runtime(&self) -> Arc<dyn Runtime>;

    /// A container spec that behaves as `b`.
    fn spec(&self, b: &Behaviour) -> ContainerSpec {
        shell_spec(b)
    }

    /// The exec command for `p`.
    fn probe(&self, p: &Probe) -> Vec<String> {
        shell_probe(p)
    }

    /// Whether the task sees the spec's hostname (`hostname` prints it).
    fn sets_hostname(&self) -> bool {
        true
    }

    /// Whether files get the requested owner (the runtime runs as root).
    fn sets_owner(&self) -> bool {
        true
    }

    /// Another instance of the adapter over the same world (engine, host), as a restarted
    /// daemon would make: the `recover` cases check that it adopts the first one's tasks. `None`
    /// (the default) skips them, for adapters whose tasks cannot outlive the instance.
    fn second_instance(&self) -> Option<Arc<dyn Runtime>> {
        None
    }
}

/// Specs for runtimes that run a real POSIX shell (`process`, `docker` with busybox).
pub fn shell_spec(b: &Behaviour) -> ContainerSpec {
    let script = match b {
        Behaviour::RunForever => "trap 'exit 143' TERM; sleep 1000 & wait".to_string(),
        Behaviour::Exit { code, after } => {
            format!("sleep {}; exit {code}", after.as_secs_f64())
        }
        Behaviour::IgnoreStop => {
            format!("trap '' TERM; echo {IGNORING_STOP}; sleep 1000 & wait; sleep 1000")
        }
        Behaviour::Print(text) => {
            format!("echo '{text}'; trap 'exit 143' TERM; sleep 1000 & wait")
        }
        Behaviour::FailStart => {
            return ContainerSpec {
                command: vec!["/nonexistent/swarm-conformance-binary".into()],
                ..ContainerSpec::default()
            }
        }
    };
    ContainerSpec {
        command: vec!["sh".into(), "-c".into(), script],
        ..ContainerSpec::default()
    }
}

/// Probe commands for runtimes with `sh`, `cat`, `stat`, `printenv`, `hostname` and `sleep`.
pub fn shell_probe(p: &Probe) -> Vec<String> {
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect();
    match p {
        Probe::Succeed => v(&["true"]),
        Probe::Fail(code) => v(&["sh", "-c", &format!("exit {code}")]),
        Probe::ReadFile(path) => v(&["cat", path]),
        Probe::StatFile(path) => v(&["stat", "-c", "%a %u %g", path]),
        // busybox-static has no printenv applet.
        Probe::PrintEnv(name) => v(&["sh", "-c", &format!("printf '%s\\n' \"${name}\"")]),
        Probe::Hostname => v(&["hostname"]),
        Probe::Sleep(s) => v(&["sleep", &s.to_string()]),
    }
}

/// Specs for the `sim` runtime (behaviour in `swarm.runtime.sim.*` labels).
pub fn sim_spec(b: &Behaviour) -> ContainerSpec {
    let mut labels = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        labels.insert(format!("swarm.runtime.sim.{k}"), v);
    };
    match b {
        Behaviour::RunForever => {}
        Behaviour::Exit { code, after } => {
            put("exit", code.to_string());
            put("after", format!("{}ms", after.as_millis()));
        }
        Behaviour::IgnoreStop => {
            put("ignore-stop", "true".into());
            put("output", IGNORING_STOP.into());
        }
        Behaviour::Print(text) => put("output", text.clone()),
        Behaviour::FailStart => put("fail-start", "simulated start failure".into()),
    }
    ContainerSpec {
        image: "sim".into(),
        labels,
        ..ContainerSpec::default()
    }
}

/// A fixture for any runtime that runs real shell commands with default probes.
pub struct ShellFixture {
    /// The runtime.
    pub runtime: Arc<dyn Runtime>,
    /// Image to put in specs (docker); empty for `process`.
    pub image: String,
    /// See [`Fixture::sets_hostname`].
    pub sets_hostname: bool,
    /// See [`Fixture::sets_owner`].
    pub sets_owner: bool,
    /// Translate in-task file paths for a runtime without namespaces (`SWARM_SECRETS_DIR`...).
    pub host_paths: bool,
}

impl Fixture for ShellFixture {
    fn runtime(&self) -> Arc<dyn Runtime> {
        self.runtime.clone()
    }

    fn spec(&self, b: &Behaviour) -> ContainerSpec {
        let mut s = shell_spec(b);
        s.image = self.image.clone();
        s
    }

    fn probe(&self, p: &Probe) -> Vec<String> {
        if !self.host_paths {
            return shell_probe(p);
        }
        let translate = |path: &str| match path.strip_prefix("/run/secrets/") {
            Some(rest) => format!("\"$SWARM_SECRETS_DIR/{rest}\""),
            None => format!("\"$SWARM_CONFIGS_DIR{path}\""),
        };
        let sh = |s: String| vec!["sh".to_string(), "-c".to_string(), s];
        match p {
            Probe::ReadFile(path) => sh(format!("cat {}", translate(path))),
            Probe::StatFile(path) => sh(format!("stat -c '%a %u %g' {}", translate(path))),
            other => shell_probe(other),
        }
    }

    fn sets_hostname(&self) -> bool {
        self.sets_hostname
    }

    fn sets_owner(&self) -> bool {
        self.sets_owner
    }
}

/// The fixture for [`crate::SimRuntime`].
pub struct SimFixture {
    /// The runtime.
    pub runtime: Arc<crate::SimRuntime>,
}

impl Fixture for SimFixture {
    fn runtime(&self) -> Arc<dyn Runtime> {
        self.runtime.clone()
    }
    fn spec(&self, b: &Behaviour) -> ContainerSpec {
        sim_spec(b)
    }
    fn probe(&self, p: &Probe) -> Vec<String> {
        match p {
            Probe::PrintEnv(name) => vec!["printenv".into(), name.clone()],
            other => shell_probe(other),
        }
    }
}

/// A task id unique within this process and across concurrent test processes.
pub fn unique_id() -> Id {
    Id::from_u128(unique_number())
}

/// The number behind [`unique_id`] (for fixtures that take a number).
pub fn unique_number() -> u128 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let pid = u128::from(std::process::id());
    (nanos << 40) ^ (pid << 20) ^ u128::from(n)
}
