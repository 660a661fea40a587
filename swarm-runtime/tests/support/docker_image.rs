//! The Docker test image: built once per machine by `build-test-image.sh` beside this file.

use std::path::Path;
use std::sync::OnceLock;

/// The image the docker tests run.
pub const IMAGE: &str = "swarm-test/busybox:latest";

/// The Docker socket the tests use.
pub const SOCKET: &str = "/var/run/docker.sock";

/// Makes sure the test image exists and returns its name; `None` (after [`super::skip::skip`],
/// for every caller: a loud note, a failure in CI) when this machine has no Docker socket. Panics
/// if the socket exists but the image cannot be built: that is a broken test setup, not a reason
/// to skip.
pub fn ensure() -> Option<&'static str> {
    static BUILT: OnceLock<bool> = OnceLock::new();
    let ok = *BUILT.get_or_init(|| {
        if !Path::new(SOCKET).exists() {
            return false;
        }
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/build-test-image.sh");
        let status = std::process::Command::new("bash")
            .arg(&script)
            .arg(IMAGE)
            .status()
            .expect("running build-test-image.sh");
        assert!(
            status.success(),
            "building the docker test image failed ({status})"
        );
        true
    });
    if !ok {
        super::skip::skip(&format!(
            "no Docker socket at {SOCKET}; the docker adapter needs an engine"
        ));
    }
    ok.then_some(IMAGE)
}

/// A started task of the docker runtime on the test image, running a shell that idles until
/// SIGTERM, with `spec`'s options (its image and command are replaced); `None` (after a loud
/// skip) without a Docker socket. The caller removes the task.
#[cfg(feature = "docker")]
#[allow(dead_code)]
pub async fn idle_task(
    name: &str,
    spec: swarm_core::objects::service::ContainerSpec,
) -> Option<(swarm_runtime::DockerRuntime, swarm_runtime::TaskConfig)> {
    use swarm_runtime::Runtime;
    let image = ensure()?;
    let rt = swarm_runtime::DockerRuntime::connect(swarm_runtime::DockerOptions::default())
        .await
        .expect("docker");
    let spec = swarm_core::objects::service::ContainerSpec {
        image: image.into(),
        command: ["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"]
            .map(String::from)
            .to_vec(),
        ..spec
    };
    let mut c = swarm_runtime::TaskConfig::new(swarm_runtime::testing::unique_id(), name, spec);
    c.node_id = swarm_runtime::testing::unique_id();
    rt.prepare(&c).await.expect("prepare");
    rt.start(&c.task_id).await.expect("start");
    Some((rt, c))
}
