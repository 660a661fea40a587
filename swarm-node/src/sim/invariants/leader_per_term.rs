//! At most one leader per term: no two raft members ever claim leadership of the same term.
//!
//! Input: every manager sample whose raft status says it leads (`NodeStatus::leads`). A claim is
//! remembered per term; a second member claiming a term already claimed breaks the invariant.
//! Samples are taken at every status change the observer sees, so a leadership shorter than one
//! sample can be missed (the check is sound, not complete).
//!
//! Policy: swarm-raft runs openraft 0.9 in its default ("advanced") mode, where a leader is
//! identified by `(term, node id)` and votes are ordered by both: a voter that granted
//! `(t, a)` grants `(t, b)` for `b > a`, so two members can lead the same term (the lower one
//! can no longer commit: its quorum has moved on). The simulation found it (docs/SIMULATION.md,
//! defect 3). So a shared term is a violation only in strict mode ([`LeaderPerTerm::strict`],
//! `SWARM_SIM_STRICT_TERMS=1`); otherwise it is counted ([`LeaderPerTerm::shared_terms`]) and
//! traced. Two claims of one term by the same member are never a violation.

use std::collections::{BTreeMap, BTreeSet};

use swarm_raft::NodeId;

use super::ManagerSample;

/// The leaders seen, by term.
#[derive(Debug, Default)]
pub struct LeaderPerTerm {
    /// Report a shared term as a violation (the invariant, standard raft's guarantee).
    pub strict: bool,
    by_term: BTreeMap<u64, BTreeSet<(NodeId, String)>>,
    shared: BTreeSet<u64>,
}

impl LeaderPerTerm {
    /// Checks one sample; a violation's text if it breaks the invariant (in strict mode), and in
    /// any mode a note the first time a term is seen shared.
    pub fn observe(&mut self, s: &ManagerSample<'_>) -> Option<String> {
        if !s.raft.leads() {
            return None;
        }
        self.claim(s.raft.term, s.raft.id, s.host)
    }

    /// Records that raft member `id` on `host` leads `term`; see [`LeaderPerTerm::observe`].
    pub fn claim(&mut self, term: u64, id: NodeId, host: &str) -> Option<String> {
        let leaders = self.by_term.entry(term).or_default();
        if leaders.iter().any(|(known, _)| *known == id) {
            return None;
        }
        leaders.insert((id, host.to_string()));
        if leaders.len() < 2 {
            return None;
        }
        let text = format!(
            "leader_per_term: term {term} has {} leaders: {}",
            leaders.len(),
            leaders
                .iter()
                .map(|(id, host)| format!("raft id {id} ({host})"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.shared.insert(term);
        Some(text)
    }

    /// Whether a shared term found by [`LeaderPerTerm::observe`] is a violation.
    pub fn is_violation(&self) -> bool {
        self.strict
    }

    /// Terms a leader was seen in.
    pub fn terms(&self) -> usize {
        self.by_term.len()
    }

    /// Terms two or more members were seen leading.
    pub fn shared_terms(&self) -> usize {
        self.shared.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_leader_of_a_term_is_reported_once_per_member() {
        let mut l = LeaderPerTerm::default();
        assert_eq!(l.claim(4, 1, "m0"), None);
        assert_eq!(l.claim(4, 1, "m0"), None, "the same leader again");
        assert_eq!(l.claim(5, 2, "m1"), None, "another term");
        let shared = l.claim(4, 3, "m2").expect("term 4 shared");
        assert!(shared.contains("term 4 has 2 leaders"), "{shared}");
        assert_eq!((l.terms(), l.shared_terms()), (2, 1));
        assert!(!l.is_violation());
        l.strict = true;
        assert!(l.is_violation());
    }
}
