//! [`NodeIdentity`]: who a peer is, read from the subject of its node certificate.
//!
//! A swarm node certificate names its holder in the subject: CN = node id, OU = role
//! (`swarm-manager` or `swarm-worker`), O = cluster id. [`NodeIdentity::from_cert`] only *reads*
//! those fields; whether the certificate chains to the cluster's roots and is within its validity is
//! the TLS verifier's job, done before the identity is trusted.

use std::fmt;

use swarm_core::Id;
use x509_parser::prelude::X509Name;

use crate::Error;

/// The organizational unit of a manager's certificate.
pub const MANAGER_OU: &str = "swarm-manager";
/// The organizational unit of a worker's certificate.
pub const WORKER_OU: &str = "swarm-worker";
/// The common name of every swarm root CA (and a SAN of every manager certificate).
pub const CA_CN: &str = "swarm-ca";

/// A node's role as its certificate states it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// A manager: runs raft, the control API, the dispatcher and the CA signer.
    Manager,
    /// A worker: runs tasks.
    Worker,
}

impl Role {
    /// The certificate OU for this role (`swarm-manager` or `swarm-worker`).
    pub const fn ou(self) -> &'static str {
        match self {
            Role::Manager => MANAGER_OU,
            Role::Worker => WORKER_OU,
        }
    }

    /// The role whose OU is `ou`, if it is one.
    pub fn from_ou(ou: &str) -> Option<Role> {
        match ou {
            MANAGER_OU => Some(Role::Manager),
            WORKER_OU => Some(Role::Worker),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.ou())
    }
}

/// A node's identity: the node id, role and cluster its certificate was issued for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodeIdentity {
    /// The node id (certificate CN).
    pub node_id: Id,
    /// The node's role (certificate OU).
    pub role: Role,
    /// The cluster id (certificate O).
    pub cluster_id: Id,
}

impl NodeIdentity {
    /// Reads the identity from a DER certificate's subject. The subject must hold exactly one CN,
    /// one OU and one O; CN and O must be swarm ids and OU a role. The certificate's signature and
    /// validity are NOT checked here.
    pub fn from_cert(der: &[u8]) -> Result<NodeIdentity, Error> {
        Self::from_subject(crate::pki::info::parse(der)?.subject())
    }

    fn from_subject(subject: &X509Name<'_>) -> Result<NodeIdentity, Error> {
        let cn = single(subject.iter_common_name(), "CN (node id)")?;
        let ou = single(subject.iter_organizational_unit(), "OU (role)")?;
        let o = single(subject.iter_organization(), "O (cluster id)")?;
        let node_id = Id::parse(cn).map_err(|e| Error::NotANodeCertificate {
            reason: format!("CN is not a node id: {e}"),
        })?;
        let role = Role::from_ou(ou).ok_or_else(|| Error::NotANodeCertificate {
            reason: format!("OU {:?} is neither {MANAGER_OU} nor {WORKER_OU}", clip(ou)),
        })?;
        let cluster_id = Id::parse(o).map_err(|e| Error::NotANodeCertificate {
            reason: format!("O is not a cluster id: {e}"),
        })?;
        Ok(NodeIdentity {
            node_id,
            role,
            cluster_id,
        })
    }
}

impl fmt::Display for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "node {} ({}) of cluster {}",
            self.node_id, self.role, self.cluster_id
        )
    }
}

/// The one value of a subject attribute that must appear exactly once.
fn single<'a, 'b>(
    mut values: impl Iterator<Item = &'b x509_parser::x509::AttributeTypeAndValue<'a>>,
    what: &str,
) -> Result<&'a str, Error>
where
    'a: 'b,
{
    let first = values.next().ok_or_else(|| Error::NotANodeCertificate {
        reason: format!("the subject has no {what}"),
    })?;
    if values.next().is_some() {
        return Err(Error::NotANodeCertificate {
            reason: format!("the subject has more than one {what}"),
        });
    }
    first.as_str().map_err(|_| Error::NotANodeCertificate {
        reason: format!("the subject's {what} is not a text string"),
    })
}

/// At most 64 characters of untrusted text, for error messages.
fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::testing::TestPki;
    use swarm_core::Timestamp;

    #[test]
    fn role_ou_round_trips() {
        for role in [Role::Manager, Role::Worker] {
            assert_eq!(Role::from_ou(role.ou()), Some(role));
        }
        assert_eq!(Role::from_ou("swarm-ca"), None);
        assert_eq!(Role::from_ou("Swarm-Manager"), None);
    }

    #[test]
    fn non_node_certificates_are_refused_with_the_reason() {
        let mut pki = TestPki::new(1, Timestamp::from_secs(1_800_000_000));
        // The root has CN swarm-ca and no OU or O.
        let err = NodeIdentity::from_cert(&pki.root_der()).unwrap_err();
        assert!(
            matches!(&err, Error::NotANodeCertificate { reason } if reason.contains("OU")),
            "{err}"
        );
        let node = pki.node(Role::Worker);
        assert_eq!(
            NodeIdentity::from_cert(node.leaf()).unwrap(),
            node.identity()
        );
        let mut trailing = node.leaf().to_vec();
        trailing.push(0);
        for bad in [&b""[..], b"\x30\x00", &node.leaf()[..10], &trailing] {
            assert!(matches!(
                NodeIdentity::from_cert(bad),
                Err(Error::MalformedCertificate { .. })
            ));
        }
    }
}
