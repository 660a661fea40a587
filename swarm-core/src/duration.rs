//! Durations in Go's `time.ParseDuration` syntax (`"10s"`, `"1h30m"`, `"1.5s"`, `"500ms"`).
//!
//! Every duration a Docker user types (`--restart-delay 5s`, `--update-monitor 1m30s`,
//! `--health-interval 500ms`) goes through Go's parser, so swarm accepts exactly that syntax
//! and prints durations the way Go's `Duration.String()` does.
//!
//! Differences from Go, all deliberate:
//! - A negative duration is an error ([`DurationError::Negative`]): swarm has none. `"-0s"` is zero
//!   and is accepted, as Docker accepts it.
//! - Fractions are computed exactly and truncated toward zero. Go multiplies in `float64`, so on
//!   inputs with more than about 15 significant digits it can differ by a nanosecond.
//! - The largest accepted value is Go's largest duration, `2562047h47m16.854775807s`
//!   (`i64::MAX` nanoseconds), so every parsed value still fits a Go `time.Duration`.
//!
//! Both functions are pure and total: no input makes them panic.

use std::time::Duration;

/// Nanoseconds in one of each unit (units are case-sensitive, as in Go).
const UNITS: [(&str, u64); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),  // µ MICRO SIGN, the one Go prints
    ("\u{3bc}s", 1_000), // μ GREEK SMALL LETTER MU
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// The largest duration accepted, in nanoseconds (Go's `math.MaxInt64`).
const MAX_NANOS: u128 = i64::MAX as u128;

/// Fraction digits that take part in the value. Every unit is at most 3.6e12 ns = 2^13·3^2·5^11, so
/// any nanosecond boundary `n / unit` is a decimal of at most 13 digits; truncating the fraction to
/// 19 digits therefore never changes the floored result, and 10^19 · 3.6e12 fits a `u128`.
const MAX_FRACTION_DIGITS: usize = 19;

/// Why a duration string was rejected. Every message quotes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The input was the empty string.
    #[error("invalid duration \"\": a duration cannot be empty; write a number and a unit, e.g. \"10s\" or \"1m30s\"")]
    Empty,
    /// A component does not start with a number, or the number has no digits (`"s"`, `".s"`,
    /// `"-"`, `"1s.m"`, `" 1s"`).
    #[error("invalid duration {input:?}: expected a number such as 10 or 1.5 followed by a unit (ns, us, ms, s, m, h), e.g. \"1m30s\"")]
    InvalidNumber {
        /// The whole input as given.
        input: String,
    },
    /// A number is not followed by a unit (`"10"`, `"1h30"`). Only a bare `"0"` may omit it.
    #[error("missing unit in duration {input:?}: every number needs a unit (ns, us, ms, s, m, h), e.g. \"10s\"; only \"0\" may be written alone")]
    MissingUnit {
        /// The whole input as given.
        input: String,
    },
    /// A unit is not one of `ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h` (units are case-sensitive,
    /// and there is no `d`).
    #[error("unknown unit {unit:?} in duration {input:?}: valid units are ns, us (or \u{b5}s), ms, s, m and h (lower case)")]
    UnknownUnit {
        /// The whole input as given.
        input: String,
        /// The unit as written.
        unit: String,
    },
    /// The value is larger than `2562047h47m16.854775807s` (about 292 years).
    #[error("duration {input:?} is too large: the maximum is 2562047h47m16.854775807s (about 292 years)")]
    Overflow {
        /// The whole input as given.
        input: String,
    },
    /// The value is below zero; swarm durations are zero or positive.
    #[error("duration {input:?} is negative: durations must be zero or positive")]
    Negative {
        /// The whole input as given.
        input: String,
    },
}

/// Parses a duration in Go's `time.ParseDuration` syntax.
///
/// The grammar is `[+-]?([0-9]*(\.[0-9]*)?unit)+` with units `ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`
/// and `h`; each component needs a digit before or after its point (`"1.s"` and `".5h"` are fine,
/// `".s"` is not). The string `"0"` (optionally signed) is the only one allowed without a unit. No
/// whitespace is allowed anywhere. See the module docs for the differences from Go.
///
/// ```
/// use std::time::Duration;
/// use swarm_core::duration::parse_duration;
/// assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
/// assert_eq!(parse_duration(".5s").unwrap(), Duration::from_millis(500));
/// assert!(parse_duration("10").is_err());
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let (negative, body) = match (s.strip_prefix('-'), s.strip_prefix('+')) {
        (Some(body), _) => (true, body),
        (None, Some(body)) => (false, body),
        (None, None) => (false, s),
    };
    if body == "0" {
        return Ok(Duration::ZERO);
    }
    if body.is_empty() {
        return Err(DurationError::InvalidNumber {
            input: s.to_owned(),
        });
    }

    let mut total: u128 = 0;
    let mut rest = body;
    while !rest.is_empty() {
        let (component, after) = parse_component(rest, s)?;
        total += component;
        if total > MAX_NANOS + 1 {
            return Err(DurationError::Overflow {
                input: s.to_owned(),
            });
        }
        rest = after;
    }

    if negative {
        // Go accepts down to -(MAX_NANOS + 1); beyond that its error is about size, not sign.
        return if total == 0 {
            Ok(Duration::ZERO)
        } else {
            Err(DurationError::Negative {
                input: s.to_owned(),
            })
        };
    }
    match u64::try_from(total) {
        Ok(nanos) if total <= MAX_NANOS => Ok(Duration::from_nanos(nanos)),
        _ => Err(DurationError::Overflow {
            input: s.to_owned(),
        }),
    }
}

/// Parses one `number unit` component from the front of `rest` and returns its value in
/// nanoseconds (at most `MAX_NANOS + 1`) and what follows it. `input` is only for error messages.
fn parse_component<'a>(rest: &'a str, input: &str) -> Result<(u128, &'a str), DurationError> {
    let (int_digits, after) = split_digits(rest);
    let (fraction_digits, after) = match after.strip_prefix('.') {
        Some(after_point) => split_digits(after_point),
        None => ("", after),
    };
    if int_digits.is_empty() && fraction_digits.is_empty() {
        return Err(DurationError::InvalidNumber {
            input: input.to_owned(),
        });
    }

    // The unit runs up to the next digit or point (as in Go), so "1h30m" reads "h" then "m".
    let unit_len = after
        .find(|c: char| c == '.' || c.is_ascii_digit())
        .unwrap_or(after.len());
    let (unit, after) = after.split_at(unit_len);
    if unit.is_empty() {
        return Err(DurationError::MissingUnit {
            input: input.to_owned(),
        });
    }
    let unit_nanos = UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|&(_, nanos)| u128::from(nanos))
        .ok_or_else(|| DurationError::UnknownUnit {
            input: input.to_owned(),
            unit: unit.to_owned(),
        })?;

    let overflow = || DurationError::Overflow {
        input: input.to_owned(),
    };
    // Stop accumulating as soon as the value is out of range, so long digit runs cannot wrap.
    let mut whole: u128 = 0;
    for digit in int_digits.bytes() {
        whole = whole * 10 + u128::from(digit - b'0');
        if whole > MAX_NANOS + 1 {
            return Err(overflow());
        }
    }
    let mut nanos = whole * unit_nanos;
    if nanos > MAX_NANOS + 1 {
        return Err(overflow());
    }

    let mut numerator: u128 = 0;
    let mut denominator: u128 = 1;
    for digit in fraction_digits.bytes().take(MAX_FRACTION_DIGITS) {
        numerator = numerator * 10 + u128::from(digit - b'0');
        denominator *= 10;
    }
    nanos += numerator * unit_nanos / denominator;
    if nanos > MAX_NANOS + 1 {
        return Err(overflow());
    }
    Ok((nanos, after))
}

/// Splits `s` after its leading run of ASCII digits.
fn split_digits(s: &str) -> (&str, &str) {
    // `find` returns a char boundary, so `split_at` cannot panic.
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s.split_at(end)
}

/// Formats a duration exactly as Go's `time.Duration.String()` does.
///
/// Under one second the largest fitting unit among `ns`, `µs` (U+00B5) and `ms` is used with a
/// decimal fraction (`"1.5ms"`); from one second on the form is `[<h>h<m>m]<s>[.<frac>]s` where
/// hours and minutes appear once they are non-zero (`"1h0m0s"`, `"10m30s"`, `"1.5s"`). Zero is
/// `"0s"`. Fractions never end in a zero. Values beyond Go's range are formatted the same way.
///
/// ```
/// use std::time::Duration;
/// use swarm_core::duration::format_duration;
/// assert_eq!(format_duration(Duration::from_secs(3600)), "1h0m0s");
/// assert_eq!(format_duration(Duration::from_micros(1)), "1\u{b5}s");
/// ```
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    let mut out = String::new();
    if nanos == 0 {
        out.push_str("0s");
    } else if nanos < 1_000_000_000 {
        let (precision, unit) = match nanos {
            0..=999 => (0, "ns"),
            1_000..=999_999 => (3, "\u{b5}s"),
            _ => (6, "ms"),
        };
        let scale = 10u128.pow(precision);
        out.push_str(&(nanos / scale).to_string());
        push_fraction(&mut out, nanos % scale, precision);
        out.push_str(unit);
    } else {
        let seconds = nanos / 1_000_000_000;
        let minutes = seconds / 60;
        let hours = minutes / 60;
        if hours > 0 {
            out.push_str(&format!("{hours}h"));
        }
        if minutes > 0 {
            out.push_str(&format!("{}m", minutes % 60));
        }
        out.push_str(&(seconds % 60).to_string());
        push_fraction(&mut out, nanos % 1_000_000_000, 9);
        out.push('s');
    }
    out
}

/// Appends `.digits` for `fraction / 10^precision`, without trailing zeros; nothing when zero.
fn push_fraction(out: &mut String, fraction: u128, precision: u32) {
    if fraction == 0 {
        return;
    }
    let digits = format!("{fraction:0width$}", width = precision as usize);
    out.push('.');
    out.push_str(digits.trim_end_matches('0'));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_go_duration_round_trips() {
        let max = Duration::from_nanos(i64::MAX as u64);
        assert_eq!(format_duration(max), "2562047h47m16.854775807s");
        assert_eq!(parse_duration("2562047h47m16.854775807s"), Ok(max));
        assert_eq!(
            parse_duration("2562047h47m16.854775808s"),
            Err(DurationError::Overflow {
                input: "2562047h47m16.854775808s".into()
            })
        );
    }

    #[test]
    fn fraction_is_exact_and_truncated() {
        // 1/3 hour = 1_200_000_000_000 ns; the 19 threes give 1_199_999_999_999.99.. -> truncated.
        assert_eq!(
            parse_duration(".3333333333333333333h"),
            Ok(Duration::from_nanos(1_199_999_999_999))
        );
        // Digits beyond the 19th are checked but do not move the result.
        assert_eq!(
            parse_duration("0.99999999999999999999999999ns"),
            Ok(Duration::ZERO)
        );
    }

    #[test]
    fn format_beyond_go_range_does_not_panic() {
        assert_eq!(
            format_duration(Duration::MAX),
            "5124095576030431h0m15.999999999s"
        );
    }
}
