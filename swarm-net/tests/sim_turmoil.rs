//! One RPC on virtual time: a manager and a worker on turmoil hosts, quinn over the simulated UDP
//! shim, the production TLS and RPC layers above it. The call crosses a link with 200 ms latency
//! each way; the simulated clock shows the round trips, while the test takes milliseconds of real
//! time, which proves the timers follow turmoil's clock.

mod rpc_support;

use std::time::Duration;

use rpc_support::*;
use swarm_net::rpc::{Client, Peer, RpcConfig, Server, ServerOptions, TlsState};
use swarm_net::sim;

const PORT: u16 = 4242;

#[test]
fn one_call_over_simulated_udp_on_virtual_time() {
    let (_pki, w, m) = worker_and_manager(30);
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(60))
        .min_message_latency(Duration::from_millis(200))
        .max_message_latency(Duration::from_millis(200))
        .build();

    let manager = m.clone();
    sim.host("manager", move || {
        let manager = manager.clone();
        async move {
            let tls = TlsState::new(&manager)?;
            let config = RpcConfig::default().server_config(&tls)?;
            let endpoint = sim::endpoint(PORT, Some(config)).await?;
            let (router, _) = router();
            let _server = Server::serve(endpoint, tls, router, ServerOptions::default());
            std::future::pending::<()>().await;
            Ok(())
        }
    });

    let manager_identity = m.identity();
    sim.client("worker", async move {
        let tls = TlsState::new(&w)?;
        let endpoint = sim::endpoint(0, None).await?;
        let client = Client::on(endpoint, tls, RpcConfig::default())?;
        let peer = Peer {
            addr: (turmoil::lookup("manager"), PORT).into(),
            role: manager_identity.role,
            node_id: Some(manager_identity.node_id),
        };
        let start = tokio::time::Instant::now();
        let got = client.unary(&peer, &ECHO, &b"hello".to_vec(), T).await?;
        assert_eq!(got, b"hello");
        // Handshake (1 round trip, 1-RTT QUIC) plus the call (1 round trip): at least 800 ms of
        // simulated time at 200 ms per direction.
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(800), "{elapsed:?}");
        Ok(())
    });

    sim.run().unwrap();
}
