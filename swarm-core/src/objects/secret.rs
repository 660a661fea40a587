//! Secrets and configs: small named blobs delivered only to the tasks that reference them.
//!
//! A secret's payload is a [`SecretData`]: it prints as `[REDACTED]`, is wiped from memory when
//! dropped, and is only ever serialized inside a store action or snapshot, which swarm-raft seals
//! before anything reaches disk.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::id::Id;
use crate::meta::{Annotations, Meta};

/// Largest secret payload, exclusive: 500 KiB (SwarmKit's `MaxSecretSize`).
pub const MAX_SECRET_SIZE: usize = 500 * 1024;
/// Largest config payload, exclusive: 1000 KiB (SwarmKit's `MaxConfigSize`).
pub const MAX_CONFIG_SIZE: usize = 1000 * 1024;

/// Secret bytes: redacted in `Debug`, zeroized on drop.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretData(Vec<u8>);

impl SecretData {
    /// Wraps `bytes`; the caller should not keep other copies.
    pub fn new(bytes: Vec<u8>) -> SecretData {
        SecretData(bytes)
    }

    /// The plaintext. Handle with care: never log it.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for SecretData {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for SecretData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// Which template engine to apply to the payload when it is delivered (`None` = verbatim).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Driver {
    /// Driver name, e.g. `golang` for templating.
    pub name: String,
    /// Driver options.
    pub options: std::collections::BTreeMap<String, String>,
}

/// A secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    /// Object id.
    pub id: Id,
    /// Store bookkeeping.
    pub meta: Meta,
    /// The secret's spec; only labels may change after creation.
    pub spec: SecretSpec,
}

/// What an operator gives to create a secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretSpec {
    /// Name and labels.
    pub annotations: Annotations,
    /// Payload, 1 byte to < 500 KiB.
    pub data: SecretData,
    /// Templating driver, if any.
    pub templating: Option<Driver>,
}

/// A config: like a secret, but not sensitive, and up to < 1000 KiB.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Object id.
    pub id: Id,
    /// Store bookkeeping.
    pub meta: Meta,
    /// The config's spec; only labels may change after creation.
    pub spec: ConfigSpec,
}

/// What an operator gives to create a config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigSpec {
    /// Name and labels.
    pub annotations: Annotations,
    /// Payload, 1 byte to < 1000 KiB.
    pub data: Vec<u8>,
    /// Templating driver, if any.
    pub templating: Option<Driver>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_data_is_redacted_in_debug() {
        let s = SecretData::new(b"hunter2".to_vec());
        assert_eq!(format!("{s:?}"), "[REDACTED]");
        let spec = SecretSpec {
            annotations: Annotations::named("pw"),
            data: s,
            templating: None,
        };
        assert!(!format!("{spec:?}").contains("hunter2"));
    }
}
