//! The PKI's parsers of untrusted bytes (certificates from peers, CSRs from joiners, CA bundles from
//! unverified managers, keys from disk) give a value or a typed error on any input, including
//! single-byte corruptions of valid inputs, and never panic.

use proptest::prelude::*;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use swarm_core::Timestamp;
use swarm_net::pki::bundle::parse_pem;
use swarm_net::pki::testing::TestPki;
use swarm_net::pki::{make_csr, CertInfo, PrivateKey, DEFAULT_NODE_CERT_VALIDITY};
use swarm_net::{NodeIdentity, Role};

const T0: Timestamp = Timestamp::from_secs(1_800_000_000);

/// Every parser on `data`; results are ignored, only panics matter.
fn parse_everything(pki: &TestPki, data: &[u8]) {
    let _ = NodeIdentity::from_cert(data);
    let _ = CertInfo::parse(data);
    let _ = parse_pem(data);
    let _ = PrivateKey::from_pkcs8_der(data);
    let who = NodeIdentity {
        node_id: swarm_core::Id::from_u128(1),
        role: Role::Worker,
        cluster_id: pki.cluster_id(),
    };
    let mut rng = ChaCha20Rng::seed_from_u64(0);
    let _ = pki
        .ca()
        .issue(data, &who, DEFAULT_NODE_CERT_VALIDITY, T0, &mut rng);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let pki = TestPki::new(41, T0);
        parse_everything(&pki, &data);
    }

    #[test]
    fn corrupted_valid_inputs_never_panic(which in 0usize..4, at in any::<prop::sample::Index>(), xor in 1u8..=255) {
        let mut pki = TestPki::new(42, T0);
        let node = pki.node(Role::Manager);
        let csr = make_csr(node.key()).unwrap();
        let inputs = [
            node.leaf().to_vec(),
            csr,
            pki.ca().bundle_pem().into_bytes(),
            node.key().pkcs8_der().to_vec(),
        ];
        let mut data = inputs[which].clone();
        let i = at.index(data.len());
        data[i] ^= xor;
        parse_everything(&pki, &data);
    }
}
