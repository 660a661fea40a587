//! The CA's state in the store, and the conversions between it and swarm-net's PKI types:
//! creating the cluster CA at `swarm init` ([`new_cluster_ca`]), starting a root rotation
//! ([`start_root_rotation`]), and loading the signer ([`signing_ca`]).

use rand_core::CryptoRngCore;
use swarm_core::objects::cluster::{
    JoinTokens as StoredTokens, RootCa as StoredRootCa, RootRotation,
};
use swarm_core::objects::node::{IssuanceState, NodeCertificate, NodeRole};
use swarm_core::{CommitError, Id, SecretData, Timestamp};
use swarm_net::pki::bundle::{parse_pem, to_pem};
use swarm_net::pki::{
    make_csr, CertInfo, PrivateKey, RootCa, TlsMaterial, DEFAULT_NODE_CERT_VALIDITY,
};
use swarm_net::{JoinToken, JoinTokens, NodeIdentity, Role};

/// Why a CA operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The PKI refused (bad certificate or key, signing failure...).
    #[error(transparent)]
    Pki(#[from] swarm_net::Error),
    /// The store has no cluster object yet.
    #[error("the cluster object does not exist yet")]
    NoCluster,
    /// The cluster's CA has no signing key in the store (an external CA), so it cannot sign.
    #[error("the cluster CA has no signing key; node certificates cannot be issued here")]
    NoSigningKey,
    /// A stored CA field does not parse.
    #[error("the stored root CA is corrupt: {0}")]
    Corrupt(String),
    /// The change could not be committed.
    #[error(transparent)]
    Commit(#[from] CommitError),
}

/// What `swarm init` needs: the cluster's CA record and the first manager's credentials.
pub struct NewClusterCa {
    /// The value for `Cluster.root_ca`: root certificate, key, digest and both join tokens.
    pub root_ca: StoredRootCa,
    /// The first manager's certificate chain, key and roots.
    pub material: TlsMaterial,
    /// The record for the first manager's `Node.certificate` (issued).
    pub certificate: NodeCertificate,
}

impl std::fmt::Debug for NewClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewClusterCa")
            .field("root_ca", &"[CA record, key redacted]")
            .field("identity", &self.material.identity())
            .finish()
    }
}

/// Creates the cluster CA at `swarm init`: a new root (CN swarm-ca, 20 years), worker and manager
/// join tokens pinning it, and a manager certificate for `node_id` in cluster `cluster_id`.
pub fn new_cluster_ca(
    cluster_id: Id,
    node_id: Id,
    now: Timestamp,
    rng: &mut (impl CryptoRngCore + ?Sized),
) -> Result<NewClusterCa, CaError> {
    let root = RootCa::generate(PrivateKey::generate()?, now, rng)?;
    let tokens = JoinTokens::generate(root.bundle_pem().as_bytes(), rng);
    let root_ca = stored_root(&root, &tokens);
    let key = PrivateKey::generate()?;
    let csr = make_csr(&key)?;
    let identity = NodeIdentity {
        node_id,
        role: Role::Manager,
        cluster_id,
    };
    let issued = root.issue(&csr, &identity, DEFAULT_NODE_CERT_VALIDITY, now, rng)?;
    let certificate = NodeCertificate {
        role: NodeRole::Manager,
        csr,
        state: IssuanceState::Issued,
        error: String::new(),
        chain: issued.chain.clone(),
        cn: node_id.to_string(),
    };
    let material = TlsMaterial::new(issued.chain, key, vec![root.cert_der().to_vec()])?;
    Ok(NewClusterCa {
        root_ca,
        material,
        certificate,
    })
}

/// The store record of `root` (whose key it holds) and `tokens`.
fn stored_root(root: &RootCa, tokens: &JoinTokens) -> StoredRootCa {
    StoredRootCa {
        ca_cert_pem: root.bundle_pem(),
        ca_cert_digest: tokens.token(Role::Worker).ca_digest_text(),
        join_tokens: StoredTokens {
            worker: tokens.token(Role::Worker).expose_text().to_string(),
            manager: tokens.token(Role::Manager).expose_text().to_string(),
        },
        ca_key: Some(SecretData::new(root.key().pkcs8_der().to_vec())),
        root_rotation: None,
        last_forced_rotation: 0,
    }
}

/// Starts a root rotation on the cluster's CA record (`docker swarm ca --rotate`): a new root and
/// key, cross-signed by the current root. From then on the signer issues from the new key with the
/// cross-signed certificate as intermediate, and nodes trust both roots; the signer marks nodes
/// `Rotate` in batches and ends the rotation when all hold a new certificate. A rotation already in
/// progress is replaced by the new one (as SwarmKit does). The join tokens stay until the end.
pub fn start_root_rotation(
    root_ca: &mut StoredRootCa,
    now: Timestamp,
    rng: &mut (impl CryptoRngCore + ?Sized),
) -> Result<(), CaError> {
    let current = current_root(root_ca)?;
    let rotation =
        swarm_net::pki::RootRotation::start(&current, PrivateKey::generate()?, now, rng)?;
    let signer = rotation.signer();
    root_ca.root_rotation = Some(RootRotation {
        ca_cert_pem: signer.bundle_pem(),
        ca_key: SecretData::new(signer.key().pkcs8_der().to_vec()),
        cross_signed_ca_cert_pem: to_pem(&[rotation.cross_signed().to_vec()]),
    });
    Ok(())
}

/// Ends a rotation: the new root alone, with new join tokens pinning it.
pub(crate) fn finish_root_rotation(
    root_ca: &mut StoredRootCa,
    rng: &mut (impl CryptoRngCore + ?Sized),
) -> Result<(), CaError> {
    let Some(rotation) = root_ca.root_rotation.take() else {
        return Ok(());
    };
    let new = RootCa::from_parts(
        single_cert(&rotation.ca_cert_pem)?,
        PrivateKey::from_pkcs8_der(rotation.ca_key.expose())?,
    )?;
    let tokens = JoinTokens::generate(new.bundle_pem().as_bytes(), rng);
    let last = root_ca.last_forced_rotation;
    *root_ca = stored_root(&new, &tokens);
    root_ca.last_forced_rotation = last;
    Ok(())
}

/// The current root (not the one being rotated to), able to sign.
pub(crate) fn current_root(root_ca: &StoredRootCa) -> Result<RootCa, CaError> {
    let key = root_ca.ca_key.as_ref().ok_or(CaError::NoSigningKey)?;
    Ok(RootCa::from_parts(
        single_cert(&root_ca.ca_cert_pem)?,
        PrivateKey::from_pkcs8_der(key.expose())?,
    )?)
}

/// The CA that signs now: the new root with the cross-signed intermediate during a rotation, the
/// current root otherwise.
pub fn signing_ca(root_ca: &StoredRootCa) -> Result<RootCa, CaError> {
    match &root_ca.root_rotation {
        None => current_root(root_ca),
        Some(r) => {
            let new = RootCa::from_parts(
                single_cert(&r.ca_cert_pem)?,
                PrivateKey::from_pkcs8_der(r.ca_key.expose())?,
            )?;
            Ok(new.with_intermediates(vec![single_cert(&r.cross_signed_ca_cert_pem)?]))
        }
    }
}

/// The roots every node must trust now (DER): the current root, and the new one during a rotation.
pub fn trusted_roots(root_ca: &StoredRootCa) -> Result<Vec<Vec<u8>>, CaError> {
    let mut roots = vec![single_cert(&root_ca.ca_cert_pem)?];
    if let Some(r) = &root_ca.root_rotation {
        roots.push(single_cert(&r.ca_cert_pem)?);
    }
    Ok(roots)
}

/// The key id of the root that issues from now on (the new one during a rotation).
pub(crate) fn signer_key_id(root_ca: &StoredRootCa) -> Result<Option<Vec<u8>>, CaError> {
    let pem = match &root_ca.root_rotation {
        Some(r) => &r.ca_cert_pem,
        None => &root_ca.ca_cert_pem,
    };
    Ok(CertInfo::parse(&single_cert(pem)?)?.subject_key_id)
}

/// The cluster's current join tokens, parsed.
pub(crate) fn current_tokens(root_ca: &StoredRootCa) -> Result<(JoinToken, JoinToken), CaError> {
    let parse = |t: &str| JoinToken::parse(t).map_err(|e| CaError::Corrupt(e.to_string()));
    Ok((
        parse(&root_ca.join_tokens.worker)?,
        parse(&root_ca.join_tokens.manager)?,
    ))
}

fn single_cert(pem: &str) -> Result<Vec<u8>, CaError> {
    let mut certs = parse_pem(pem.as_bytes())?;
    if certs.len() != 1 {
        return Err(CaError::Corrupt(format!(
            "expected one certificate, found {}",
            certs.len()
        )));
    }
    Ok(certs.remove(0))
}

/// The PKI role of a store role.
pub fn net_role(role: NodeRole) -> Role {
    match role {
        NodeRole::Manager => Role::Manager,
        NodeRole::Worker => Role::Worker,
    }
}

/// The store role of a PKI role.
pub fn node_role(role: Role) -> NodeRole {
    match role {
        Role::Manager => NodeRole::Manager,
        Role::Worker => NodeRole::Worker,
    }
}
