//! The crate's error type: one enum, every variant says what was wrong and what to do next.
//!
//! Nothing in this crate panics on bad input (a token typed by an operator, a certificate or CSR that
//! came over the network, a key read from disk); it returns one of these.

use std::time::Duration;

use swarm_core::Id;

/// Everything that can go wrong in `swarm-net`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The text given as a join token is not of the form `SWMTKN-1-<50 base36>-<25 base36>`.
    #[error(
        "malformed join token: {0}; copy the whole token printed by `docker swarm join-token`"
    )]
    MalformedToken(#[from] TokenFormatError),

    /// The join token is well formed but is neither of the cluster's current tokens (wrong cluster,
    /// or rotated since it was printed).
    #[error(
        "invalid join token: it is not this cluster's current worker or manager token; it may have \
         been rotated, ask a manager for the current one (`docker swarm join-token worker`)"
    )]
    InvalidToken,

    /// The root CA bundle fetched from a manager does not hash to the digest in the join token, so
    /// it cannot be trusted (wrong cluster, or someone in the middle).
    #[error(
        "the root CA offered by the remote manager does not match the join token (token pins \
         {expected}, CA hashes to {found}); check the manager address and the token"
    )]
    CaDigestMismatch {
        /// The digest in the token (base36).
        expected: String,
        /// The digest of the bundle received (base36).
        found: String,
    },

    /// A CA bundle is not a sequence of PEM `CERTIFICATE` blocks holding valid certificates.
    #[error("malformed root CA bundle: {reason}")]
    MalformedCaBundle {
        /// What was wrong with it.
        reason: String,
    },

    /// Bytes given as a DER X.509 certificate do not parse as one.
    #[error("malformed certificate: {reason}")]
    MalformedCertificate {
        /// What the parser found.
        reason: String,
    },

    /// A valid certificate that is not a swarm node certificate (missing or repeated CN/OU/O, an OU
    /// that is not a swarm role, a CN or O that is not a swarm id).
    #[error("not a swarm node certificate: {reason}")]
    NotANodeCertificate {
        /// Which part of the subject is wrong.
        reason: String,
    },

    /// Bytes given as a certificate signing request do not parse, or its signature does not verify.
    #[error(
        "malformed certificate signing request: {reason}; the node must send a fresh PKCS#10 CSR"
    )]
    MalformedCsr {
        /// What was wrong with it.
        reason: String,
    },

    /// Bytes given as a private key are not a PKCS#8 ECDSA P-256 key.
    #[error("malformed private key: {reason}; swarm keys are PKCS#8 ECDSA P-256")]
    MalformedKey {
        /// What was wrong with it.
        reason: String,
    },

    /// The CA certificate and the private key given to load a CA do not belong together.
    #[error(
        "the CA private key does not match the CA certificate; restore both from the same backup"
    )]
    CaKeyMismatch,

    /// A requested node certificate lifetime is below the minimum.
    #[error("certificate expiry {requested:?} is too short: the minimum is {minimum:?}")]
    ExpiryTooShort {
        /// The lifetime asked for.
        requested: Duration,
        /// The smallest lifetime allowed (1 hour).
        minimum: Duration,
    },

    /// A certificate was asked for, or presented, by a node that was removed from the cluster.
    #[error(
        "node {node_id} was removed from the cluster; its certificates are refused. Have it leave \
         (`docker swarm leave --force`) and join again with a join token"
    )]
    NodeRemoved {
        /// The removed node.
        node_id: Id,
    },

    /// A certificate chain does not lead to any trusted root, or a certificate in it is outside its
    /// validity.
    #[error("untrusted certificate: {reason}")]
    UntrustedCertificate {
        /// Why the chain was refused.
        reason: String,
    },

    /// Every random node id drawn for a joiner was already taken (practically impossible with a
    /// working random source).
    #[error(
        "could not allocate a node id after {attempts} attempts: every id drawn was taken; check \
         the manager's random number source"
    )]
    NodeIdExhausted {
        /// How many ids were drawn.
        attempts: usize,
    },

    /// A stored private key could not be sealed or opened (wrong KEK, wrong slot, corrupt file).
    #[error("stored private key: {0}")]
    KeyStorage(#[from] swarm_secrets::Error),

    /// The certificate library refused to build or sign a certificate (a bug or an unsupported key).
    #[error("certificate signing failed: {reason}")]
    Signing {
        /// The signer's message.
        reason: String,
    },
}

/// Why a string is not a well-formed join token. Each shape of malformation has its own variant so
/// that an operator is told exactly what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenFormatError {
    /// The token does not start with `SWMTKN-`.
    #[error("it does not start with \"SWMTKN-\"")]
    MissingPrefix,
    /// The token's version is not `1`.
    #[error("token version {found:?} is not supported (only version 1)")]
    UnsupportedVersion {
        /// The version field found (truncated to 16 characters).
        found: String,
    },
    /// The token does not have exactly four `-`-separated parts.
    #[error("it has {parts} dash-separated parts, a token has 4 (SWMTKN, 1, digest, secret)")]
    WrongPartCount {
        /// How many parts it has.
        parts: usize,
    },
    /// The CA digest part is not exactly 50 characters.
    #[error("the CA digest part has {chars} characters, it must have 50")]
    DigestLength {
        /// Its length.
        chars: usize,
    },
    /// The secret part is not exactly 25 characters.
    #[error("the secret part has {chars} characters, it must have 25")]
    SecretLength {
        /// Its length.
        chars: usize,
    },
    /// A part contains a character outside lowercase base36 (`0-9a-z`).
    #[error("the {part} part contains a character outside 0-9 and a-z")]
    BadCharacter {
        /// `"digest"` or `"secret"`.
        part: &'static str,
    },
    /// A part decodes to a number larger than its field (256 bits for the digest, 128 for the
    /// secret).
    #[error("the {part} part is out of range: it encodes more than {bits} bits")]
    OutOfRange {
        /// `"digest"` or `"secret"`.
        part: &'static str,
        /// The field's size in bits.
        bits: u32,
    },
}
