//! No acknowledged write lost: after healing, every manager's store shows, for each service the
//! workload touched, a state that some order of its acknowledged and unanswered operations
//! allows.
//!
//! Model: per service name, the possible outcomes `(exists, replicas)`. An acknowledged operation
//! replaces them with its own outcome, plus the outcomes of earlier unanswered removals (a
//! removal is not versioned, so one that timed out may still commit later); an unanswered one (an
//! error, a timeout, its manager crashed) adds its outcome to them. Updates and scales are staged
//! at the service's version and refused if it moved, so an unanswered one cannot land after a
//! later acknowledged one. Creates are unique by name.

use std::collections::BTreeMap;

use swarm_core::{Service, ServiceMode, Store};

/// What an operation leaves a service as: absent, or present with this many replicas.
pub type Outcome = Option<u64>;

/// Possible outcomes per service name.
#[derive(Debug, Default)]
pub struct AckedWrites {
    services: BTreeMap<String, Possible>,
    acked: usize,
    attempted: usize,
}

#[derive(Debug)]
struct Possible {
    outcomes: Vec<Outcome>,
    unanswered_removal: bool,
}

impl AckedWrites {
    /// Records an operation on service `name` that leaves it as `outcome`, acknowledged or not.
    pub fn record(&mut self, name: &str, outcome: Outcome, acknowledged: bool) {
        self.attempted += 1;
        let p = self.services.entry(name.to_string()).or_insert(Possible {
            outcomes: vec![None],
            unanswered_removal: false,
        });
        if acknowledged {
            self.acked += 1;
            p.outcomes = vec![outcome];
            if p.unanswered_removal {
                p.outcomes.push(None);
            }
        } else {
            if !p.outcomes.contains(&outcome) {
                p.outcomes.push(outcome);
            }
            if outcome.is_none() {
                p.unanswered_removal = true;
            }
        }
    }

    /// Operations acknowledged.
    pub fn acked(&self) -> usize {
        self.acked
    }

    /// Operations attempted.
    pub fn attempted(&self) -> usize {
        self.attempted
    }

    /// The outcomes still possible for `name` (`None` if the workload never touched it).
    pub fn possible(&self, name: &str) -> Option<&[Outcome]> {
        self.services.get(name).map(|p| p.outcomes.as_slice())
    }

    /// Checks `store` (of manager `host`); the violations it shows.
    pub fn check(&self, host: &str, store: &Store) -> Vec<String> {
        let mut found = Vec::new();
        for (name, p) in &self.services {
            let now: Outcome = store
                .get_by_name::<Service>(name)
                .map(|s| match s.spec.mode {
                    ServiceMode::Replicated { replicas } => replicas,
                    _ => u64::MAX,
                });
            if !p.outcomes.contains(&now) {
                found.push(format!(
                    "acked_writes: on {host} (store index {}) service {name:?} is {} but the acknowledged history allows only {}",
                    store.index(),
                    show(now),
                    p.outcomes.iter().map(|o| show(*o)).collect::<Vec<_>>().join(" or ")
                ));
            }
        }
        found
    }
}

fn show(o: Outcome) -> String {
    match o {
        None => "absent".into(),
        Some(r) => format!("{r} replicas"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledged_replaces_unanswered_adds() {
        let mut a = AckedWrites::default();
        a.record("web", Some(2), true);
        assert_eq!(a.possible("web"), Some(&[Some(2)][..]));
        a.record("web", Some(5), false);
        assert_eq!(a.possible("web"), Some(&[Some(2), Some(5)][..]));
        a.record("web", Some(3), true);
        assert_eq!(a.possible("web"), Some(&[Some(3)][..]));
        a.record("web", None, false);
        a.record("web", Some(4), true);
        // The unanswered removal may still land after the acknowledged scale.
        assert_eq!(a.possible("web"), Some(&[Some(4), None][..]));
        assert_eq!((a.acked(), a.attempted()), (3, 5));
    }

    #[test]
    fn a_lost_write_is_reported() {
        let mut a = AckedWrites::default();
        a.record("web", Some(2), true);
        let store = Store::new();
        let v = a.check("m0", &store);
        assert_eq!(v.len(), 1);
        assert!(v[0].contains("\"web\" is absent"), "{v:?}");
    }
}
