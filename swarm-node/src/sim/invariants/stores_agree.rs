//! The stores of all managers are identical at the same applied index.
//!
//! Input: each manager sample's store index and the SHA-256 of its snapshot encoding (tables are
//! ordered and timestamps come from the batch, so equal states encode to equal bytes). The first
//! digest seen for an index is kept; any other manager (or the same one after a restart)
//! showing a different digest at that index is a violation.

use std::collections::BTreeMap;

use super::ManagerSample;

/// Digests by store index.
#[derive(Debug, Default)]
pub struct StoresAgree {
    by_index: BTreeMap<u64, ([u8; 32], String)>,
    compared: usize,
}

impl StoresAgree {
    /// Checks one sample; a violation's text if it breaks the invariant.
    pub fn observe(&mut self, s: &ManagerSample<'_>) -> Option<String> {
        self.state(s.host, s.store.index(), s.digest)
    }

    /// Records that `host`'s store at `index` has `digest`; see [`StoresAgree::observe`].
    pub fn state(&mut self, host: &str, index: u64, digest: [u8; 32]) -> Option<String> {
        match self.by_index.get(&index) {
            None => {
                self.by_index.insert(index, (digest, host.to_string()));
                None
            }
            Some((d, first)) => {
                if first != host {
                    self.compared += 1;
                }
                (*d != digest).then(|| {
                    format!(
                        "stores_agree: at index {index} the store of {host} differs from the store of {first}"
                    )
                })
            }
        }
    }

    /// How many samples were compared with another manager's at the same index.
    pub fn compared(&self) -> usize {
        self.compared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_index_different_digest_is_a_violation() {
        let mut a = StoresAgree::default();
        assert_eq!(a.state("m0", 5, [1; 32]), None);
        assert_eq!(a.state("m1", 5, [1; 32]), None);
        assert_eq!(a.state("m1", 6, [2; 32]), None, "another index");
        let v = a.state("m2", 5, [3; 32]).expect("m2 differs at 5");
        assert!(v.contains("index 5") && v.contains("m2"), "{v}");
        assert_eq!(a.compared(), 2);
    }
}
