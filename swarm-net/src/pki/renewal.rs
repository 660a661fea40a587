//! When a node renews its certificate: at a uniformly random point in [50 %, 80 %) of its validity
//! (so that a cluster's certificates, issued together, do not all come back together), and after a
//! failure, again in 5 s steps up to 1 h.
//!
//! [`RenewalSchedule`] is a small state machine: inputs are `handle_*`, the output is
//! [`RenewalSchedule::next_attempt`]; the driver sleeps until then, tries, and reports the outcome.

use std::time::Duration;

use rand_core::RngCore;
use swarm_core::Timestamp;

/// Earliest renewal point, as a fraction of the validity (per mille).
const RENEW_FROM_PERMILLE: u128 = 500;
/// Latest renewal point (exclusive), per mille.
const RENEW_UNTIL_PERMILLE: u128 = 800;
/// One step of the retry backoff after a failed renewal.
pub const RENEWAL_BACKOFF_STEP: Duration = Duration::from_secs(5);
/// Longest wait between renewal attempts.
pub const RENEWAL_BACKOFF_MAX: Duration = Duration::from_secs(3600);

/// A uniformly random renewal time in `[not_before + 50 %, not_before + 80 %)` of the validity
/// `not_before..not_after`. A degenerate window (not_after <= not_before) renews at `not_before`.
pub fn renewal_time(
    not_before: Timestamp,
    not_after: Timestamp,
    rng: &mut (impl RngCore + ?Sized),
) -> Timestamp {
    let span = u128::from(not_after.as_nanos().saturating_sub(not_before.as_nanos()));
    let lo = span * RENEW_FROM_PERMILLE / 1000;
    let hi = span * RENEW_UNTIL_PERMILLE / 1000;
    // Scale a 64-bit draw onto the window: uniform to within 2^-64, and never reaches `hi`.
    let offset = lo + (((hi - lo) * u128::from(rng.next_u64())) >> 64);
    Timestamp(not_before.as_nanos().saturating_add(offset as u64))
}

/// How long to wait after the `failures`-th consecutive failed renewal: 5 s per failure, at most 1 h.
pub fn renewal_backoff(failures: u32) -> Duration {
    RENEWAL_BACKOFF_STEP
        .saturating_mul(failures.max(1))
        .min(RENEWAL_BACKOFF_MAX)
}

/// A node's renewal plan for its current certificate.
///
/// Calling contract: create it from the certificate's validity; call [`Self::next_attempt`] to know
/// when to try; after a try call [`Self::handle_renewed`] (with the new certificate's validity) or
/// [`Self::handle_failure`]; call [`Self::handle_rotate`] when the manager asks for an immediate
/// renewal (root rotation, role change).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenewalSchedule {
    not_after: Timestamp,
    next: Timestamp,
    failures: u32,
}

impl RenewalSchedule {
    /// The plan for a certificate valid `not_before..not_after`.
    pub fn new(
        not_before: Timestamp,
        not_after: Timestamp,
        rng: &mut (impl RngCore + ?Sized),
    ) -> RenewalSchedule {
        RenewalSchedule {
            not_after,
            next: renewal_time(not_before, not_after, rng),
            failures: 0,
        }
    }

    /// When to try next.
    #[must_use]
    pub fn next_attempt(&self) -> Timestamp {
        self.next
    }

    /// Whether a renewal attempt is due at `now`.
    #[must_use]
    pub fn is_due(&self, now: Timestamp) -> bool {
        now >= self.next
    }

    /// Whether the current certificate has expired at `now` (the node must rejoin if renewal kept
    /// failing until then).
    #[must_use]
    pub fn is_expired(&self, now: Timestamp) -> bool {
        now > self.not_after
    }

    /// Consecutive failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// A renewal attempt at `now` failed: retry after the backoff.
    pub fn handle_failure(&mut self, now: Timestamp) {
        self.failures = self.failures.saturating_add(1);
        self.next = now.plus(renewal_backoff(self.failures));
    }

    /// A new certificate valid `not_before..not_after` was installed.
    pub fn handle_renewed(
        &mut self,
        not_before: Timestamp,
        not_after: Timestamp,
        rng: &mut (impl RngCore + ?Sized),
    ) {
        *self = RenewalSchedule::new(not_before, not_after, rng);
    }

    /// The manager asked for a new certificate now (root rotation, role change).
    pub fn handle_rotate(&mut self, now: Timestamp) {
        self.next = self.next.min(now);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    use super::*;

    const DAY: u64 = 24 * 3600;

    #[test]
    fn backoff_table() {
        for (failures, secs) in [
            (0, 5),
            (1, 5),
            (2, 10),
            (12, 60),
            (719, 3595),
            (720, 3600),
            (721, 3600),
            (u32::MAX, 3600),
        ] {
            assert_eq!(
                renewal_backoff(failures),
                Duration::from_secs(secs),
                "{failures}"
            );
        }
    }

    #[test]
    fn renewal_window_table() {
        // (validity start, end) -> (earliest, latest) renewal, in seconds.
        let t0 = 1_000_000;
        for (start, end, lo, hi) in [
            (t0, t0 + 90 * DAY, t0 + 45 * DAY, t0 + 72 * DAY),
            (t0, t0 + 3600, t0 + 1800, t0 + 2880),
            (t0, t0, t0, t0),
            (t0, t0 - 10, t0, t0),
        ] {
            let mut rng = ChaCha20Rng::seed_from_u64(start ^ end);
            for _ in 0..200 {
                let at = renewal_time(
                    Timestamp::from_secs(start),
                    Timestamp::from_secs(end),
                    &mut rng,
                );
                assert!(at >= Timestamp::from_secs(lo), "{at:?} < {lo}");
                assert!(at <= Timestamp::from_secs(hi), "{at:?} > {hi}");
            }
        }
    }

    #[test]
    fn draws_spread_over_the_whole_window() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let (start, end) = (Timestamp::ZERO, Timestamp::from_secs(1000));
        let mut buckets = [0u32; 3];
        for _ in 0..3000 {
            let at = renewal_time(start, end, &mut rng).as_nanos() / 1_000_000_000;
            buckets[((at - 500) / 100) as usize] += 1;
        }
        // Each third of the window gets about a third of the draws; a stuck or skewed draw would not.
        assert!(buckets.iter().all(|&n| n > 800), "{buckets:?}");
    }

    #[test]
    fn schedule_backs_off_then_resets_on_success() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let nb = Timestamp::from_secs(0);
        let na = Timestamp::from_secs(90 * DAY);
        let mut plan = RenewalSchedule::new(nb, na, &mut rng);
        let first = plan.next_attempt();
        assert!(!plan.is_due(Timestamp::from_secs(45 * DAY - 1)));
        assert!(plan.is_due(first));
        plan.handle_failure(first);
        plan.handle_failure(first);
        assert_eq!(plan.failures(), 2);
        assert_eq!(plan.next_attempt(), first + Duration::from_secs(10));
        plan.handle_rotate(first);
        assert_eq!(plan.next_attempt(), first);
        plan.handle_renewed(na, Timestamp::from_secs(180 * DAY), &mut rng);
        assert_eq!(plan.failures(), 0);
        assert!(plan.next_attempt() >= Timestamp::from_secs(135 * DAY));
        assert!(!plan.is_expired(Timestamp::from_secs(180 * DAY)));
        assert!(plan.is_expired(Timestamp::from_secs(180 * DAY + 1)));
    }

    proptest! {
        #[test]
        fn renewal_time_is_within_50_to_80_percent(
            start in 0u64..u64::MAX / 4,
            len in 0u64..(1u64 << 62),
            seed in any::<u64>(),
        ) {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let at = renewal_time(Timestamp(start), Timestamp(start + len), &mut rng).as_nanos();
            let off = u128::from(at - start);
            prop_assert!(off * 1000 + 1000 >= u128::from(len) * 500);
            prop_assert!(off * 1000 <= u128::from(len) * 800);
        }
    }
}
