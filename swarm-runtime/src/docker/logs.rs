//! The docker adapter's [`Runtime::log_stream`](crate::Runtime::log_stream): the engine's logs
//! with its timestamps (the time the engine received each line), followed on request.
//!
//! The engine's `since` is in whole seconds: the adapter asks from the second before and drops
//! the lines before `since` itself. The engine applies `tail` before `since` (the json-file
//! driver's order); the other adapters apply `since` first.

use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptionsBuilder;
use futures_util::StreamExt;
use swarm_core::{Id, Timestamp};

use super::convert::engine;
use super::DockerRuntime;
use crate::error::RuntimeError;
use crate::runtime::{LogOptions, LogRecord, LogRecords, LogStream};

impl DockerRuntime {
    pub(super) async fn log_records(
        &self,
        task: &Id,
        opts: LogOptions,
    ) -> Result<LogRecords, RuntimeError> {
        let container = self.get(task, |t| t.container.clone())?;
        let tail = opts
            .tail
            .map_or_else(|| "all".to_string(), |n| n.to_string());
        let since_secs = opts.since.map_or(0, |t| t.as_nanos() / 1_000_000_000);
        let q = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .follow(opts.follow)
            .since(i32::try_from(since_secs).unwrap_or(i32::MAX))
            .tail(&tail)
            .build();
        let since = opts.since;
        let frames = self.inner.docker.logs(&container, Some(q));
        let lines = frames.flat_map(move |item| {
            let out: Vec<Result<LogRecord, RuntimeError>> = match item {
                Err(e) => vec![Err(engine("logs", e))],
                Ok(frame) => {
                    let (stream, bytes) = match frame {
                        LogOutput::StdErr { message } => (LogStream::Stderr, message),
                        LogOutput::StdOut { message } | LogOutput::Console { message } => {
                            (LogStream::Stdout, message)
                        }
                        LogOutput::StdIn { .. } => return futures_util::stream::iter(Vec::new()),
                    };
                    String::from_utf8_lossy(&bytes)
                        .lines()
                        .map(|l| split_timestamp(stream, l))
                        .filter(|r| since.is_none_or(|s| r.time.is_none_or(|t| t >= s)))
                        .map(Ok)
                        .collect()
                }
            };
            futures_util::stream::iter(out)
        });
        Ok(Box::pin(lines))
    }
}

/// A line as the engine sends it with `timestamps=true`: `<RFC 3339 nanos> <text>`.
fn split_timestamp(stream: LogStream, raw: &str) -> LogRecord {
    let (time, line) = match raw.split_once(' ') {
        Some((ts, rest)) => match parse_rfc3339(ts) {
            Some(t) => (Some(t), rest),
            None => (None, raw),
        },
        None => match parse_rfc3339(raw) {
            // An empty line: only the timestamp.
            Some(t) => (Some(t), ""),
            None => (None, raw),
        },
    };
    LogRecord {
        time,
        stream,
        line: line.trim_end_matches('\r').to_string(),
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` (the engine writes UTC with nanoseconds).
pub(crate) fn parse_rfc3339(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let part = s.get(r)?;
        if part.is_empty() || !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0u64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &s[start..i];
        if digits.is_empty() {
            return None;
        }
        for (k, c) in digits.bytes().take(9).enumerate() {
            nanos += u64::from(c - b'0') * 10u64.pow(8 - k as u32);
        }
    }
    let offset: i64 = match s.get(i..)? {
        "Z" | "z" => 0,
        rest if rest.len() == 6 && matches!(&rest[..1], "+" | "-") && &rest[3..4] == ":" => {
            let oh = i64::try_from(num(i + 1..i + 3)?).ok()?;
            let om = i64::try_from(num(i + 4..i + 6)?).ok()?;
            let v = oh * 3600 + om * 60;
            if &rest[..1] == "-" {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    let days = days_from_civil(i64::try_from(y).ok()?, mo, d);
    let secs = days * 86_400 + i64::try_from(h * 3600 + mi * 60 + sec).ok()? - offset;
    let secs = u64::try_from(secs).ok()?;
    Some(Timestamp(
        secs.checked_mul(1_000_000_000)?.checked_add(nanos)?,
    ))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u64, d: u64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_engine_timestamps() {
        assert_eq!(
            parse_rfc3339("1970-01-01T00:00:01.5Z"),
            Some(Timestamp(1_500_000_000))
        );
        assert_eq!(
            parse_rfc3339("2024-05-01T12:00:00.000000001Z"),
            Some(Timestamp(1_714_564_800_000_000_001))
        );
        assert_eq!(
            parse_rfc3339("2024-05-01T14:00:00+02:00"),
            Some(Timestamp(1_714_564_800_000_000_000))
        );
        assert_eq!(parse_rfc3339("2024-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("hello"), None);
        assert_eq!(parse_rfc3339("2024-05-01T12:00:00.Z"), None);
        let r = split_timestamp(LogStream::Stdout, "2024-05-01T12:00:00Z hi there");
        assert_eq!(r.line, "hi there");
        assert_eq!(r.time, Some(Timestamp::from_secs(1_714_564_800)));
        let r = split_timestamp(LogStream::Stdout, "no stamp");
        assert_eq!((r.time, r.line.as_str()), (None, "no stamp"));
    }
}
