//! Who is on the other end of a connection, read from its verified certificate, and the policy
//! hook that can refuse a peer whose certificate is still cryptographically valid.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::pki_types::CertificateDer;
use swarm_core::{Clock, Timestamp};

use crate::identity::NodeIdentity;
use crate::pki::deny::DenySet;
use crate::pki::CertInfo;
use crate::rpc::status::{Code, Status};

/// The verified peer of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerInfo {
    /// Identity from the certificate's subject.
    pub identity: NodeIdentity,
    /// When the certificate stops being valid.
    pub not_after: Timestamp,
}

impl PeerInfo {
    /// Reads the peer of an established connection: `Ok(None)` when it presented no certificate.
    /// The chain was verified by TLS during the handshake; this only reads the leaf.
    pub(crate) fn of(conn: &quinn::Connection) -> Result<Option<PeerInfo>, String> {
        let Some(any) = conn.peer_identity() else {
            return Ok(None);
        };
        let certs = any
            .downcast::<Vec<CertificateDer<'static>>>()
            .map_err(|_| {
                "the TLS session's peer identity is not a certificate chain".to_string()
            })?;
        let Some(leaf) = certs.first() else {
            return Ok(None);
        };
        let identity = NodeIdentity::from_cert(leaf).map_err(|e| e.to_string())?;
        let info = CertInfo::parse(leaf).map_err(|e| e.to_string())?;
        Ok(Some(PeerInfo {
            identity,
            not_after: info.not_after,
        }))
    }
}

/// An embedder's extra admission rule, asked for every call from a peer with a certificate (not
/// only at the handshake, so a node removed while connected is refused from its next call on).
///
/// To ensure correctness: `check` must be fast and must not block (it runs on every call), and must
/// answer from state the embedder keeps current (for example the CA's deny set of removed nodes).
pub trait PeerPolicy: Send + Sync + 'static {
    /// `Err` refuses the call with that status (use [`Code::Unauthenticated`]).
    fn check(&self, peer: &PeerInfo, now: Timestamp) -> Result<(), Status>;
}

impl<F> PeerPolicy for F
where
    F: Fn(&PeerInfo, Timestamp) -> Result<(), Status> + Send + Sync + 'static,
{
    fn check(&self, peer: &PeerInfo, now: Timestamp) -> Result<(), Status> {
        self(peer, now)
    }
}

/// The CA's deny set as the admission rule: a removed node is refused until its certificate's expiry
/// plus the grace the set keeps. The embedder holds the same `Arc<RwLock<DenySet>>` and records
/// removals in it; the server reads it on every call.
impl PeerPolicy for std::sync::RwLock<DenySet> {
    fn check(&self, peer: &PeerInfo, now: Timestamp) -> Result<(), Status> {
        let denied = self
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_denied(&peer.identity.node_id, now);
        if denied {
            return Err(Status::new(
                Code::Unauthenticated,
                format!("{} was removed from the cluster", peer.identity),
            ));
        }
        Ok(())
    }
}

/// Admits every peer (expiry is still checked by the server itself).
#[derive(Debug, Clone, Copy, Default)]
pub struct AdmitAll;

impl PeerPolicy for AdmitAll {
    fn check(&self, _peer: &PeerInfo, _now: Timestamp) -> Result<(), Status> {
        Ok(())
    }
}

/// Refuses a peer whose certificate has expired since the handshake (TLS checked it then; a
/// connection can outlive the certificate).
pub(crate) fn check_expiry(peer: &PeerInfo, now: Timestamp) -> Result<(), Status> {
    if now > peer.not_after {
        return Err(Status::new(
            Code::Unauthenticated,
            format!(
                "the certificate of {} has expired; renew it and reconnect",
                peer.identity
            ),
        ));
    }
    Ok(())
}

/// The wall clock, for servers not given a virtual one.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Timestamp(nanos)
    }
}

/// A shared clock handle.
pub(crate) type SharedClock = Arc<dyn Clock>;
