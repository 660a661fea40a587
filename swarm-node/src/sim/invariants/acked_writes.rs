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
//!
//! The same model, without removals, covers the other versioned writes of the workload, each a
//! value under a key ([`AckedWrites::record_value`]): a node's availability (`node <host>
//! availability`: drain and activate) and the secrets a service references (`service <name>
//! secrets`: rotation, and the rollbacks that restore an earlier list). A value is read from the
//! store as [`value_in`] says; a key whose object is gone (a removed service) is not checked.

use std::collections::BTreeMap;

use swarm_core::{Node, Service, ServiceMode, Store};

/// What an operation leaves a service as: absent, or present with this many replicas.
pub type Outcome = Option<u64>;

/// Possible outcomes per service name.
#[derive(Debug, Default)]
pub struct AckedWrites {
    services: BTreeMap<String, Possible>,
    values: BTreeMap<String, Vec<String>>,
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

    /// Records a versioned write of `value` under `key` ([`value_in`] reads it back),
    /// acknowledged or not; the value before the first write is `initial`.
    /// Not counted as an operation: [`AckedWrites::count`] does that when no
    /// [`AckedWrites::record`] call does.
    pub fn record_value(&mut self, key: &str, initial: &str, value: &str, acknowledged: bool) {
        let p = self
            .values
            .entry(key.to_string())
            .or_insert_with(|| vec![initial.to_string()]);
        if acknowledged {
            *p = vec![value.to_string()];
        } else if !p.iter().any(|v| v == value) {
            p.push(value.to_string());
        }
    }

    /// Counts an operation that only wrote values.
    pub fn count(&mut self, acknowledged: bool) {
        self.attempted += 1;
        if acknowledged {
            self.acked += 1;
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
        for (key, possible) in &self.values {
            let Some(now) = value_in(store, key) else {
                continue;
            };
            if !possible.contains(&now) {
                found.push(format!(
                    "acked_writes: on {host} (store index {}) {key} is {now:?} but the acknowledged history allows only {possible:?}",
                    store.index(),
                ));
            }
        }
        found
    }
}

/// The value of `key` in `store`: `node <host> availability` (the node whose hostname is
/// `host`), `service <name> secrets` (the names of the secrets it references, sorted, joined by
/// commas); `None` when the object is not there (or the key is unknown).
pub fn value_in(store: &Store, key: &str) -> Option<String> {
    let parts: Vec<&str> = key.split(' ').collect();
    match parts.as_slice() {
        ["node", host, "availability"] => store
            .iter::<Node>()
            .find(|n| n.description.as_ref().is_some_and(|d| d.hostname == *host))
            .map(|n| format!("{:?}", n.spec.availability)),
        ["service", name, "secrets"] => store
            .get_by_name::<Service>(name)
            .map(|s| crate::sim::ops::secret_names(&s.spec)),
        _ => None,
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
    fn values_follow_the_same_model() {
        let mut a = AckedWrites::default();
        a.record_value("node w0 availability", "Active", "Drain", false);
        assert_eq!(a.values["node w0 availability"], ["Active", "Drain"]);
        a.record_value("node w0 availability", "Active", "Active", true);
        assert_eq!(a.values["node w0 availability"], ["Active"]);
        // Nothing in the store under the key: not checked.
        assert!(a.check("m0", &Store::new()).is_empty());
        assert_eq!(value_in(&Store::new(), "service web secrets"), None);
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
