//! [`RootCa`]: the cluster's root certificate authority, and issuing node certificates from CSRs.
//!
//! The root is ECDSA P-256, CN `swarm-ca`, valid 20 years (SwarmKit's 630,720,000 s). A node
//! certificate is built from the CSR's public key only: the CA sets the whole subject (CN node id,
//! OU role, O cluster id) and SANs [role, node id] (+ `swarm-ca` for managers), whatever the CSR asked
//! for. Every certificate is backdated one hour so that a peer whose clock is a little behind still
//! accepts it. Time and serial-number randomness are arguments.

use std::sync::Arc;
use std::time::Duration;

use rand_core::CryptoRngCore;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyUsagePurpose, SanType, SerialNumber,
};
use swarm_core::Timestamp;
use time::OffsetDateTime;

use super::info::CertInfo;
use super::key::{signing, PrivateKey, SigningPair};
use crate::identity::{NodeIdentity, Role, CA_CN};
use crate::Error;

/// Lifetime of a root CA certificate: 20 years of 365 days, as SwarmKit.
pub const ROOT_CA_VALIDITY: Duration = Duration::from_secs(630_720_000);
/// Default lifetime of a node certificate (`--cert-expiry`): 90 days.
pub const DEFAULT_NODE_CERT_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);
/// Shortest node certificate lifetime accepted.
pub const MIN_NODE_CERT_VALIDITY: Duration = Duration::from_secs(3600);
/// How far before "now" every certificate's validity starts, to absorb clock skew.
pub const CERT_BACKDATE: Duration = Duration::from_secs(3600);

/// A certificate chain just issued, leaf first, with its validity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedCert {
    /// DER certificates: the node certificate, then any intermediate (the cross-signed root during a
    /// root rotation).
    pub chain: Vec<Vec<u8>>,
    /// Start of validity (issue time minus [`CERT_BACKDATE`]).
    pub not_before: Timestamp,
    /// End of validity.
    pub not_after: Timestamp,
}

/// A root CA able to sign: its self-signed certificate, its key, and the intermediates appended to
/// every chain it issues (empty except while a root rotation is in progress).
#[derive(Clone)]
pub struct RootCa {
    cert_der: Vec<u8>,
    key: PrivateKey,
    // The key parsed once: ring checks the public key on every parse, which cost as much as a
    // signature when it was redone per issued certificate.
    pair: Arc<SigningPair>,
    // End of the root's validity: no certificate it issues outlives it.
    not_after: Timestamp,
    intermediates: Vec<Vec<u8>>,
}

impl RootCa {
    /// A new self-signed root (CN `swarm-ca`, 20 years) for `key`, valid from `now` minus the backdate.
    pub fn generate(
        key: PrivateKey,
        now: Timestamp,
        rng: &mut (impl CryptoRngCore + ?Sized),
    ) -> Result<RootCa, Error> {
        let pair = key.signing_pair()?;
        let cert = root_params(now, rng).self_signed(&pair).map_err(signing)?;
        Ok(RootCa {
            cert_der: cert.der().to_vec(),
            key,
            pair: Arc::new(pair),
            not_after: window(now, ROOT_CA_VALIDITY).1,
            intermediates: Vec::new(),
        })
    }

    /// Loads a root from its certificate and key (as stored by a manager). Refuses a certificate that
    /// is not a CA or whose public key is not `key`'s.
    pub fn from_parts(cert_der: Vec<u8>, key: PrivateKey) -> Result<RootCa, Error> {
        let info = CertInfo::parse(&cert_der)?;
        if !info.is_ca {
            return Err(Error::MalformedCertificate {
                reason: "the root certificate is not a CA certificate".into(),
            });
        }
        if info.public_key_der != key.public_key_der()? {
            return Err(Error::CaKeyMismatch);
        }
        let pair = Arc::new(key.signing_pair()?);
        Ok(RootCa {
            cert_der,
            key,
            pair,
            not_after: info.not_after,
            intermediates: Vec::new(),
        })
    }

    /// This root with `intermediates` appended to every chain it issues from now on.
    pub fn with_intermediates(mut self, intermediates: Vec<Vec<u8>>) -> RootCa {
        self.intermediates = intermediates;
        self
    }

    /// The self-signed root certificate (DER).
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The signing key (secret).
    pub fn key(&self) -> &PrivateKey {
        &self.key
    }

    /// End of the root certificate's validity.
    pub fn not_after(&self) -> Timestamp {
        self.not_after
    }

    /// The intermediates appended to issued chains.
    pub fn intermediates(&self) -> &[Vec<u8>] {
        &self.intermediates
    }

    /// The root certificate as one PEM block with a trailing newline: the bundle whose SHA-256 a join
    /// token pins.
    pub fn bundle_pem(&self) -> String {
        super::bundle::to_pem(std::slice::from_ref(&self.cert_der))
    }

    /// Issues a node certificate for the public key in `csr_der` (whose signature must verify),
    /// naming `identity` and valid for `validity` from `now` (but never past the root's own expiry).
    /// The CSR's subject and extensions are ignored.
    pub fn issue(
        &self,
        csr_der: &[u8],
        identity: &NodeIdentity,
        validity: Duration,
        now: Timestamp,
        rng: &mut (impl CryptoRngCore + ?Sized),
    ) -> Result<IssuedCert, Error> {
        if validity < MIN_NODE_CERT_VALIDITY {
            return Err(Error::ExpiryTooShort {
                requested: validity,
                minimum: MIN_NODE_CERT_VALIDITY,
            });
        }
        let mut csr = CertificateSigningRequestParams::from_der(&csr_der.into()).map_err(|e| {
            Error::MalformedCsr {
                reason: e.to_string(),
            }
        })?;
        let (not_before, not_after) = window(now, validity);
        // A chain is only as valid as its root: a certificate issued near the end of the root's life
        // ends with it (the operator must rotate the root before then).
        let not_after = not_after.min(self.not_after);
        csr.params = node_params(identity, not_before, not_after, rng)?;
        let issuer = Issuer::from_ca_cert_der(&self.cert_der.as_slice().into(), &*self.pair)
            .map_err(signing)?;
        let cert = csr.signed_by(&issuer).map_err(signing)?;
        let mut chain = Vec::with_capacity(1 + self.intermediates.len());
        chain.push(cert.der().to_vec());
        chain.extend(self.intermediates.iter().cloned());
        Ok(IssuedCert {
            chain,
            not_before,
            not_after,
        })
    }

    /// A certificate for `new`'s subject and key signed by this (old) root: the bridge that lets
    /// nodes still trusting only this root verify chains issued by `new` during a root rotation.
    pub fn cross_sign(
        &self,
        new: &RootCa,
        now: Timestamp,
        rng: &mut (impl CryptoRngCore + ?Sized),
    ) -> Result<Vec<u8>, Error> {
        let issuer = Issuer::from_ca_cert_der(&self.cert_der.as_slice().into(), &*self.pair)
            .map_err(signing)?;
        let cert = root_params(now, rng)
            .signed_by(&*new.pair, &issuer)
            .map_err(signing)?;
        Ok(cert.der().to_vec())
    }
}

impl std::fmt::Debug for RootCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Certificates are public but long; their sizes say enough. The key is redacted by its type.
        f.debug_struct("RootCa")
            .field("cert_der_len", &self.cert_der.len())
            .field("key", &self.key)
            .field("intermediates", &self.intermediates.len())
            .finish()
    }
}

/// The validity window of a certificate issued at `now`.
fn window(now: Timestamp, validity: Duration) -> (Timestamp, Timestamp) {
    let not_before = Timestamp(
        now.as_nanos()
            .saturating_sub(CERT_BACKDATE.as_nanos() as u64),
    );
    (not_before, now.plus(validity))
}

fn root_params(now: Timestamp, rng: &mut (impl CryptoRngCore + ?Sized)) -> CertificateParams {
    let (not_before, not_after) = window(now, ROOT_CA_VALIDITY);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_CN);
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = to_datetime(not_before);
    params.not_after = to_datetime(not_after);
    params.serial_number = Some(serial(rng));
    params.use_authority_key_identifier_extension = true;
    params
}

fn node_params(
    identity: &NodeIdentity,
    not_before: Timestamp,
    not_after: Timestamp,
    rng: &mut (impl CryptoRngCore + ?Sized),
) -> Result<CertificateParams, Error> {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, identity.node_id.as_str());
    dn.push(DnType::OrganizationalUnitName, identity.role.ou());
    dn.push(DnType::OrganizationName, identity.cluster_id.as_str());
    let mut sans = vec![dns(identity.role.ou())?, dns(identity.node_id.as_str())?];
    if identity.role == Role::Manager {
        sans.push(dns(CA_CN)?);
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    // Every node is both a TLS server (it accepts calls) and a client (it makes them).
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = to_datetime(not_before);
    params.not_after = to_datetime(not_after);
    params.serial_number = Some(serial(rng));
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn dns(name: &str) -> Result<SanType, Error> {
    Ok(SanType::DnsName(name.try_into().map_err(signing)?))
}

/// A positive 159-bit serial number (RFC 5280: at most 20 bytes, positive, non-zero).
fn serial(rng: &mut (impl CryptoRngCore + ?Sized)) -> SerialNumber {
    let mut bytes = [0u8; 20];
    rng.fill_bytes(&mut bytes);
    bytes[0] = (bytes[0] & 0x7f).max(1);
    SerialNumber::from_slice(&bytes)
}

/// A timestamp as the certificate library's date type (whole seconds).
fn to_datetime(t: Timestamp) -> OffsetDateTime {
    let secs = i64::try_from(t.as_nanos() / 1_000_000_000).unwrap_or(i64::MAX);
    OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;
    use swarm_core::Id;

    use super::*;
    use crate::pki::{is_signed_by, make_csr};

    const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);

    fn ca(rng: &mut ChaCha20Rng) -> RootCa {
        RootCa::generate(PrivateKey::generate().unwrap(), NOW, rng).unwrap()
    }

    #[test]
    fn root_is_a_20_year_backdated_self_signed_ca() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let root = ca(&mut rng);
        let info = CertInfo::parse(root.cert_der()).unwrap();
        assert!(info.is_ca);
        assert_eq!(info.not_before, Timestamp::from_secs(1_800_000_000 - 3600));
        assert_eq!(info.not_after, NOW.plus(ROOT_CA_VALIDITY));
        assert!(is_signed_by(root.cert_der(), root.cert_der()));
        let again = RootCa::from_parts(root.cert_der().to_vec(), root.key().clone()).unwrap();
        assert_eq!(again.cert_der(), root.cert_der());
    }

    #[test]
    fn issue_overrides_the_subject_and_sets_the_validity() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let root = ca(&mut rng);
        let key = PrivateKey::generate().unwrap();
        let csr = make_csr(&key).unwrap();
        for role in [Role::Worker, Role::Manager] {
            let want = NodeIdentity {
                node_id: Id::generate(&mut rng),
                role,
                cluster_id: Id::generate(&mut rng),
            };
            let issued = root
                .issue(&csr, &want, DEFAULT_NODE_CERT_VALIDITY, NOW, &mut rng)
                .unwrap();
            assert_eq!(issued.chain.len(), 1);
            let leaf = &issued.chain[0];
            assert_eq!(NodeIdentity::from_cert(leaf).unwrap(), want);
            let info = CertInfo::parse(leaf).unwrap();
            assert!(!info.is_ca);
            assert_eq!(info.public_key_der, key.public_key_der().unwrap());
            assert_eq!(info.not_before, issued.not_before);
            assert_eq!(
                issued.not_before,
                Timestamp::from_secs(1_800_000_000 - 3600)
            );
            assert_eq!(info.not_after, NOW.plus(DEFAULT_NODE_CERT_VALIDITY));
            assert!(is_signed_by(leaf, root.cert_der()));
        }
    }

    #[test]
    fn bad_csr_and_short_expiry_are_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let root = ca(&mut rng);
        let who = NodeIdentity {
            node_id: Id::from_u128(1),
            role: Role::Worker,
            cluster_id: Id::from_u128(2),
        };
        let csr = make_csr(&PrivateKey::generate().unwrap()).unwrap();
        let mut tampered = csr.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        for bad in [&b""[..], b"not a csr", &tampered] {
            assert!(matches!(
                root.issue(bad, &who, DEFAULT_NODE_CERT_VALIDITY, NOW, &mut rng),
                Err(Error::MalformedCsr { .. })
            ));
        }
        assert!(matches!(
            root.issue(&csr, &who, Duration::from_secs(3599), NOW, &mut rng),
            Err(Error::ExpiryTooShort { .. })
        ));
        assert!(root
            .issue(&csr, &who, MIN_NODE_CERT_VALIDITY, NOW, &mut rng)
            .is_ok());
    }

    #[test]
    fn no_certificate_outlives_its_root() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let root = ca(&mut rng);
        // One day before the root expires, a 90-day certificate is cut to that day.
        let issue_at = Timestamp(root.not_after().as_nanos() - 24 * 3600 * 1_000_000_000);
        let who = NodeIdentity {
            node_id: Id::from_u128(1),
            role: Role::Manager,
            cluster_id: Id::from_u128(2),
        };
        let csr = make_csr(&PrivateKey::generate().unwrap()).unwrap();
        let issued = root
            .issue(&csr, &who, DEFAULT_NODE_CERT_VALIDITY, issue_at, &mut rng)
            .unwrap();
        assert_eq!(issued.not_after, root.not_after());
        assert_eq!(
            CertInfo::parse(&issued.chain[0]).unwrap().not_after,
            root.not_after()
        );
    }

    #[test]
    fn from_parts_refuses_a_foreign_key() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let root = ca(&mut rng);
        assert_eq!(
            RootCa::from_parts(root.cert_der().to_vec(), PrivateKey::generate().unwrap())
                .unwrap_err(),
            Error::CaKeyMismatch
        );
    }
}
