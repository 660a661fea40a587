//! A custom [`Runtime`] adapter, checked by the adapter conformance suite
//! (`swarm_runtime::testing`, feature `testing`).
//!
//! Run: `cargo run -p swarm-runtime --example custom_adapter --features testing`
//!
//! `Audited` wraps any adapter: it refuses tasks whose image is not on an allow-list (before the
//! inner adapter sees them) and counts every call per kind, the kind of policy an embedder adds
//! around the adapter it runs. Here it wraps the in-memory `SimRuntime`, so the example needs no
//! root, no engine and no shell. The whole conformance suite runs against the wrapper (a wrapper
//! that broke a contract clause, for example by forgetting to delegate `recover` or by leaking a
//! task when `prepare` is refused, fails it); then the example shows the refusal and prints the
//! audit counts. Exit status 0 means every case passed.
//!
//! An adapter written from scratch implements the same trait; `swarm-runtime/src/sim.rs` is the
//! smallest complete one, and `Runtime`'s docs list the contract clauses the suite checks.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use swarm_core::objects::service::ContainerSpec;
use swarm_core::Id;
use swarm_runtime::testing::{conformance, sim_spec, unique_id, Behaviour, Fixture, Probe};
use swarm_runtime::{
    Capabilities, ExecResult, ExitStatus, LogLine, LogOptions, LogRecords, RecoveredTask, Runtime,
    RuntimeError, SimRuntime, TaskConfig, TaskInspect,
};

/// An adapter that admits only allow-listed images and counts the calls it passes on.
struct Audited<R> {
    inner: R,
    images: Vec<String>,
    calls: Mutex<BTreeMap<&'static str, u64>>,
}

impl<R: Runtime> Audited<R> {
    fn new(inner: R, images: &[&str]) -> Audited<R> {
        Audited {
            inner,
            images: images.iter().map(|s| s.to_string()).collect(),
            calls: Mutex::new(BTreeMap::new()),
        }
    }

    fn count(&self, call: &'static str) {
        *self
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(call)
            .or_default() += 1;
    }

    fn calls(&self) -> BTreeMap<&'static str, u64> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[async_trait]
impl<R: Runtime> Runtime for Audited<R> {
    // The runtime-option labels (`swarm.runtime.<name>.*`) are the inner adapter's.
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn prepare(&self, config: &TaskConfig) -> Result<(), RuntimeError> {
        self.count("prepare");
        let image = &config.container.image;
        if !self.images.iter().any(|allowed| allowed == image) {
            // Refused before the inner adapter made anything: nothing to remove.
            return Err(RuntimeError::InvalidSpec {
                reason: format!(
                    "image {image:?} is not allowed on this node (allowed: {:?})",
                    self.images
                ),
            });
        }
        self.inner.prepare(config).await
    }

    async fn start(&self, task: &Id) -> Result<(), RuntimeError> {
        self.count("start");
        self.inner.start(task).await
    }

    async fn wait(&self, task: &Id) -> Result<ExitStatus, RuntimeError> {
        self.count("wait");
        self.inner.wait(task).await
    }

    async fn shutdown(&self, task: &Id) -> Result<(), RuntimeError> {
        self.count("shutdown");
        self.inner.shutdown(task).await
    }

    async fn remove(&self, task: &Id) -> Result<(), RuntimeError> {
        self.count("remove");
        self.inner.remove(task).await
    }

    async fn inspect(&self, task: &Id) -> Result<TaskInspect, RuntimeError> {
        self.count("inspect");
        self.inner.inspect(task).await
    }

    async fn exec(
        &self,
        task: &Id,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecResult, RuntimeError> {
        self.count("exec");
        self.inner.exec(task, cmd, timeout).await
    }

    async fn logs(&self, task: &Id, tail: Option<usize>) -> Result<Vec<LogLine>, RuntimeError> {
        self.count("logs");
        self.inner.logs(task, tail).await
    }

    async fn log_stream(&self, task: &Id, opts: LogOptions) -> Result<LogRecords, RuntimeError> {
        // Forwarded, not left to the trait's default: the default has no write times and does
        // not follow, which the conformance suite's log case refuses.
        self.count("log_stream");
        self.inner.log_stream(task, opts).await
    }

    async fn recover(&self, node: &Id) -> Result<Vec<RecoveredTask>, RuntimeError> {
        self.count("recover");
        self.inner.recover(node).await
    }
}

/// How the conformance suite expresses its test tasks for this adapter: the inner adapter's
/// specs (sim behaviour labels, image `sim`).
struct AuditedFixture(Arc<Audited<SimRuntime>>);

impl Fixture for AuditedFixture {
    fn runtime(&self) -> Arc<dyn Runtime> {
        self.0.clone()
    }
    fn spec(&self, b: &Behaviour) -> ContainerSpec {
        sim_spec(b)
    }
    fn probe(&self, p: &Probe) -> Vec<String> {
        match p {
            Probe::PrintEnv(name) => vec!["printenv".into(), name.clone()],
            other => swarm_runtime::testing::shell_probe(other),
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), String> {
    let runtime = Arc::new(Audited::new(SimRuntime::new(), &["sim"]));
    let fixture = AuditedFixture(runtime.clone());

    // Every contract clause, as for the built-in adapters (a failed case panics with its reason).
    conformance::run_all(&fixture).await;
    println!("conformance suite: every case passed");

    // The adapter's own rule: an image off the list is refused, and nothing is left behind.
    let task = unique_id();
    let spec = ContainerSpec {
        image: "registry.example.com/untrusted:latest".into(),
        ..ContainerSpec::default()
    };
    match runtime
        .prepare(&TaskConfig::new(task, "untrusted", spec))
        .await
    {
        Err(RuntimeError::InvalidSpec { reason }) => println!("refused: {reason}"),
        other => return Err(format!("an image off the list was not refused: {other:?}")),
    }
    if !matches!(
        runtime.inspect(&task).await,
        Err(RuntimeError::NotFound { .. })
    ) {
        return Err("a refused task is known to the runtime".into());
    }

    let calls = runtime.calls();
    for (call, n) in &calls {
        println!("{call:>8}: {n}");
    }
    if calls.get("prepare").copied().unwrap_or(0) == 0 || !calls.contains_key("recover") {
        return Err(format!("the suite's calls did not pass through: {calls:?}"));
    }
    Ok(())
}
