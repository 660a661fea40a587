//! The `docker` runtime passes the conformance suite against the local engine, with the busybox
//! test image built by `tests/support/build-test-image.sh`. Skipped (loudly) without a Docker
//! socket. A second runtime instance on the same engine plays the restarted daemon for the
//! `recover` cases.

mod support;

use std::sync::Arc;

use swarm_core::objects::service::ContainerSpec;
use swarm_runtime::testing::{Behaviour, Fixture, Probe, ShellFixture};
use swarm_runtime::{DockerOptions, DockerRuntime, Runtime};

struct DockerFixture {
    shell: ShellFixture,
    second: Arc<dyn Runtime>,
}

impl Fixture for DockerFixture {
    fn runtime(&self) -> Arc<dyn Runtime> {
        self.shell.runtime()
    }
    fn spec(&self, b: &Behaviour) -> ContainerSpec {
        self.shell.spec(b)
    }
    fn probe(&self, p: &Probe) -> Vec<String> {
        self.shell.probe(p)
    }
    fn second_instance(&self) -> Option<Arc<dyn Runtime>> {
        Some(self.second.clone())
    }
}

async fn connect() -> Arc<dyn Runtime> {
    Arc::new(
        DockerRuntime::connect(DockerOptions::default())
            .await
            .expect("connecting to the docker engine"),
    )
}

async fn fixture() -> Option<DockerFixture> {
    let image = support::docker_image::ensure()?;
    Some(DockerFixture {
        shell: ShellFixture {
            runtime: connect().await,
            image: image.to_string(),
            sets_hostname: true,
            sets_owner: true,
            host_paths: false,
        },
        second: connect().await,
    })
}

swarm_runtime::conformance_tests!(fixture().await);
