//! [`LocalProposer`] passes the `Proposer` conformance suite (`swarm_core::conformance`).
//! swarm-raft runs the same suite against its replicated proposer.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use swarm_core::conformance::{run_all, ProposerFixture};
use swarm_core::{LocalProposer, ManualClock, Proposer, SharedStore, Timestamp};

struct Local {
    proposer: Arc<LocalProposer>,
}

impl ProposerFixture for Local {
    fn proposer(&self) -> Arc<dyn Proposer> {
        self.proposer.clone()
    }
    fn store(&self) -> SharedStore {
        self.proposer.store().clone()
    }
}

/// Runs a future that never waits: `LocalProposer` commits synchronously, so every await of the
/// suite is ready at once (swarm-core has no async runtime; a pending poll is a bug here).
fn run_ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("LocalProposer's proposal did not complete at once"),
    }
}

/// Property: LocalProposer keeps every clause of the Proposer contract.
#[test]
fn local_proposer_conforms() {
    let clock = Arc::new(ManualClock::new(Timestamp::from_secs(1_000)));
    let fixture = Local {
        proposer: Arc::new(LocalProposer::new(SharedStore::default(), clock)),
    };
    run_ready(run_all(&fixture));
}
