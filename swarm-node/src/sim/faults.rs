//! The fault schedule of a run: which fault comes next, drawn from the run's seeded RNG, and how
//! it is undone. One fault is active at a time in this slice; it lasts a drawn duration and is
//! then healed, and the final healing phase undoes whatever is left.
//!
//! Partitions are applied by the driver itself (turmoil's in-simulation `partition`,
//! `partition_oneway` and `repair`); crashes, restarts and network-wide loss and delay change the
//! simulation itself, so the driver hands them to the loop that steps it ([`HostRequest`]).

use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Which faults a run may inject.
#[derive(Clone, Debug)]
pub struct FaultConfig {
    /// Partitions between one host and every other host, both ways.
    pub partitions: bool,
    /// One-way partitions (a host can send but not receive, or the reverse).
    pub oneway: bool,
    /// Crash and restart of a manager or a worker (data directory kept).
    pub crashes: bool,
    /// Periods of message loss (this fraction of datagrams dropped) and extra delay.
    pub loss: f64,
    /// Periods of message duplication: this fraction of datagrams sent twice (swarm-net's
    /// turmoil shim, `swarm_net::sim::set_duplication`; turmoil itself never duplicates).
    pub duplicate: f64,
    /// Clock skew between nodes: each host's clock is offset by a drawn amount up to this much
    /// either way, fixed for the run (`VirtualClock::skew_nanos`).
    pub clock_skew: Duration,
    /// Storage faults on a manager's raft disk (`swarm_raft::disk::SimDisk`): periods where
    /// every write fails with `ENOSPC` or every fsync with `EIO`. A crash always leaves the disk
    /// as a power cut would (unsynced writes lost, the last one torn), whatever this says.
    pub storage: bool,
    /// Mean wait between two faults.
    pub every: Duration,
}

impl Default for FaultConfig {
    fn default() -> FaultConfig {
        FaultConfig {
            partitions: true,
            oneway: true,
            crashes: true,
            loss: 0.05,
            duplicate: 0.1,
            clock_skew: Duration::from_secs(2),
            storage: true,
            every: Duration::from_secs(8),
        }
    }
}

impl FaultConfig {
    /// No faults at all (a baseline run).
    pub fn none() -> FaultConfig {
        FaultConfig {
            partitions: false,
            oneway: false,
            crashes: false,
            loss: 0.0,
            duplicate: 0.0,
            clock_skew: Duration::ZERO,
            storage: false,
            every: Duration::from_secs(15),
        }
    }
}

/// A fault, on named hosts.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Fault {
    /// `host` cut off from every other host, both ways.
    Isolate(String),
    /// Nothing from `from` reaches the others (it still hears them).
    MuteOutgoing(String),
    /// Nothing reaches `to` (it can still send).
    DeafIncoming(String),
    /// The host's software crashes, its raft disk left as a power cut would leave it (the crash
    /// image drawn from the seed that follows); restarted when the fault heals.
    Crash(String, u64),
    /// This fraction of all datagrams lost, and message latency up to 200 ms.
    Lossy(f64),
    /// This fraction of all datagrams sent twice; the seed of the draws.
    Duplicate(f64, u64),
    /// Every write to the manager's raft disk fails with `ENOSPC` (no space left).
    DiskFull(String),
    /// Every fsync of the manager's raft disk fails with `EIO`.
    FsyncErrors(String),
}

/// What the driver asks of the loop that steps the simulation.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum HostRequest {
    /// `Sim::crash`, and the host's raft disk replaced by its crash image drawn from the seed.
    Crash(String, u64),
    /// `Sim::bounce` (restart the software; the data directory is kept).
    Restart(String),
    /// `Sim::set_fail_rate` and `Sim::set_max_message_latency`.
    Network {
        /// Fraction of datagrams dropped.
        fail_rate: f64,
        /// Largest message latency.
        max_latency: Duration,
    },
}

/// The usual largest message latency (the builder's setting, restored when a lossy period ends).
pub(crate) const MAX_LATENCY: Duration = Duration::from_millis(20);

impl FaultConfig {
    /// Draws the next fault over `hosts` (storage faults over `managers`, the hosts with a raft
    /// disk), if any kind is enabled.
    pub(crate) fn draw(
        &self,
        rng: &mut ChaCha8Rng,
        hosts: &[String],
        managers: &[String],
    ) -> Option<Fault> {
        let mut kinds = Vec::new();
        if self.partitions {
            kinds.push(0);
        }
        if self.oneway {
            kinds.extend([1, 2]);
        }
        if self.crashes {
            kinds.push(3);
        }
        if self.loss > 0.0 {
            kinds.push(4);
        }
        if self.duplicate > 0.0 {
            kinds.push(5);
        }
        if self.storage && !managers.is_empty() {
            kinds.extend([6, 7]);
        }
        if kinds.is_empty() || hosts.is_empty() {
            return None;
        }
        let host = hosts[rng.gen_range(0..hosts.len())].clone();
        Some(match kinds[rng.gen_range(0..kinds.len())] {
            0 => Fault::Isolate(host),
            1 => Fault::MuteOutgoing(host),
            2 => Fault::DeafIncoming(host),
            3 => Fault::Crash(host, rng.gen()),
            4 => Fault::Lossy(self.loss),
            5 => Fault::Duplicate(self.duplicate, rng.gen()),
            6 => Fault::DiskFull(managers[rng.gen_range(0..managers.len())].clone()),
            _ => Fault::FsyncErrors(managers[rng.gen_range(0..managers.len())].clone()),
        })
    }

    /// Draws how long until the next fault (uniform in [0.5, 1.5] of `every`).
    pub(crate) fn gap(&self, rng: &mut ChaCha8Rng) -> Duration {
        self.every.mul_f64(rng.gen_range(0.5..1.5))
    }
}

/// Draws how long a fault lasts: 2 to 25 s of virtual time.
pub(crate) fn duration(rng: &mut ChaCha8Rng) -> Duration {
    Duration::from_millis(rng.gen_range(2_000..25_000))
}

/// Each host's clock skew in nanoseconds, uniform in +-`clock_skew`, drawn from the run's seed
/// (a stream of its own: the workload and fault draws are unchanged); none when it is zero.
pub(crate) fn draw_skews<'a>(
    config: &super::SimConfig,
    hosts: impl Iterator<Item = &'a String>,
) -> std::collections::BTreeMap<String, i64> {
    use rand::SeedableRng;
    let max = i64::try_from(config.faults.clock_skew.as_nanos()).unwrap_or(i64::MAX);
    if max == 0 {
        return Default::default();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x636c_6f63_6b5f_736b);
    hosts
        .map(|h| (h.clone(), rng.gen_range(-max..=max)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{SimConfig, VirtualClock, SIM_EPOCH};
    use swarm_core::Clock;

    #[test]
    fn skews_are_drawn_from_the_seed_within_the_bound() {
        let hosts: Vec<String> = ["m0", "m1", "w0"].map(String::from).to_vec();
        let mut c = SimConfig::new(7, "");
        c.faults.clock_skew = Duration::from_secs(2);
        let a = draw_skews(&c, hosts.iter());
        assert_eq!(a, draw_skews(&c, hosts.iter()), "same seed, same skews");
        assert_eq!(a.len(), 3);
        assert!(a.values().all(|s| s.abs() <= 2_000_000_000), "{a:?}");
        c.seed = 8;
        assert_ne!(a, draw_skews(&c, hosts.iter()));
        c.faults.clock_skew = Duration::ZERO;
        assert!(draw_skews(&c, hosts.iter()).is_empty());
    }

    #[test]
    fn a_skewed_clock_is_offset_from_the_shared_virtual_time() {
        // Outside a simulation the shared virtual time is zero.
        assert_eq!(VirtualClock::default().now(), SIM_EPOCH);
        assert_eq!(VirtualClock::skewed(-5).now().0, SIM_EPOCH.0 - 5);
        assert_eq!(VirtualClock::skewed(7).now().0, SIM_EPOCH.0 + 7);
    }
}
