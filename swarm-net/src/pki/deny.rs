//! [`DenySet`]: nodes removed from the cluster, whose certificates are refused although they still
//! verify, until their certificate's expiry plus a 7-day margin (after which the certificate is
//! refused anyway, so the entry can go).

use std::collections::BTreeMap;
use std::time::Duration;

use swarm_core::{Id, Timestamp};

use crate::Error;

/// How long after its certificate's expiry a removed node stays listed: a margin for peers whose
/// clocks are behind.
pub const DENY_MARGIN: Duration = Duration::from_secs(7 * 24 * 3600);

/// Removed nodes and until when each is refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DenySet {
    until: BTreeMap<Id, Timestamp>,
}

impl DenySet {
    /// An empty set.
    pub fn new() -> DenySet {
        DenySet::default()
    }

    /// `node_id` was removed; its latest certificate expires at `cert_not_after`. Listing a node
    /// twice keeps the later time.
    pub fn handle_removed(&mut self, node_id: Id, cert_not_after: Timestamp) {
        let until = cert_not_after.plus(DENY_MARGIN);
        let entry = self.until.entry(node_id).or_insert(until);
        *entry = (*entry).max(until);
    }

    /// Whether `node_id` is refused at `now`.
    #[must_use]
    pub fn is_denied(&self, node_id: &Id, now: Timestamp) -> bool {
        self.until.get(node_id).is_some_and(|until| now <= *until)
    }

    /// [`Error::NodeRemoved`] if `node_id` is refused at `now`.
    pub fn check(&self, node_id: &Id, now: Timestamp) -> Result<(), Error> {
        if self.is_denied(node_id, now) {
            return Err(Error::NodeRemoved { node_id: *node_id });
        }
        Ok(())
    }

    /// Forgets the entries whose time has passed; returns how many.
    pub fn prune(&mut self, now: Timestamp) -> usize {
        let before = self.until.len();
        self.until.retain(|_, until| now <= *until);
        before - self.until.len()
    }

    /// Number of listed nodes.
    pub fn len(&self) -> usize {
        self.until.len()
    }

    /// Whether no node is listed.
    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_node_is_refused_until_expiry_plus_seven_days() {
        let mut deny = DenySet::new();
        let node = Id::from_u128(1);
        let other = Id::from_u128(2);
        let expiry = Timestamp::from_secs(1_000_000);
        deny.handle_removed(node, expiry);
        let last = expiry.plus(DENY_MARGIN);
        for (now, denied) in [
            (Timestamp::ZERO, true),
            (expiry, true),
            (last, true),
            (last.plus(Duration::from_nanos(1)), false),
        ] {
            assert_eq!(deny.is_denied(&node, now), denied, "{now:?}");
        }
        assert!(!deny.is_denied(&other, expiry));
        assert_eq!(
            deny.check(&node, expiry),
            Err(Error::NodeRemoved { node_id: node })
        );
        assert_eq!(deny.check(&other, expiry), Ok(()));

        // A second, earlier listing does not shorten the ban; a later one extends it.
        deny.handle_removed(node, Timestamp::from_secs(10));
        assert!(deny.is_denied(&node, last));
        deny.handle_removed(node, expiry.plus(DENY_MARGIN));
        assert!(deny.is_denied(&node, last.plus(Duration::from_secs(1))));

        assert_eq!(deny.prune(last), 0);
        assert_eq!(
            deny.prune(last.plus(DENY_MARGIN).plus(Duration::from_secs(1))),
            1
        );
        assert!(deny.is_empty());
    }
}
