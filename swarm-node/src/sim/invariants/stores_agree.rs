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
        let index = s.store.index();
        match self.by_index.get(&index) {
            None => {
                self.by_index.insert(index, (s.digest, s.host.to_string()));
                None
            }
            Some((d, host)) => {
                if host != s.host {
                    self.compared += 1;
                }
                (*d != s.digest).then(|| {
                    format!(
                        "stores_agree: at index {index} the store of {} differs from the store of {host}",
                        s.host
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
