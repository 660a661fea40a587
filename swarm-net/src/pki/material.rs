//! [`TlsMaterial`]: what a node presents and trusts on the wire, the type the RPC layer consumes.

use super::info::CertInfo;
use super::key::PrivateKey;
use crate::identity::NodeIdentity;
use crate::Error;

/// A node's TLS credentials: its certificate chain (leaf first, then intermediates), the leaf's
/// private key, and the root certificates it trusts (two during a root rotation). All DER.
///
/// Built only through [`TlsMaterial::new`], which checks that the leaf is a swarm node certificate
/// and that the key is the leaf's, so a holder can always ask [`TlsMaterial::identity`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsMaterial {
    chain: Vec<Vec<u8>>,
    key: PrivateKey,
    roots: Vec<Vec<u8>>,
    identity: NodeIdentity,
}

impl TlsMaterial {
    /// Checks and bundles a chain, its key and the trusted roots. Refuses an empty chain or root
    /// list, a leaf that is not a node certificate, and a key that does not match the leaf.
    pub fn new(
        chain: Vec<Vec<u8>>,
        key: PrivateKey,
        roots: Vec<Vec<u8>>,
    ) -> Result<TlsMaterial, Error> {
        let leaf = chain.first().ok_or_else(|| Error::MalformedCertificate {
            reason: "the certificate chain is empty".into(),
        })?;
        check_roots(&roots)?;
        let identity = NodeIdentity::from_cert(leaf)?;
        if CertInfo::parse(leaf)?.public_key_der != key.public_key_der()? {
            return Err(Error::MalformedKey {
                reason: "the private key does not belong to the node certificate".into(),
            });
        }
        Ok(TlsMaterial {
            chain,
            key,
            roots,
            identity,
        })
    }

    /// The chain to present, leaf first (DER).
    pub fn chain(&self) -> &[Vec<u8>] {
        &self.chain
    }

    /// The leaf certificate (DER).
    pub fn leaf(&self) -> &[u8] {
        // `new` refuses an empty chain.
        self.chain.first().map(Vec::as_slice).unwrap_or_default()
    }

    /// The leaf's private key (secret).
    pub fn key(&self) -> &PrivateKey {
        &self.key
    }

    /// The root certificates to trust (DER).
    pub fn roots(&self) -> &[Vec<u8>] {
        &self.roots
    }

    /// Who the leaf certificate says this node is.
    pub fn identity(&self) -> NodeIdentity {
        self.identity
    }

    /// The same credentials trusting `roots` instead (a root rotation changes the trust set without
    /// a new leaf).
    pub fn with_roots(mut self, roots: Vec<Vec<u8>>) -> Result<TlsMaterial, Error> {
        check_roots(&roots)?;
        self.roots = roots;
        Ok(self)
    }
}

/// Trusted roots: at least one, each a parsable CA certificate.
fn check_roots(roots: &[Vec<u8>]) -> Result<(), Error> {
    let bad = |reason: String| Error::MalformedCaBundle { reason };
    if roots.is_empty() {
        return Err(bad("no trusted root certificate".into()));
    }
    for (i, root) in roots.iter().enumerate() {
        let info = CertInfo::parse(root).map_err(|e| bad(format!("root {}: {e}", i + 1)))?;
        if !info.is_ca {
            return Err(bad(format!("root {} is not a CA certificate", i + 1)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use swarm_core::Timestamp;

    use super::*;
    use crate::identity::Role;
    use crate::pki::testing::TestPki;

    #[test]
    fn material_refuses_bad_roots_and_empty_chains() {
        let mut pki = TestPki::new(8, Timestamp::from_secs(1_800_000_000));
        let node = pki.node(Role::Worker);
        let chain = node.chain().to_vec();
        let key = node.key().clone();
        for roots in [vec![], vec![b"junk".to_vec()], vec![chain[0].clone()]] {
            assert!(matches!(
                TlsMaterial::new(chain.clone(), key.clone(), roots.clone()),
                Err(Error::MalformedCaBundle { .. })
            ));
            assert!(node.clone().with_roots(roots).is_err());
        }
        assert!(matches!(
            TlsMaterial::new(vec![], key.clone(), vec![pki.root_der()]),
            Err(Error::MalformedCertificate { .. })
        ));
        let other = TestPki::new(9, Timestamp::from_secs(1_800_000_000)).root_der();
        let both = node.with_roots(vec![pki.root_der(), other]).unwrap();
        assert_eq!(both.roots().len(), 2);
        assert_eq!(both.leaf(), &chain[0][..]);
    }
}
