//! Test support (feature `testing`): a throw-away cluster CA that hands out node credentials in one
//! call, for tests of this crate and of its users.
//!
//! ```
//! use swarm_net::pki::testing::{system_now, TestPki};
//! use swarm_net::Role;
//! let mut pki = TestPki::new(7, system_now());
//! let worker = pki.node(Role::Worker);
//! assert_eq!(worker.identity().role, Role::Worker);
//! assert_eq!(worker.identity().cluster_id, pki.cluster_id());
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use swarm_core::{Id, Timestamp};

use super::{make_csr, PrivateKey, RootCa, TlsMaterial, DEFAULT_NODE_CERT_VALIDITY};
use crate::identity::{NodeIdentity, Role};

/// The wall clock as a [`Timestamp`]: real TLS stacks check certificates against it, so tests that
/// hand certificates to one need them valid now. The only clock read in `pki`, and test-only.
pub fn system_now() -> Timestamp {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
}

/// A cluster CA for tests: a fresh root, a random cluster id, a seeded RNG for ids and serials.
#[derive(Debug)]
pub struct TestPki {
    ca: RootCa,
    cluster_id: Id,
    now: Timestamp,
    rng: ChaCha20Rng,
}

impl TestPki {
    /// A new CA with its own root key, issuing certificates valid from `now`. Different seeds give
    /// different cluster ids (and every call a different root key).
    pub fn new(seed: u64, now: Timestamp) -> TestPki {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let cluster_id = Id::generate(&mut rng);
        let key = PrivateKey::generate().expect("ring generates P-256 keys");
        let ca = RootCa::generate(key, now, &mut rng).expect("a fresh root signs");
        TestPki {
            ca,
            cluster_id,
            now,
            rng,
        }
    }

    /// The CA.
    pub fn ca(&self) -> &RootCa {
        &self.ca
    }

    /// Replaces the CA (for root rotation tests).
    pub fn set_ca(&mut self, ca: RootCa) {
        self.ca = ca;
    }

    /// The root certificate (DER).
    pub fn root_der(&self) -> Vec<u8> {
        self.ca.cert_der().to_vec()
    }

    /// The cluster id this CA puts in the O field.
    pub fn cluster_id(&self) -> Id {
        self.cluster_id
    }

    /// The seeded RNG, for tests that need more randomness from the same seed.
    pub fn rng(&mut self) -> &mut ChaCha20Rng {
        &mut self.rng
    }

    /// A fresh node id of this cluster with `role`.
    pub fn identity(&mut self, role: Role) -> NodeIdentity {
        NodeIdentity {
            node_id: Id::generate(&mut self.rng),
            role,
            cluster_id: self.cluster_id,
        }
    }

    /// Credentials for a new node with `role`, valid 90 days from the CA's `now`, trusting this root.
    pub fn node(&mut self, role: Role) -> TlsMaterial {
        let identity = self.identity(role);
        self.node_as(identity, DEFAULT_NODE_CERT_VALIDITY, self.now)
    }

    /// Credentials naming exactly `identity` (any cluster id), valid for `validity` from `now`
    /// (backdated one hour): a past `now` and a short validity give an expired certificate.
    pub fn node_as(
        &mut self,
        identity: NodeIdentity,
        validity: Duration,
        now: Timestamp,
    ) -> TlsMaterial {
        let key = PrivateKey::generate().expect("ring generates P-256 keys");
        let csr = make_csr(&key).expect("a fresh key makes a CSR");
        let issued = self
            .ca
            .issue(&csr, &identity, validity, now, &mut self.rng)
            .expect("the test CA issues");
        TlsMaterial::new(issued.chain, key, vec![self.root_der()])
            .expect("an issued chain matches its key")
    }
}
