//! Conversions between Docker's Engine API shapes (bollard's generated models) and swarm-core's
//! types. This is the only place that knows both; handlers call these functions and nothing else
//! builds Docker JSON.
//!
//! Conventions: `Version.Index` is the object's `meta.version`; timestamps are RFC 3339 with
//! nanoseconds, UTC; durations are integer nanoseconds (negative ones are refused on input); labels
//! are plain maps. A field Docker omits takes SwarmKit's default (SEMANTICS.md).

pub(crate) mod network;
pub(crate) mod node;
pub(crate) mod secret;
pub(crate) mod service;
pub(crate) mod swarm;
pub(crate) mod task;
pub(crate) mod tls;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::models::ObjectVersion;
use swarm_core::{Meta, Timestamp};

use super::error::ApiError;

/// Result of a conversion: a bad value is a 400.
pub(crate) type Result<T> = std::result::Result<T, ApiError>;

/// `{"Index": meta.version}`.
pub(crate) fn version(meta: &Meta) -> Option<ObjectVersion> {
    Some(ObjectVersion {
        index: Some(meta.version.0),
    })
}

/// RFC 3339 with nanoseconds, UTC: `2024-05-01T12:00:00.000000001Z`.
pub(crate) fn timestamp(t: Timestamp) -> String {
    let nanos = t.as_nanos();
    let secs = nanos / 1_000_000_000;
    let frac = nanos % 1_000_000_000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    // Written digit by digit: lists render thousands of these, and `format!` is slow at it.
    let mut out = [0u8; 30];
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (0..width).rev() {
            out[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, y);
    put(5, 2, m);
    put(8, 2, d);
    put(11, 2, rem / 3600);
    put(14, 2, (rem % 3600) / 60);
    put(17, 2, rem % 60);
    put(20, 9, frac);
    for (at, c) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (29, b'Z'),
    ] {
        out[at] = c;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `Some(timestamp(t))`.
pub(crate) fn ts(t: Timestamp) -> Option<String> {
    Some(timestamp(t))
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// A duration as Docker's integer nanoseconds.
pub(crate) fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Integer nanoseconds to a duration; negative values are refused with `what cannot be negative`.
pub(crate) fn duration(what: &str, n: i64) -> Result<Duration> {
    u64::try_from(n)
        .map(Duration::from_nanos)
        .map_err(|_| ApiError::bad_request(format!("{what} cannot be negative")))
}

/// An optional duration field.
pub(crate) fn opt_duration(what: &str, n: Option<i64>) -> Result<Option<Duration>> {
    n.map(|n| duration(what, n)).transpose()
}

/// A count that must not be negative.
pub(crate) fn count(what: &str, n: i64) -> Result<u64> {
    u64::try_from(n).map_err(|_| ApiError::bad_request(format!("{what} must be non-negative")))
}

/// Docker labels to ours.
pub(crate) fn labels_in(l: Option<HashMap<String, String>>) -> BTreeMap<String, String> {
    l.unwrap_or_default().into_iter().collect()
}

/// Our labels to Docker's (always present, possibly empty, as Docker prints them).
pub(crate) fn labels_out(l: &BTreeMap<String, String>) -> Option<HashMap<String, String>> {
    Some(l.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// `Some(v)` unless `v` is empty.
pub(crate) fn non_empty<T: Default + PartialEq>(v: T) -> Option<T> {
    (v != T::default()).then_some(v)
}

/// Go's architecture names (`amd64`, `arm64`) for the machine's.
pub(crate) fn go_arch(arch: &str) -> String {
    match arch {
        "x86_64" => "amd64".into(),
        "aarch64" => "arm64".into(),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_nanos() {
        assert_eq!(timestamp(Timestamp(0)), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            timestamp(Timestamp(1_709_251_199_123_456_789)),
            "2024-02-29T23:59:59.123456789Z"
        );
        assert_eq!(
            timestamp(Timestamp(951_782_400_000_000_001)),
            "2000-02-29T00:00:00.000000001Z"
        );
        let _ = timestamp(Timestamp(u64::MAX));
    }

    #[test]
    fn durations() {
        assert_eq!(nanos(Duration::from_secs(5)), 5_000_000_000);
        assert_eq!(duration("x", 10).ok(), Some(Duration::from_nanos(10)));
        assert!(duration("Delay", -1).is_err());
    }
}
