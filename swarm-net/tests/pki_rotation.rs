//! Root rotation over a simulated cluster on a virtual clock: chains issued mid-rotation verify
//! against the old root (through the cross-signed certificate) and against the new root alone; nodes
//! are marked for renewal at most 30 at a time, 3 s apart; the rotation converges only when every
//! node holds a certificate from the new key, and ends with the new root alone and new join tokens.

use std::collections::BTreeMap;
use std::time::Duration;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use swarm_core::{Id, Timestamp};
use swarm_net::pki::testing::TestPki;
use swarm_net::pki::{
    is_signed_by, make_csr, CertRecord, CertState, DenySet, NodeCertStatus, PrivateKey,
    RootRotation, RotationStep, DEFAULT_NODE_CERT_VALIDITY, ROTATE_BATCH, ROTATE_INTERVAL,
};
use swarm_net::token::ca_digest;
use swarm_net::{JoinTokens, NodeIdentity, Role};

const T0: Timestamp = Timestamp::from_secs(1_800_000_000);

fn sign_all(
    records: &mut BTreeMap<Id, CertRecord>,
    pki: &mut TestPki,
    ca: &swarm_net::pki::RootCa,
    now: Timestamp,
) {
    let deny = DenySet::new();
    for rec in records.values_mut() {
        if rec.needs_signing(now) {
            rec.sign(ca, DEFAULT_NODE_CERT_VALIDITY, &deny, now, pki.rng())
                .unwrap();
        }
    }
}

fn statuses(records: &BTreeMap<Id, CertRecord>) -> Vec<NodeCertStatus> {
    records
        .values()
        .map(|r| NodeCertStatus {
            node_id: r.identity().node_id,
            state: r.state(),
            issuer_key_id: r.issuer_key_id(),
        })
        .collect()
}

#[test]
fn rotation_chains_verify_under_both_roots() {
    let mut pki = TestPki::new(11, T0);
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let old_root = pki.root_der();
    let old_leaf = pki.node(Role::Worker);
    let rotation =
        RootRotation::start(pki.ca(), PrivateKey::generate().unwrap(), T0, &mut rng).unwrap();
    let new_root = rotation.signer().cert_der().to_vec();
    let cross = rotation.cross_signed().to_vec();
    assert_eq!(
        rotation.trusted_roots(),
        vec![old_root.clone(), new_root.clone()]
    );

    pki.set_ca(rotation.signer().clone());
    let who = pki.identity(Role::Manager);
    let mid = pki.node_as(who, DEFAULT_NODE_CERT_VALIDITY, T0);
    assert_eq!(mid.chain().len(), 2, "leaf + cross-signed root");
    assert_eq!(mid.chain()[1], cross);
    let leaf = mid.leaf();
    // Old-root path: leaf <- cross-signed (new key, signed by old) <- old root.
    assert!(is_signed_by(leaf, &cross));
    assert!(is_signed_by(&cross, &old_root));
    // New-root path: leaf <- new root.
    assert!(is_signed_by(leaf, &new_root));
    assert!(!is_signed_by(leaf, &old_root));
    // The old leaf verifies under the old root only.
    assert!(is_signed_by(old_leaf.leaf(), &old_root));
    assert!(!is_signed_by(old_leaf.leaf(), &new_root));
}

#[test]
fn rotation_marks_batches_and_converges_with_new_tokens() {
    let mut pki = TestPki::new(12, T0);
    let mut rng = ChaCha20Rng::seed_from_u64(12);
    let old_tokens = JoinTokens::generate(pki.ca().bundle_pem().as_bytes(), pki.rng());
    let mut records = BTreeMap::new();
    for i in 0..75 {
        let role = if i < 3 { Role::Manager } else { Role::Worker };
        let who: NodeIdentity = pki.identity(role);
        let csr = make_csr(&PrivateKey::generate().unwrap()).unwrap();
        records.insert(who.node_id, CertRecord::pending(who, csr));
    }
    let old_ca = pki.ca().clone();
    sign_all(&mut records, &mut pki, &old_ca, T0);

    let mut rotation =
        RootRotation::start(pki.ca(), PrivateKey::generate().unwrap(), T0, &mut rng).unwrap();
    let signer = rotation.signer().clone();
    let mut now = T0;
    let mut last_batch: Option<Timestamp> = None;
    let mut rotating_since: BTreeMap<Id, Timestamp> = BTreeMap::new();
    let mut batches = 0;
    loop {
        match rotation.poll(now, &statuses(&records)) {
            RotationStep::Rotate(ids) => {
                if let Some(prev) = last_batch {
                    assert!(now >= prev.plus(ROTATE_INTERVAL), "batches 3 s apart");
                }
                last_batch = Some(now);
                batches += 1;
                for id in ids {
                    records.get_mut(&id).unwrap().handle_rotate();
                    rotating_since.insert(id, now);
                }
                let in_rotate = records
                    .values()
                    .filter(|r| r.state() == CertState::Rotate)
                    .count();
                assert!(
                    in_rotate <= ROTATE_BATCH,
                    "{in_rotate} nodes rotating at once"
                );
            }
            RotationStep::Wait { until } => assert!(until > now),
            RotationStep::Converged => break,
        }
        // Nodes take 4 s to notice the mark and send a renewal; the signer then issues.
        for (id, since) in rotating_since.clone() {
            if now >= since.plus(Duration::from_secs(4)) {
                let rec = records.get_mut(&id).unwrap();
                let csr = make_csr(&PrivateKey::generate().unwrap()).unwrap();
                rec.handle_renewal(rec.identity(), csr);
                rotating_since.remove(&id);
            }
        }
        sign_all(&mut records, &mut pki, &signer, now);
        now = now.plus(Duration::from_secs(1));
        assert!(
            now < T0.plus(Duration::from_secs(600)),
            "rotation did not converge"
        );
    }
    assert!(batches >= 3, "75 nodes need at least three batches of 30");
    for rec in records.values() {
        assert!(is_signed_by(&rec.chain().unwrap()[0], signer.cert_der()));
        assert_eq!(rec.chain().unwrap().len(), 2);
    }

    let (root, tokens) = rotation.finish(pki.rng());
    assert!(root.intermediates().is_empty());
    assert_eq!(root.cert_der(), signer.cert_der());
    let bundle = root.bundle_pem();
    assert_eq!(
        tokens.token(Role::Worker).ca_digest(),
        &ca_digest(bundle.as_bytes())
    );
    assert_ne!(
        tokens.token(Role::Worker).ca_digest(),
        old_tokens.token(Role::Worker).ca_digest()
    );
    assert!(tokens.role_of(old_tokens.token(Role::Worker)).is_err());
    assert!(tokens.role_of(old_tokens.token(Role::Manager)).is_err());
}

#[test]
fn poll_converges_at_once_when_nothing_is_left_and_waits_between_batches() {
    let pki = TestPki::new(13, T0);
    let mut rng = ChaCha20Rng::seed_from_u64(13);
    let mut rotation =
        RootRotation::start(pki.ca(), PrivateKey::generate().unwrap(), T0, &mut rng).unwrap();
    assert_eq!(rotation.poll(T0, &[]), RotationStep::Converged);
    let status = NodeCertStatus {
        node_id: Id::from_u128(1),
        state: CertState::Issued,
        issuer_key_id: Some(vec![1, 2, 3]),
    };
    assert_eq!(
        rotation.poll(T0, std::slice::from_ref(&status)),
        RotationStep::Rotate(vec![Id::from_u128(1)])
    );
    assert_eq!(
        rotation.poll(
            T0.plus(Duration::from_secs(1)),
            std::slice::from_ref(&status)
        ),
        RotationStep::Wait {
            until: T0.plus(ROTATE_INTERVAL)
        }
    );
    // A node still pending is not marked, and the rotation is not converged while it waits.
    let pending = NodeCertStatus {
        state: CertState::Pending,
        issuer_key_id: None,
        ..status
    };
    let later = T0.plus(ROTATE_INTERVAL);
    assert_eq!(
        rotation.poll(later, &[pending]),
        RotationStep::Wait {
            until: later.plus(ROTATE_INTERVAL)
        }
    );
}
