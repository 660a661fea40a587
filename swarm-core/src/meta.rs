//! What every stored object carries: [`Meta`] (version and timestamps) and [`Annotations`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// An object version: the index of the store change (the raft log index) that last wrote the object.
/// Zero means "never stored".
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Version(pub u64);

/// Bookkeeping the store maintains on every object. Callers never set these fields: the store writes
/// them when it applies a change, and compares `version` to detect conflicting writes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Index of the change that last wrote this object.
    pub version: Version,
    /// When the object was created (the timestamp of the creating change).
    pub created_at: Timestamp,
    /// When the object was last written.
    pub updated_at: Timestamp,
}

/// Name and labels, as in Docker's `Spec.Name` / `Spec.Labels`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Annotations {
    /// The object's name (unique per kind for services, secrets, configs and networks).
    pub name: String,
    /// Free-form key/value labels. A `BTreeMap` so that encoding is deterministic.
    pub labels: BTreeMap<String, String>,
}

impl Annotations {
    /// Annotations with a name and no labels.
    pub fn named(name: impl Into<String>) -> Annotations {
        Annotations {
            name: name.into(),
            labels: BTreeMap::new(),
        }
    }
}
