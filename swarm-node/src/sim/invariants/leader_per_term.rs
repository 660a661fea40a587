//! At most one leader per term: no two raft members ever claim leadership of the same term.
//!
//! Input: every manager sample whose raft status says it leads (`NodeStatus::leads`). A claim is
//! remembered per term; a second member claiming a term already claimed is a violation. Samples
//! are taken at every status change the observer sees, so a leadership shorter than one sample
//! can be missed (the check is sound, not complete).

use std::collections::BTreeMap;

use swarm_raft::NodeId;

use super::ManagerSample;

/// The leaders seen, by term.
#[derive(Debug, Default)]
pub struct LeaderPerTerm {
    by_term: BTreeMap<u64, (NodeId, String)>,
}

impl LeaderPerTerm {
    /// Checks one sample; a violation's text if it breaks the invariant.
    pub fn observe(&mut self, s: &ManagerSample<'_>) -> Option<String> {
        if !s.raft.leads() {
            return None;
        }
        let term = s.raft.term;
        match self.by_term.get(&term) {
            None => {
                self.by_term.insert(term, (s.raft.id, s.host.to_string()));
                None
            }
            Some((id, _)) if *id == s.raft.id => None,
            Some((id, host)) => Some(format!(
                "leader_per_term: term {term} has two leaders: raft id {id} ({host}) and raft id {} ({})",
                s.raft.id, s.host
            )),
        }
    }

    /// Terms a leader was seen in.
    pub fn terms(&self) -> usize {
        self.by_term.len()
    }
}
