//! Time as data: [`Timestamp`] values and the [`Clock`] seam.
//!
//! swarm-core never reads a clock. Every operation that needs "now" takes a [`Timestamp`]; the few
//! long-lived helpers that must ask for it (such as [`crate::LocalProposer`]) take a [`Clock`] from the
//! embedder. [`ManualClock`] is a virtual clock for tests and simulations.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Nanoseconds since the Unix epoch. Totally ordered, `Copy`, cheap to compare.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The epoch itself, used as "never" / "unset".
    pub const ZERO: Timestamp = Timestamp(0);

    /// A timestamp `secs` seconds after the epoch.
    pub const fn from_secs(secs: u64) -> Timestamp {
        Timestamp(secs.saturating_mul(1_000_000_000))
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// This timestamp moved forward by `d`, saturating at the far future (also `t + d`).
    pub fn plus(self, d: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        )
    }

    /// Time elapsed from `earlier` to `self`; zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        self.plus(d)
    }
}

/// A source of the current time, supplied by the embedder.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// A shared [`Clock`] for configuration structs: cloneable and `Debug` (it prints no time). The
/// embedder picks the clock: the system clock in production, a virtual one in simulations.
#[derive(Clone)]
pub struct SharedClock(pub std::sync::Arc<dyn Clock>);

impl SharedClock {
    /// A handle over `clock`.
    pub fn new(clock: impl Clock + 'static) -> SharedClock {
        SharedClock(std::sync::Arc::new(clock))
    }
}

impl Clock for SharedClock {
    fn now(&self) -> Timestamp {
        self.0.now()
    }
}

impl std::fmt::Debug for SharedClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedClock")
    }
}

/// A virtual clock that only moves when told to. Cloning shares the same time.
#[derive(Debug, Default, Clone)]
pub struct ManualClock(std::sync::Arc<AtomicU64>);

impl ManualClock {
    /// A clock reading `start`.
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock(std::sync::Arc::new(AtomicU64::new(start.0)))
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.0.fetch_add(nanos, Ordering::SeqCst);
    }

    /// Sets the clock to `t`.
    pub fn set(&self, t: Timestamp) {
        self.0.store(t.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::from_secs(10);
        assert_eq!(t + Duration::from_secs(5), Timestamp::from_secs(15));
        assert_eq!(t.since(Timestamp::from_secs(4)), Duration::from_secs(6));
        assert_eq!(Timestamp::from_secs(1).since(t), Duration::ZERO);
        assert_eq!(
            Timestamp(u64::MAX).plus(Duration::from_secs(1)),
            Timestamp(u64::MAX)
        );
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(Timestamp::from_secs(1));
        let c2 = c.clone();
        c.advance(Duration::from_millis(1500));
        assert_eq!(c2.now(), Timestamp(2_500_000_000));
    }
}
