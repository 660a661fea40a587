//! Health checks: the verdict state machine ([`HealthMonitor`], pure) and the probe loop that feeds it
//! through [`crate::Runtime::exec`], so every adapter behaves the same.
//!
//! Docker's rules: the first probe runs one `interval` after the task started; a probe that does not
//! finish within `timeout` fails; failures during `start_period` do not count, but a success during
//! it ends the start period; `retries` consecutive counted failures make the task unhealthy.

use std::sync::Arc;
use std::time::Duration;

use swarm_core::objects::service::HealthConfig;
use swarm_core::objects::task::Health;
use swarm_core::Id;
use tokio::time::Instant;

use crate::error::RuntimeError;
use crate::runtime::Runtime;

/// What a health config asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HealthTest {
    /// No checks (`NONE`, or an empty test with nothing to inherit).
    Disabled,
    /// Run this command (`CMD` as given, `CMD-SHELL` through `/bin/sh -c`).
    Command(Vec<String>),
}

impl HealthTest {
    /// Interprets `test` (`["NONE"]`, `["CMD", ...]`, `["CMD-SHELL", "..."]`, or empty).
    pub fn parse(test: &[String]) -> Result<HealthTest, RuntimeError> {
        match test.first().map(String::as_str) {
            None | Some("NONE") => Ok(HealthTest::Disabled),
            Some("CMD") if test.len() > 1 => Ok(HealthTest::Command(test[1..].to_vec())),
            Some("CMD-SHELL") if test.len() > 1 => Ok(HealthTest::Command(vec![
                "/bin/sh".to_string(),
                "-c".to_string(),
                test[1..].join(" "),
            ])),
            Some(other) => Err(RuntimeError::invalid(format!(
                "health check test {other:?} (with {} argument(s)) is not valid: use [\"NONE\"], \
                 [\"CMD\", command, args...] or [\"CMD-SHELL\", \"shell command\"]",
                test.len() - 1
            ))),
        }
    }
}

/// The verdict of a series of probes. Inputs: [`HealthMonitor::record`]; output: its return value.
#[derive(Clone, Debug)]
pub struct HealthMonitor {
    retries: u32,
    start_period: Duration,
    started: bool,
    streak: u32,
    status: Health,
}

impl HealthMonitor {
    /// A monitor for `cfg` (defaults applied), in status `starting`.
    pub fn new(cfg: &HealthConfig) -> HealthMonitor {
        HealthMonitor {
            retries: cfg.effective_retries(),
            start_period: cfg.effective_start_period(),
            started: false,
            streak: 0,
            status: Health::Starting,
        }
    }

    /// Records one probe result, `elapsed` after the task started, and returns the new status.
    #[must_use]
    pub fn record(&mut self, elapsed: Duration, passed: bool) -> Health {
        if passed {
            self.started = true;
            self.streak = 0;
            self.status = Health::Healthy;
        } else if self.started || elapsed >= self.start_period {
            self.streak = self.streak.saturating_add(1);
            if self.streak >= self.retries {
                self.status = Health::Unhealthy;
            }
        }
        self.status
    }

    /// The current status.
    pub fn status(&self) -> Health {
        self.status
    }
}

/// Runs probes until the task turns unhealthy; returns the last probe's output. Calls `on_change`
/// on every change of status. Cancel it (drop the future) when the task exits.
pub(crate) async fn probe_until_unhealthy(
    runtime: Arc<dyn Runtime>,
    task: Id,
    cfg: HealthConfig,
    cmd: Vec<String>,
    started: Instant,
    mut on_change: impl FnMut(Health) + Send,
) -> String {
    let mut monitor = HealthMonitor::new(&cfg);
    let interval = cfg.effective_interval().max(Duration::from_millis(1));
    let timeout = cfg.effective_timeout();
    let mut next = started + interval;
    loop {
        tokio::time::sleep_until(next).await;
        let (passed, output) = match runtime.exec(&task, &cmd, timeout).await {
            Ok(r) => (r.exit_code == 0, r.output),
            Err(RuntimeError::ExecTimeout { timeout }) => (
                false,
                format!("Health check exceeded timeout ({})", humanize(timeout)),
            ),
            Err(e) => (false, e.to_string()),
        };
        let before = monitor.status();
        let after = monitor.record(started.elapsed(), passed);
        if after != before {
            on_change(after);
        }
        if after == Health::Unhealthy {
            return output;
        }
        next = Instant::now() + interval;
    }
}

fn humanize(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(retries: u32, start_period: u64) -> HealthConfig {
        HealthConfig {
            test: vec!["CMD".into(), "true".into()],
            retries,
            start_period: Some(Duration::from_secs(start_period)),
            ..HealthConfig::default()
        }
    }

    /// (elapsed seconds, passed) -> expected status, step by step.
    fn run(cfg: &HealthConfig, steps: &[(u64, bool, Health)]) {
        let mut m = HealthMonitor::new(cfg);
        for (i, &(t, ok, want)) in steps.iter().enumerate() {
            assert_eq!(m.record(Duration::from_secs(t), ok), want, "step {i}");
        }
    }

    #[test]
    fn retries_consecutive_failures_make_it_unhealthy() {
        use Health::*;
        run(
            &cfg(3, 0),
            &[
                (1, false, Starting),
                (2, false, Starting),
                (3, false, Unhealthy),
            ],
        );
        run(
            &cfg(2, 0),
            &[
                (1, true, Healthy),
                (2, false, Healthy),
                (3, true, Healthy),
                (4, false, Healthy),
            ],
        );
        run(
            &cfg(2, 0),
            &[
                (1, true, Healthy),
                (2, false, Healthy),
                (3, false, Unhealthy),
            ],
        );
    }

    #[test]
    fn start_period_failures_do_not_count_until_a_success() {
        use Health::*;
        run(
            &cfg(1, 10),
            &[
                (1, false, Starting),
                (9, false, Starting),
                (11, false, Unhealthy),
            ],
        );
        // A success inside the start period ends it: the next failure counts.
        run(&cfg(1, 10), &[(1, true, Healthy), (2, false, Unhealthy)]);
    }

    #[test]
    fn defaults_and_parsing() {
        let c = HealthConfig::default();
        assert_eq!(HealthMonitor::new(&c).retries, 3);
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(HealthTest::parse(&[]).unwrap(), HealthTest::Disabled);
        assert_eq!(
            HealthTest::parse(&s(&["NONE"])).unwrap(),
            HealthTest::Disabled
        );
        assert_eq!(
            HealthTest::parse(&s(&["CMD", "curl", "-f", "x"])).unwrap(),
            HealthTest::Command(s(&["curl", "-f", "x"]))
        );
        assert_eq!(
            HealthTest::parse(&s(&["CMD-SHELL", "exit 1"])).unwrap(),
            HealthTest::Command(s(&["/bin/sh", "-c", "exit 1"]))
        );
        assert!(HealthTest::parse(&s(&["CMD"])).is_err());
        assert!(HealthTest::parse(&s(&["BOGUS", "x"]))
            .unwrap_err()
            .is_rejection());
        assert_eq!(humanize(Duration::from_secs(30)), "30s");
    }
}
