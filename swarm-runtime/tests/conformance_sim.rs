//! The `sim` runtime passes the conformance suite.
use std::sync::Arc;

use swarm_runtime::testing::SimFixture;
use swarm_runtime::SimRuntime;

fn fixture() -> Option<SimFixture> {
    Some(SimFixture {
        runtime: Arc::new(SimRuntime::new()),
    })
}

swarm_runtime::conformance_tests!(fixture());
