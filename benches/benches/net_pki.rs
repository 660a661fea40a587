//! swarm-net PKI hot paths: issuing a node certificate from a CSR (parse + verify the CSR, build and
//! sign the certificate, as the leader's signer does for every join and renewal), the node's side
//! (key generation + CSR), reading a peer's identity from its certificate, and join-token parsing.
//!
//! Run: `cargo bench -p swarm-benches --bench net_pki -- --warm-up-time 1 --measurement-time 3`
//! Figures: docs/BENCHMARKS.md, section swarm-net: PKI.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use swarm_core::{Id, Timestamp};
use swarm_net::pki::{make_csr, PrivateKey, RootCa, DEFAULT_NODE_CERT_VALIDITY};
use swarm_net::{JoinToken, NodeIdentity, Role};

const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);

fn pki(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let ca = RootCa::generate(PrivateKey::generate().unwrap(), NOW, &mut rng).unwrap();
    let key = PrivateKey::generate().unwrap();
    let csr = make_csr(&key).unwrap();
    let who = NodeIdentity {
        node_id: Id::generate(&mut rng),
        role: Role::Worker,
        cluster_id: Id::generate(&mut rng),
    };
    let issued = ca
        .issue(&csr, &who, DEFAULT_NODE_CERT_VALIDITY, NOW, &mut rng)
        .unwrap();
    let token_text = JoinToken::generate(ca.bundle_pem().as_bytes(), &mut rng).expose_text();

    let mut group = c.benchmark_group("net_pki");
    group.throughput(Throughput::Elements(1));
    group.bench_function("issue_from_csr", |b| {
        b.iter(|| {
            ca.issue(
                black_box(&csr),
                &who,
                DEFAULT_NODE_CERT_VALIDITY,
                NOW,
                &mut rng,
            )
            .unwrap()
        })
    });
    group.bench_function("node_key_and_csr", |b| {
        b.iter(|| make_csr(&PrivateKey::generate().unwrap()).unwrap())
    });
    group.bench_function("identity_from_cert", |b| {
        b.iter(|| NodeIdentity::from_cert(black_box(&issued.chain[0])).unwrap())
    });
    group.bench_function("join_token_parse", |b| {
        b.iter(|| JoinToken::parse(black_box(&token_text)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, pki);
criterion_main!(benches);
