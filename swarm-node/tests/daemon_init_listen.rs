//! `swarm init` binds its listen address before it reports success.

mod daemon_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use daemon_support::*;
use swarm_node::backend::{Backend, BackendError, InitRequest, SwarmState};
use swarm_node::config::RuntimeKind;
use swarm_node::daemon::Daemon;

fn paths(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(paths(&p));
        }
        out.insert(p);
    }
    out
}

/// Property: an init whose listen address cannot be bound fails with Docker's error ("failed to
/// listen on remote API address"), leaves the daemon out of any swarm and its data directory as
/// it was (no identity, raft state, certificate or transition marker), and a later init on a
/// free address succeeds. Setup: the address is a loopback UDP port this test holds (QUIC
/// listens on UDP), so the bind fails with "address in use"; it is released for the second init.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_on_an_address_that_cannot_be_bound_fails_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = Daemon::start(config(&dir, RuntimeKind::Sim)).await.unwrap();
    let before = paths(&dir);
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let req = || InitRequest {
        listen_addr: addr.clone(),
        advertise_addr: addr.clone(),
        ..InitRequest::default()
    };
    let e = d.init(req()).await.unwrap_err();
    assert!(matches!(e, BackendError::ListenFailed(_)), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.starts_with("manager stopped: failed to listen on remote API address: ")
            && msg.contains(&addr),
        "{msg}"
    );
    assert_eq!(d.swarm_state(), SwarmState::Inactive);
    assert_eq!(paths(&dir), before, "the failed init left files behind");

    drop(taken);
    d.init(req()).await.expect("init on the freed address");
    assert_eq!(d.swarm_state(), SwarmState::Active);
    d.shutdown().await;
}
