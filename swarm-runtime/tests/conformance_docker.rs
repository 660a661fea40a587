//! The `docker` runtime passes the conformance suite against the local engine, with the busybox
//! test image built by `tests/support/build-test-image.sh`. Skipped (loudly) without a Docker
//! socket.

mod support;

use std::sync::Arc;

use swarm_runtime::testing::ShellFixture;
use swarm_runtime::{DockerOptions, DockerRuntime};

async fn fixture() -> Option<ShellFixture> {
    let image = support::docker_image::ensure()?;
    let rt = DockerRuntime::connect(DockerOptions::default())
        .await
        .expect("connecting to the docker engine");
    Some(ShellFixture {
        runtime: Arc::new(rt),
        image: image.to_string(),
        sets_hostname: true,
        sets_owner: true,
        host_paths: false,
    })
}

swarm_runtime::conformance_tests!(fixture().await);
