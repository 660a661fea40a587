//! Joining as pure steps: a manager admits a joiner only with a current token (which decides the
//! role), allocates an unused node id, signs the CSR; the joiner pins the CA from its token and
//! accepts only a chain that answers its own CSR, leads to the pinned root and is valid now.

use std::cell::Cell;
use std::time::Duration;

use proptest::prelude::*;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use swarm_core::{Id, Timestamp};
use swarm_net::pki::testing::TestPki;
use swarm_net::pki::{
    accept_issued, admit, make_csr, verify_chain, CertState, DenySet, PrivateKey, RootRotation,
    DEFAULT_NODE_CERT_VALIDITY, NODE_ID_ATTEMPTS,
};
use swarm_net::{Error, JoinTokens, NodeIdentity, Role};

const T0: Timestamp = Timestamp::from_secs(1_800_000_000);

#[test]
fn join_end_to_end_with_the_token_deciding_the_role() {
    let pki = TestPki::new(31, T0);
    let mut rng = ChaCha20Rng::seed_from_u64(31);
    let bundle = pki.ca().bundle_pem();
    let tokens = JoinTokens::generate(bundle.as_bytes(), &mut rng);
    for role in [Role::Worker, Role::Manager] {
        // Node: parse the token, fetch the bundle unverified, pin it.
        let token = swarm_net::JoinToken::parse(&tokens.token(role).expose_text()).unwrap();
        let roots = token.pin_bundle(bundle.as_bytes()).unwrap();
        let key = PrivateKey::generate().unwrap();
        let csr = make_csr(&key).unwrap();
        // Manager: admit, sign.
        let mut rec = admit(&tokens, &token, csr, pki.cluster_id(), |_| false, &mut rng).unwrap();
        assert_eq!(rec.state(), CertState::Pending);
        assert_eq!(rec.identity().role, role);
        rec.sign(
            pki.ca(),
            DEFAULT_NODE_CERT_VALIDITY,
            &DenySet::new(),
            T0,
            &mut rng,
        )
        .unwrap();
        // Node: accept.
        let chain = rec.chain().unwrap().to_vec();
        let material = accept_issued(chain, key, roots, T0).unwrap();
        assert_eq!(material.identity(), rec.identity());
    }
}

#[test]
fn admit_refuses_bad_tokens_and_csrs_and_retries_id_collisions() {
    let pki = TestPki::new(32, T0);
    let mut rng = ChaCha20Rng::seed_from_u64(32);
    let tokens = JoinTokens::generate(pki.ca().bundle_pem().as_bytes(), &mut rng);
    let csr = make_csr(&PrivateKey::generate().unwrap()).unwrap();
    let worker = tokens.token(Role::Worker);

    let stranger = JoinTokens::generate(b"other", &mut rng);
    assert_eq!(
        admit(
            &tokens,
            stranger.token(Role::Worker),
            csr.clone(),
            pki.cluster_id(),
            |_| false,
            &mut rng
        )
        .unwrap_err(),
        Error::InvalidToken
    );
    let mut rotated = tokens.clone();
    rotated.rotate(Role::Worker, &mut rng);
    assert_eq!(
        admit(
            &rotated,
            worker,
            csr.clone(),
            pki.cluster_id(),
            |_| false,
            &mut rng
        )
        .unwrap_err(),
        Error::InvalidToken
    );
    assert!(matches!(
        admit(
            &tokens,
            worker,
            b"junk".to_vec(),
            pki.cluster_id(),
            |_| false,
            &mut rng
        ),
        Err(Error::MalformedCsr { .. })
    ));

    // The first three ids drawn collide; the fourth is used.
    let drawn = Cell::new(0);
    let rec = admit(
        &tokens,
        worker,
        csr.clone(),
        pki.cluster_id(),
        |_| {
            drawn.set(drawn.get() + 1);
            drawn.get() < NODE_ID_ATTEMPTS
        },
        &mut rng,
    )
    .unwrap();
    assert_eq!(drawn.get(), NODE_ID_ATTEMPTS);
    assert_eq!(rec.identity().cluster_id, pki.cluster_id());
    assert_eq!(
        admit(&tokens, worker, csr, pki.cluster_id(), |_| true, &mut rng).unwrap_err(),
        Error::NodeIdExhausted {
            attempts: NODE_ID_ATTEMPTS
        }
    );
}

#[test]
fn accept_refuses_foreign_ca_foreign_key_and_expired_chains() {
    let mut pki = TestPki::new(33, T0);
    let other = TestPki::new(34, T0);
    let node = pki.node(Role::Worker);
    let chain = node.chain().to_vec();
    let roots = vec![pki.root_der()];

    assert!(accept_issued(chain.clone(), node.key().clone(), roots.clone(), T0).is_ok());
    assert!(matches!(
        accept_issued(
            chain.clone(),
            node.key().clone(),
            vec![other.root_der()],
            T0
        ),
        Err(Error::UntrustedCertificate { .. })
    ));
    assert!(matches!(
        accept_issued(
            chain.clone(),
            PrivateKey::generate().unwrap(),
            roots.clone(),
            T0
        ),
        Err(Error::MalformedKey { .. })
    ));
    let expired = T0
        .plus(DEFAULT_NODE_CERT_VALIDITY)
        .plus(Duration::from_secs(1));
    assert!(matches!(
        verify_chain(&chain, &roots, expired),
        Err(Error::UntrustedCertificate { .. })
    ));
    let early = Timestamp::from_secs(1_800_000_000 - 3601);
    assert!(verify_chain(&chain, &roots, early).is_err());
    assert!(verify_chain(&[], &roots, T0).is_err());
    // A leaf presented as its own intermediate leads nowhere.
    let looped = vec![chain[0].clone(), chain[0].clone()];
    assert!(verify_chain(&looped, &[other.root_der()], T0).is_err());
}

#[test]
fn mid_rotation_chain_is_accepted_by_old_new_and_both_roots() {
    let mut pki = TestPki::new(35, T0);
    let mut rng = ChaCha20Rng::seed_from_u64(35);
    let old_root = pki.root_der();
    let rotation =
        RootRotation::start(pki.ca(), PrivateKey::generate().unwrap(), T0, &mut rng).unwrap();
    let new_root = rotation.signer().cert_der().to_vec();
    pki.set_ca(rotation.signer().clone());
    let node = pki.node(Role::Worker);
    for roots in [
        vec![old_root.clone()],
        vec![new_root.clone()],
        rotation.trusted_roots(),
    ] {
        assert_eq!(
            verify_chain(node.chain(), &roots, T0).unwrap(),
            node.identity()
        );
    }
    // Without the cross-signed intermediate only the new root works.
    let leaf_only = &node.chain()[..1];
    assert!(verify_chain(leaf_only, &[new_root], T0).is_ok());
    assert!(verify_chain(leaf_only, &[old_root], T0).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    /// CSR -> certificate -> identity gives back exactly the identity the CA chose, whatever it is.
    #[test]
    fn issued_identity_round_trips(node in any::<u128>(), cluster in any::<u128>(), manager in any::<bool>(), hours in 1u64..200_000) {
        let mut pki = TestPki::new(36, T0);
        let who = NodeIdentity {
            node_id: Id::from_u128(node),
            role: if manager { Role::Manager } else { Role::Worker },
            cluster_id: Id::from_u128(cluster),
        };
        let material = pki.node_as(who, Duration::from_secs(hours * 3600), T0);
        prop_assert_eq!(material.identity(), who);
        prop_assert_eq!(NodeIdentity::from_cert(material.leaf()).unwrap(), who);
        prop_assert_eq!(verify_chain(material.chain(), material.roots(), T0).unwrap(), who);
    }
}
