//! Credentials swapped on live endpoints: certificate renewal and a root rotation the way SwarmKit
//! does it (new root cross-signed by the old, both trusted during the change, then the new alone).
//! A stream opened before the first swap keeps delivering through every step, which proves that
//! swapping never touches established connections; each step's new connections prove the swap took
//! effect.

mod rpc_support;

use rand_chacha::rand_core::SeedableRng;
use rpc_support::*;
use swarm_net::pki::testing::system_now;
use swarm_net::pki::{PrivateKey, RootCa, DEFAULT_NODE_CERT_VALIDITY};
use swarm_net::rpc::{RpcError, ServerOptions};

#[tokio::test]
async fn root_rotation_with_live_connections() {
    let (mut pki, w, m) = worker_and_manager(20);
    let old_root = pki.root_der();
    let (server, server_tls, peer) = server(&m, ServerOptions::default());
    let (worker, client_tls) = client(&w);

    // A long stream on the original connection: 6 items, 150 ms apart.
    let mut live = worker
        .server_streaming(&peer, &TICKS, &(6, 150), Some(T))
        .await
        .unwrap();
    let mut next = 0;
    let mut expect_item = |got: Option<Result<u32, RpcError>>| {
        assert_eq!(got.unwrap().unwrap(), next);
        next += 1;
    };
    expect_item(live.next().await);

    // 1. Renewal: the manager gets a fresh certificate from the same root.
    let renewed = pki.node_as(m.identity(), DEFAULT_NODE_CERT_VALIDITY, system_now());
    server_tls.update(&renewed).unwrap();
    expect_item(live.next().await);

    // 2. New root, cross-signed by the old; the manager moves to it, trusting both roots.
    let now = system_now();
    let new_key = PrivateKey::generate().unwrap();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(21);
    let new_ca = RootCa::generate(new_key, now, &mut rng).unwrap();
    let cross = pki.ca().cross_sign(&new_ca, now, &mut rng).unwrap();
    let new_root = new_ca.cert_der().to_vec();
    pki.set_ca(new_ca.with_intermediates(vec![cross]));
    let both = vec![old_root.clone(), new_root.clone()];
    let m_new = pki
        .node_as(m.identity(), DEFAULT_NODE_CERT_VALIDITY, now)
        .with_roots(both.clone())
        .unwrap();
    server_tls.update(&m_new).unwrap();
    expect_item(live.next().await);
    // A worker still on the old root alone verifies the new chain through the cross-signed cert.
    let (old_worker, _) = client(&w);
    assert_eq!(
        old_worker.unary(&peer, &ECHO, &vec![1], T).await.unwrap(),
        [1]
    );

    // 3. The worker renews under the new root, still trusting both.
    let w_new = pki
        .node_as(w.identity(), DEFAULT_NODE_CERT_VALIDITY, now)
        .with_roots(both)
        .unwrap();
    client_tls.update(&w_new).unwrap();
    expect_item(live.next().await);
    let (fresh, _) = client(&w_new);
    assert_eq!(fresh.unary(&peer, &ECHO, &vec![2], T).await.unwrap(), [2]);

    // 4. The new root alone: a node still holding an old-root certificate is refused from now on.
    let m_final = m_new.clone().with_roots(vec![new_root.clone()]).unwrap();
    server_tls.update(&m_final).unwrap();
    expect_item(live.next().await);
    let (straggler, _) = client(&w);
    let err = straggler
        .unary(&peer, &ECHO, &vec![3], T)
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::Authentication(_)), "{err}");
    let (final_worker, _) = client(&w_new.with_roots(vec![new_root]).unwrap());
    assert_eq!(
        final_worker.unary(&peer, &ECHO, &vec![4], T).await.unwrap(),
        [4]
    );

    // The stream that started before any of this is still the same call on the same connection.
    expect_item(live.next().await);
    assert!(live.next().await.is_none());
    drop(client_tls);
    server.shutdown(T).await;
}
