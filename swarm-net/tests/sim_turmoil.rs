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

/// Duplication (`sim::set_duplication`): with every datagram sent twice, each copy on its own
/// latency, QUIC discards the copies and calls still answer once, correctly.
#[test]
fn calls_answer_when_every_datagram_arrives_twice() {
    let (_pki, w, m) = worker_and_manager(31);
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(60))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(50))
        .build();
    sim::set_duplication(1.0, 9);
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
        for i in 0..20u8 {
            let got = client.unary(&peer, &ECHO, &vec![i; 3000], T).await?;
            assert_eq!(got, vec![i; 3000]);
        }
        Ok(())
    });
    sim.run().unwrap();
    sim::set_duplication(0.0, 0);
}

/// The shim sends each datagram twice at rate 1, never at rate 0, and a seeded share between.
#[test]
fn duplication_sends_the_drawn_share_of_datagrams_twice() {
    use quinn::udp::{EcnCodepoint, Transmit};
    use quinn::AsyncUdpSocket;
    for (rate, low, high) in [(0.0, 200, 200), (1.0, 400, 400), (0.3, 230, 290)] {
        let mut sim = turmoil::Builder::new()
            .simulation_duration(Duration::from_secs(10))
            .udp_capacity(4096)
            .build();
        sim::set_duplication(rate, 5);
        let got = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = got.clone();
        sim.host("counter", move || {
            let counted = counted.clone();
            async move {
                let socket =
                    turmoil::net::UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, PORT)).await?;
                let mut buf = [0u8; 64];
                loop {
                    socket.recv_from(&mut buf).await?;
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        });
        sim.client("sender", async {
            let socket =
                turmoil::net::UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, 0)).await?;
            let udp = sim::TurmoilUdp::new(socket);
            let to = (turmoil::lookup("counter"), PORT).into();
            for _ in 0..200 {
                let transmit = Transmit {
                    destination: to,
                    ecn: None::<EcnCodepoint>,
                    contents: b"abc",
                    segment_size: None,
                    src_ip: None,
                };
                udp.try_send(&transmit)?;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok(())
        });
        sim.run().unwrap();
        sim::set_duplication(0.0, 0);
        let n = got.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            (low..=high).contains(&n),
            "rate {rate}: {n} datagrams arrived"
        );
    }
}
