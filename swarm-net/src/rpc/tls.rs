//! TLS for the RPC layer: rustls configurations whose certificate, key and roots can be swapped
//! while connections are open.
//!
//! [`TlsState`] holds the node's current [`TlsMaterial`]. The rustls configurations built from it
//! never copy the material: they hold resolvers and verifiers that read the state on every
//! handshake, so [`TlsState::update`] (renewal, root rotation) takes effect for the next handshake
//! and leaves established connections and their calls alone.
//!
//! Verification, both ways, is "chains to one of the cluster roots" (webpki, with the time and
//! key-usage checks it does). Names are deliberately not checked by TLS: a swarm peer is named by
//! its certificate's subject, which the client compares with the identity the caller expects after
//! the handshake (see `client.rs`), and the server reads for the authorization table.
//!
//! TLS 1.3 only (QUIC requires it), ring only, ALPN [`ALPN`].

use std::fmt;
use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

use crate::identity::NodeIdentity;
use crate::pki::TlsMaterial;

/// The one application protocol spoken: version 1 of swarm's RPC framing.
pub const ALPN: &[u8] = b"swarm/1";

/// Why TLS material could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A root certificate could not be added to the trust store.
    #[error("root certificate refused: {0}")]
    Root(rustls::Error),
    /// The trust store could not be turned into a client verifier (for example: no roots).
    #[error("cannot verify clients with these roots: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// The private key is not one rustls (ring) can sign with.
    #[error("node private key refused: {0}")]
    Key(rustls::Error),
    /// rustls refused the configuration (for example: no TLS 1.3 suite).
    #[error("TLS configuration refused: {0}")]
    Config(rustls::Error),
    /// quinn refused the rustls configuration (it needs TLS 1.3 and an initial suite).
    #[error("QUIC refused the TLS configuration: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
}

/// How a client decides whether to trust a server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerTrust {
    /// It must chain to the current roots.
    Roots,
    /// Anything (the handshake signature is still checked). Only for a joining node fetching the
    /// CA bundle, which it then checks against the join token's digest.
    Unverified,
}

struct Current {
    certified: Option<Arc<CertifiedKey>>,
    identity: Option<NodeIdentity>,
    roots: Arc<RootCertStore>,
    client_verifier: Arc<dyn ClientCertVerifier>,
}

/// A node's TLS credentials (certificate chain, key, trusted roots), swappable at run time.
pub struct TlsState {
    provider: Arc<CryptoProvider>,
    trust: ServerTrust,
    current: RwLock<Arc<Current>>,
    /// Stateless-reset key derived from the node key at construction (see [`TlsState::reset_key`]).
    reset_seed: Option<zeroize::Zeroizing<[u8; 32]>>,
}

impl fmt::Debug for TlsState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never prints key material; the identity is enough to tell states apart.
        f.debug_struct("TlsState")
            .field("identity", &self.identity())
            .field("trust", &self.trust)
            .finish_non_exhaustive()
    }
}

impl TlsState {
    /// Credentials of a node that has its certificate.
    pub fn new(material: &TlsMaterial) -> Result<Arc<TlsState>, TlsError> {
        let provider = ring_provider();
        let current = build(&provider, Some(material), material.roots())?;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"swarm-net quic stateless reset v1\0");
        ctx.update(material.key().pkcs8_der());
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(ctx.finish().as_ref());
        Ok(Arc::new(TlsState {
            provider,
            trust: ServerTrust::Roots,
            current: RwLock::new(Arc::new(current)),
            reset_seed: Some(seed),
        }))
    }

    /// Credentials of a joining node: no certificate, servers verified against the pinned `roots`
    /// (DER). It can call only [`crate::rpc::Access::Anonymous`] methods.
    pub fn joining(roots: &[Vec<u8>]) -> Result<Arc<TlsState>, TlsError> {
        let provider = ring_provider();
        let current = build(&provider, None, roots)?;
        Ok(Arc::new(TlsState {
            provider,
            trust: ServerTrust::Roots,
            current: RwLock::new(Arc::new(current)),
            reset_seed: None,
        }))
    }

    /// Credentials that trust any server: for the one call a joining node makes before it knows
    /// the roots (fetching the CA bundle, which the caller must check against the join token).
    pub fn unverified() -> Result<Arc<TlsState>, TlsError> {
        let provider = ring_provider();
        let roots = Arc::new(RootCertStore::empty());
        let current = Current {
            certified: None,
            identity: None,
            roots,
            client_verifier: Arc::new(NoClientAuth),
        };
        Ok(Arc::new(TlsState {
            provider,
            trust: ServerTrust::Unverified,
            current: RwLock::new(Arc::new(current)),
            reset_seed: None,
        }))
    }

    /// Installs new material (a renewed certificate, or new roots during a root rotation). The next
    /// handshake, in either direction, uses it; open connections and their calls are unaffected.
    pub fn update(&self, material: &TlsMaterial) -> Result<(), TlsError> {
        let next = Arc::new(build(&self.provider, Some(material), material.roots())?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = next;
        Ok(())
    }

    /// The identity in the current certificate, if the node has one.
    pub fn identity(&self) -> Option<NodeIdentity> {
        self.current().identity
    }

    /// The QUIC endpoint configuration for this node: its stateless-reset key and connection-id
    /// key are derived from the node key this state was created with (random without one). A
    /// node restarted with the same key recognises the connection ids of its previous life and
    /// answers their packets with a reset the peer accepts, so the peer reconnects at once instead
    /// of waiting out its idle timeout. A restart after a renewal to a new key falls back to the
    /// idle timeout.
    pub fn endpoint_config(&self) -> quinn::EndpointConfig {
        let Some(seed) = &self.reset_seed else {
            return quinn::EndpointConfig::default();
        };
        let reset = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &seed[..]);
        let cid_tag = ring::hmac::sign(&reset, b"connection id key");
        let mut cid_key = [0u8; 8];
        cid_key.copy_from_slice(&cid_tag.as_ref()[..8]);
        let cid_key = u64::from_le_bytes(cid_key);
        let mut config = quinn::EndpointConfig::new(Arc::new(reset));
        config.cid_generator(move || {
            Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
        });
        config
    }

    fn current(&self) -> Arc<Current> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A server configuration (TLS 1.3, ALPN, optional client certificate) reading this state.
    pub(crate) fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(TlsError::Config)?
            .with_client_cert_verifier(Arc::new(Swapped(self.clone())))
            .with_cert_resolver(Arc::new(Swapped(self.clone())));
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }

    /// A client configuration (TLS 1.3, ALPN, our certificate if any) reading this state.
    pub(crate) fn client_config(self: &Arc<Self>) -> Result<rustls::ClientConfig, TlsError> {
        let mut config = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(TlsError::Config)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Swapped(self.clone())))
            .with_client_cert_resolver(Arc::new(Swapped(self.clone())));
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }
}

/// The ring provider. rustls deprecates it for lacking post-quantum key exchange; ring is still
/// the one backend the project allows (no aws-lc), and both ends of every connection are ours.
#[allow(deprecated)]
fn ring_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn build(
    provider: &Arc<CryptoProvider>,
    material: Option<&TlsMaterial>,
    root_ders: &[Vec<u8>],
) -> Result<Current, TlsError> {
    let mut roots = RootCertStore::empty();
    for der in root_ders {
        roots
            .add(CertificateDer::from(der.clone()))
            .map_err(TlsError::Root)?;
    }
    let roots = Arc::new(roots);
    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .allow_unauthenticated()
            .build()?;
    let (certified, identity) = match material {
        None => (None, None),
        Some(m) => {
            // The DER copy handed to rustls lives only until ring has parsed it.
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(m.key().pkcs8_der().to_vec()));
            let signer = provider
                .key_provider
                .load_private_key(key)
                .map_err(TlsError::Key)?;
            // Inside a simulation, handshake signatures of one length (`crate::siglen`).
            let signer: Arc<dyn rustls::sign::SigningKey> = if crate::siglen::fixed_length() {
                Arc::new(crate::siglen::FixedLenKey(signer))
            } else {
                signer
            };
            let chain = m
                .chain()
                .iter()
                .map(|c| CertificateDer::from(c.clone()))
                .collect();
            (
                Some(Arc::new(CertifiedKey::new(chain, signer))),
                Some(m.identity()),
            )
        }
    };
    Ok(Current {
        certified,
        identity,
        roots,
        client_verifier,
    })
}

/// The resolvers and verifiers handed to rustls: each reads [`TlsState`]'s current material.
struct Swapped(Arc<TlsState>);

impl fmt::Debug for Swapped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Swapped")
    }
}

impl ResolvesServerCert for Swapped {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.current().certified.clone()
    }
}

impl ResolvesClientCert for Swapped {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.0.current().certified.clone()
    }

    fn has_certs(&self) -> bool {
        self.0.current().certified.is_some()
    }
}

impl ClientCertVerifier for Swapped {
    fn offer_client_auth(&self) -> bool {
        true
    }

    // Optional at the handshake so joiners can reach the CA methods; every other method refuses a
    // connection without a certificate (see `method::authorize`).
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints are optional in TLS 1.3, and a swarm node has exactly one certificate to offer.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0
            .current()
            .client_verifier
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0
            .provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl ServerCertVerifier for Swapped {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.0.trust == ServerTrust::Unverified {
            return Ok(ServerCertVerified::assertion());
        }
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.0.current().roots,
            intermediates,
            now,
            self.0.provider.signature_verification_algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ClientCertVerifier::verify_tls12_signature(self, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ClientCertVerifier::verify_tls13_signature(self, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ClientCertVerifier::supported_verify_schemes(self)
    }
}

/// The client verifier of a state that has no roots (the unverified joiner's): it never serves, but
/// the type needs one.
#[derive(Debug)]
struct NoClientAuth;

impl ClientCertVerifier for NoClientAuth {
    fn offer_client_auth(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Err(rustls::Error::General(
            "this endpoint trusts no client certificate".into(),
        ))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not offered".into()))
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General(
            "this endpoint trusts no client certificate".into(),
        ))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        Vec::new()
    }
}
