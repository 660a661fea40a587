//! Tables for the three pure parsers: durations (`duration`), placement constraints (`constraint`)
//! and placement preferences (`placement`).
//!
//! Each table is a list of `input -> expected result` rows run through one helper that reports
//! every failing row at once. Expected errors are whole values, so a row pins the variant and its
//! fields; separate message tables check that the text names the input and the broken rule.
//! Property tests at the end check that no parser panics on any string and that printing then
//! parsing gives back the same value.

use std::fmt::{Debug, Display};
use std::net::IpAddr;
use std::time::Duration;

use proptest::prelude::*;
use swarm_core::constraint::{
    ip_matches, parse_constraints, Constraint, ConstraintError, ConstraintKey, ConstraintOp,
};
use swarm_core::duration::{format_duration, parse_duration, DurationError};
use swarm_core::placement::{PlacementError, SpreadOver, SpreadPreference};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Runs every row through `parse` and fails listing all rows whose result differs.
fn check<T, E>(what: &str, parse: impl Fn(&str) -> Result<T, E>, rows: &[(&str, Result<T, E>)])
where
    T: PartialEq + Debug,
    E: PartialEq + Debug,
{
    let failures: Vec<String> = rows
        .iter()
        .filter_map(|(input, want)| {
            let got = parse(input);
            (got != *want)
                .then(|| format!("{what}({input:?})\n    want {want:?}\n    got  {got:?}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

/// Runs every row through `parse`, expects an error, and checks its message contains each of the
/// given fragments.
fn check_messages<T, E>(parse: impl Fn(&str) -> Result<T, E>, rows: &[(&str, &[&str])])
where
    T: Debug,
    E: Display,
{
    let mut failures = Vec::new();
    for (input, fragments) in rows {
        match parse(input) {
            Ok(v) => failures.push(format!("{input:?}: expected an error, got Ok({v:?})")),
            Err(e) => {
                let msg = e.to_string();
                for fragment in *fragments {
                    if !msg.contains(fragment) {
                        failures.push(format!("{input:?}: message {msg:?} lacks {fragment:?}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
fn ns(n: u64) -> Duration {
    Duration::from_nanos(n)
}

// ---------------------------------------------------------------------------------------------
// Durations
// ---------------------------------------------------------------------------------------------

#[test]
fn duration_parse_table() {
    use DurationError::*;
    let invalid = |s: &str| Err(InvalidNumber { input: s.into() });
    let missing = |s: &str| Err(MissingUnit { input: s.into() });
    let unknown = |s: &str, u: &str| {
        Err(UnknownUnit {
            input: s.into(),
            unit: u.into(),
        })
    };
    let overflow = |s: &str| Err(Overflow { input: s.into() });
    let negative = |s: &str| Err(Negative { input: s.into() });
    let max = ns(i64::MAX as u64);

    check(
        "parse_duration",
        parse_duration,
        &[
            // Zero, with and without a unit or sign.
            ("0", Ok(Duration::ZERO)),
            ("+0", Ok(Duration::ZERO)),
            ("-0", Ok(Duration::ZERO)),
            ("0s", Ok(Duration::ZERO)),
            ("-0s", Ok(Duration::ZERO)),
            ("0.000h", Ok(Duration::ZERO)),
            ("-0h0m", Ok(Duration::ZERO)),
            // Every unit.
            ("100ns", Ok(ns(100))),
            ("3us", Ok(ns(3_000))),
            ("3\u{b5}s", Ok(ns(3_000))),  // µ micro sign
            ("3\u{3bc}s", Ok(ns(3_000))), // μ greek mu
            ("300ms", Ok(ms(300))),
            ("5s", Ok(secs(5))),
            ("2m", Ok(secs(120))),
            ("1h", Ok(secs(3_600))),
            // Sign and several components.
            ("+5s", Ok(secs(5))),
            ("1h30m", Ok(secs(5_400))),
            ("10m30s", Ok(secs(630))),
            ("2h46m40s", Ok(secs(10_000))),
            ("1h1m1s1ms1us1ns", Ok(ns(3_661_001_001_001))),
            ("1s1s", Ok(secs(2))),
            ("1m90s", Ok(secs(150))),
            ("0001s", Ok(secs(1))),
            // Decimals.
            ("1.5s", Ok(ms(1_500))),
            (".5h", Ok(secs(1_800))),
            ("1.s", Ok(secs(1))),
            ("0.5ms", Ok(ns(500_000))),
            ("1.004s", Ok(ms(1_004))),
            ("15m0.5s", Ok(ms(900_500))),
            ("0.000000001s", Ok(ns(1))),
            ("1.0000000009s", Ok(secs(1))), // below a nanosecond: truncated
            ("1.5ns", Ok(ns(1))),
            ("0.1h", Ok(secs(360))),
            // Limits: Go's largest duration.
            ("2562047h47m16.854775807s", Ok(max)),
            ("9223372036854775807ns", Ok(max)),
            (
                "2562047h47m16.854775808s",
                overflow("2562047h47m16.854775808s"),
            ),
            ("9223372036854775808ns", overflow("9223372036854775808ns")),
            ("2562048h", overflow("2562048h")),
            (
                "99999999999999999999999999999h",
                overflow("99999999999999999999999999999h"),
            ),
            ("2562047h2562047h", overflow("2562047h2562047h")),
            // Negative values.
            ("-5s", negative("-5s")),
            ("-1.5h", negative("-1.5h")),
            ("-1ns", negative("-1ns")),
            ("-9223372036854775808ns", negative("-9223372036854775808ns")),
            ("-9223372036854775809ns", overflow("-9223372036854775809ns")),
            // Empty and no number.
            ("", Err(Empty)),
            ("-", invalid("-")),
            ("+", invalid("+")),
            ("s", invalid("s")),
            (".s", invalid(".s")),
            ("-.s", invalid("-.s")),
            (" 1s", invalid(" 1s")),
            ("--1s", invalid("--1s")),
            ("+-1s", invalid("+-1s")),
            ("1s.", invalid("1s.")),
            ("\u{661}s", invalid("\u{661}s")), // Arabic-Indic digit one is not a digit here
            // Missing unit.
            ("1", missing("1")),
            ("10", missing("10")),
            ("00", missing("00")),
            ("1.5", missing("1.5")),
            ("1h30", missing("1h30")),
            ("1..5s", missing("1..5s")),
            ("1ms.5", missing("1ms.5")),
            // Unknown unit (case-sensitive, no whitespace, no days).
            ("1d", unknown("1d", "d")),
            ("1H", unknown("1H", "H")),
            ("1Ms", unknown("1Ms", "Ms")),
            ("1 s", unknown("1 s", " s")),
            ("1s ", unknown("1s ", "s ")),
            ("1sec", unknown("1sec", "sec")),
            ("1e3s", unknown("1e3s", "e")),
            ("1s-1s", unknown("1s-1s", "s-")),
            ("1\u{b5}", unknown("1\u{b5}", "\u{b5}")),
            ("-1x", unknown("-1x", "x")),
        ],
    );
}

#[test]
fn duration_format_table() {
    let rows: &[(Duration, &str)] = &[
        (Duration::ZERO, "0s"),
        (ns(1), "1ns"),
        (ns(999), "999ns"),
        (ns(1_000), "1\u{b5}s"),
        (ns(1_500), "1.5\u{b5}s"),
        (ns(1_001), "1.001\u{b5}s"),
        (ms(1), "1ms"),
        (ns(1_500_000), "1.5ms"),
        (ms(500), "500ms"),
        (ns(999_999_999), "999.999999ms"),
        (secs(1), "1s"),
        (ms(1_500), "1.5s"),
        (ns(1_000_000_001), "1.000000001s"),
        (secs(59), "59s"),
        (secs(60), "1m0s"),
        (secs(630), "10m30s"),
        (ms(90_500), "1m30.5s"),
        (secs(3_600), "1h0m0s"),
        (secs(5_400), "1h30m0s"),
        (secs(10_000), "2h46m40s"),
        (ns(3_600_000_000_001), "1h0m0.000000001s"),
        (secs(360_000), "100h0m0s"),
        (ns(i64::MAX as u64), "2562047h47m16.854775807s"),
    ];
    let failures: Vec<String> = rows
        .iter()
        .filter(|(d, want)| format_duration(*d) != *want)
        .map(|(d, want)| format!("{d:?}: want {want:?}, got {:?}", format_duration(*d)))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn duration_error_messages() {
    check_messages(
        parse_duration,
        &[
            ("", &["invalid duration \"\"", "cannot be empty", "\"10s\""]),
            ("abc", &["\"abc\"", "expected a number", "unit"]),
            ("10", &["missing unit", "\"10\"", "ns, us, ms, s, m, h"]),
            (
                "1d",
                &["unknown unit \"d\"", "\"1d\"", "ns, us", "ms, s, m and h"],
            ),
            ("-5s", &["\"-5s\"", "negative", "zero or positive"]),
            (
                "3000000h",
                &["\"3000000h\"", "too large", "2562047h47m16.854775807s"],
            ),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Constraints
// ---------------------------------------------------------------------------------------------

fn c(key: ConstraintKey, op: ConstraintOp, value: &str) -> Result<Constraint, ConstraintError> {
    Ok(Constraint {
        key,
        op,
        value: value.into(),
    })
}

#[test]
fn constraint_parse_table() {
    use ConstraintKey::*;
    use ConstraintOp::{Eq, NotEq};
    let label = |s: &str| NodeLabel(s.into());
    let unknown = |s: &str| Unknown(s.into());
    let missing = |e: &str| Err(ConstraintError::MissingOperator { expr: e.into() });
    let unsupported = |e: &str, op: &str| {
        Err(ConstraintError::UnsupportedOperator {
            expr: e.into(),
            op: op.into(),
        })
    };
    let empty_key = |e: &str| Err(ConstraintError::EmptyKey { expr: e.into() });
    let empty_value = |e: &str| Err(ConstraintError::EmptyValue { expr: e.into() });
    let bad_key = |e: &str, k: &str| {
        Err(ConstraintError::InvalidKey {
            expr: e.into(),
            key: k.into(),
        })
    };
    let bad_value = |e: &str, v: &str, found: char| {
        Err(ConstraintError::InvalidValue {
            expr: e.into(),
            value: v.into(),
            found,
        })
    };

    check(
        "Constraint::parse",
        Constraint::parse,
        &[
            // Every known key, matched ignoring case.
            ("node.id==abc123", c(NodeId, Eq, "abc123")),
            ("node.hostname != host-1", c(NodeHostname, NotEq, "host-1")),
            ("node.ip==10.0.0.0/8", c(NodeIp, Eq, "10.0.0.0/8")),
            ("node.ip!=2001:db8::/32", c(NodeIp, NotEq, "2001:db8::/32")),
            ("NODE.ROLE==Manager", c(NodeRole, Eq, "Manager")),
            ("node.platform.os==linux", c(NodePlatformOs, Eq, "linux")),
            (
                "Node.Platform.Arch!=x86_64",
                c(NodePlatformArch, NotEq, "x86_64"),
            ),
            // Labels keep their case; the prefix does not.
            ("node.labels.rack==a", c(label("rack"), Eq, "a")),
            ("NODE.LABELS.Rack==a", c(label("Rack"), Eq, "a")),
            ("node.labels.a.b-c_D9==x", c(label("a.b-c_D9"), Eq, "x")),
            ("node.labels..==x", c(label("."), Eq, "x")),
            (
                "engine.labels.operatingsystem==Ubuntu 22.04",
                c(EngineLabel("operatingsystem".into()), Eq, "Ubuntu 22.04"),
            ),
            ("Engine.Labels.X!=y", c(EngineLabel("X".into()), NotEq, "y")),
            // Unknown keys parse, kept as written.
            ("node.labels.==x", c(unknown("node.labels."), Eq, "x")),
            ("node.labelsx==y", c(unknown("node.labelsx"), Eq, "y")),
            ("node.ID.x==y", c(unknown("node.ID.x"), Eq, "y")),
            ("Foo.Bar!=x", c(unknown("Foo.Bar"), NotEq, "x")),
            ("_x==1", c(unknown("_x"), Eq, "1")),
            ("ab==1", c(unknown("ab"), Eq, "1")),
            // Whitespace around key and value is trimmed; inside the value it stays.
            ("  node.id  ==  x  ", c(NodeId, Eq, "x")),
            ("\tnode.id==x\n", c(NodeId, Eq, "x")),
            ("node.labels.t == a\tb c", c(label("t"), Eq, "a\tb c")),
            // The whole value alphabet.
            (
                r"node.labels.re==^a.*(b|c)?[0-9]+$:\/_-",
                c(label("re"), Eq, r"^a.*(b|c)?[0-9]+$:\/_-"),
            ),
            // Operators: `==` wins over `!=`; anything else is rejected.
            ("node.id", missing("node.id")),
            ("", missing("")),
            ("   ", missing("   ")),
            ("node.id = x", unsupported("node.id = x", "=")),
            ("node.id=x", unsupported("node.id=x", "=")),
            ("node.id>=1", unsupported("node.id>=1", ">=")),
            ("node.id<1", unsupported("node.id<1", "<")),
            ("node.id~=x", unsupported("node.id~=x", "~=")),
            ("node.id=!x", unsupported("node.id=!x", "=!")),
            ("node.id ! x", unsupported("node.id ! x", "!")),
            ("node.id===x", bad_value("node.id===x", "=x", '=')),
            (
                "node.id == a == b",
                bad_value("node.id == a == b", "a == b", '='),
            ),
            ("a!=b==c", bad_key("a!=b==c", "a!=b")),
            ("node.id!==x", bad_key("node.id!==x", "node.id!")),
            // Keys.
            ("==x", empty_key("==x")),
            ("  != x", empty_key("  != x")),
            ("a==b", bad_key("a==b", "a")),
            ("1abc==x", bad_key("1abc==x", "1abc")),
            ("-ab==x", bad_key("-ab==x", "-ab")),
            (".ab==x", bad_key(".ab==x", ".ab")),
            ("node id==x", bad_key("node id==x", "node id")),
            (
                "node.labels.a/b==x",
                bad_key("node.labels.a/b==x", "node.labels.a/b"),
            ),
            (
                "n\u{f6}de.id==x",
                bad_key("n\u{f6}de.id==x", "n\u{f6}de.id"),
            ),
            ("\u{17f}x==y", bad_key("\u{17f}x==y", "\u{17f}x")),
            // Values.
            ("node.id==", empty_value("node.id==")),
            ("node.id!=   ", empty_value("node.id!=   ")),
            ("node.id==a,b", bad_value("node.id==a,b", "a,b", ',')),
            ("node.id==a'b", bad_value("node.id==a'b", "a'b", '\'')),
            ("node.id==\"a\"", bad_value("node.id==\"a\"", "\"a\"", '"')),
            ("node.id==a!b", bad_value("node.id==a!b", "a!b", '!')),
            ("node.id==a<b", bad_value("node.id==a<b", "a<b", '<')),
            ("node.id==a~b", bad_value("node.id==a~b", "a~b", '~')),
            ("node.id==a{b}", bad_value("node.id==a{b}", "a{b}", '{')),
            (
                "node.id==caf\u{e9}",
                bad_value("node.id==caf\u{e9}", "caf\u{e9}", '\u{e9}'),
            ),
            (
                "node.id==a\u{b}b",
                bad_value("node.id==a\u{b}b", "a\u{b}b", '\u{b}'),
            ),
        ],
    );
}

#[test]
fn constraint_display_table() {
    let rows = [
        ("node.id == abc", "node.id==abc"),
        ("NODE.HOSTNAME!=h", "node.hostname!=h"),
        ("Node.Ip==10.0.0.1", "node.ip==10.0.0.1"),
        ("node.ROLE==worker", "node.role==worker"),
        ("node.platform.OS==Linux", "node.platform.os==Linux"),
        ("node.platform.arch!=arm64", "node.platform.arch!=arm64"),
        ("NODE.labels.Rack == A b", "node.labels.Rack==A b"),
        ("engine.LABELS.x!=y", "engine.labels.x!=y"),
        (" Foo.Bar == x ", "Foo.Bar==x"),
    ];
    for (input, want) in rows {
        let parsed = Constraint::parse(input).unwrap();
        assert_eq!(parsed.to_string(), want, "display of {input:?}");
        assert_eq!(Constraint::parse(want), Ok(parsed), "reparse of {want:?}");
    }
    assert_eq!(ConstraintOp::Eq.as_str(), "==");
    assert_eq!(ConstraintOp::NotEq.to_string(), "!=");
}

#[test]
fn constraint_list_table() {
    let list = |exprs: &[&str]| parse_constraints(exprs);
    assert_eq!(list(&[]), Ok(vec![]));
    assert_eq!(
        list(&["node.role==manager", "node.labels.rack!=a"]),
        Ok(vec![
            Constraint::parse("node.role==manager").unwrap(),
            Constraint::parse("node.labels.rack!=a").unwrap(),
        ])
    );
    // Owned strings work too.
    let owned = vec![String::from("node.id==x")];
    assert_eq!(parse_constraints(&owned).map(|v| v.len()), Ok(1));
    assert_eq!(
        list(&["node.role==manager", "node.role=manager", "x"]),
        Err(ConstraintError::InList {
            index: 1,
            error: Box::new(ConstraintError::UnsupportedOperator {
                expr: "node.role=manager".into(),
                op: "=".into(),
            }),
        })
    );
}

#[test]
fn constraint_error_messages() {
    check_messages(
        Constraint::parse,
        &[
            (
                "node.id",
                &["\"node.id\"", "has no operator", "key==value or key!=value"],
            ),
            (
                "node.id=x",
                &[
                    "\"node.id=x\"",
                    "unsupported operator \"=\"",
                    "only == and !=",
                ],
            ),
            ("==x", &["\"==x\"", "no key"]),
            (
                "a==b",
                &[
                    "invalid key \"a\"",
                    "\"a==b\"",
                    "at least two characters",
                    "letter or '_'",
                ],
            ),
            ("node.id==", &["\"node.id==\"", "no value"]),
            (
                "node.id==a,b",
                &[
                    "invalid value \"a,b\"",
                    "\"node.id==a,b\"",
                    "',' is not allowed",
                ],
            ),
        ],
    );
    let err = parse_constraints(&["node.id==x", "node.id"]).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("constraint number 2 in the list: "),
        "{msg}"
    );
    assert!(msg.contains("\"node.id\" has no operator"), "{msg}");
}

#[test]
fn constraint_op_matches_table() {
    use ConstraintOp::{Eq, NotEq};
    let rows: &[(ConstraintOp, &str, Option<&str>, bool)] = &[
        (Eq, "a", Some("a"), true),
        (Eq, "abc", Some("ABC"), true),
        (Eq, "Manager", Some("manager"), true),
        (Eq, "a", Some("b"), false),
        (Eq, "a", Some("a "), false), // exact: no trimming, no prefix match
        (Eq, "a", Some("ab"), false),
        (Eq, "a.*", Some("abc"), false), // no globbing or regex
        (Eq, "a", Some(""), false),
        (Eq, "a", None, false),   // missing = "", so == fails
        (NotEq, "a", None, true), // ... and != passes
        (NotEq, "a", Some(""), true),
        (NotEq, "a", Some("A"), false),
        (NotEq, "a", Some("b"), true),
        (Eq, "k", Some("\u{212a}"), true), // Kelvin sign folds to k, as in Go's EqualFold
    ];
    for &(op, expected, actual, want) in rows {
        assert_eq!(
            op.matches(expected, actual),
            want,
            "{op} {expected:?} vs {actual:?}"
        );
    }
}

#[test]
fn ip_matches_table() {
    let rows: &[(&str, &str, bool)] = &[
        // Single addresses.
        ("10.0.0.1", "10.0.0.1", true),
        ("10.0.0.1", "10.0.0.2", false),
        ("2001:db8::1", "2001:db8:0:0::1", true),
        ("2001:db8::1", "2001:db8::2", false),
        ("::ffff:192.168.1.7", "192.168.1.7", true),
        ("192.168.1.7", "::ffff:192.168.1.7", true),
        ("::", "0.0.0.0", false),
        // IPv4 networks.
        ("10.0.0.0/8", "10.255.1.1", true),
        ("10.0.0.0/8", "11.0.0.1", false),
        ("10.1.2.3/8", "10.9.9.9", true), // host bits ignored
        ("192.168.1.0/24", "192.168.1.255", true),
        ("192.168.1.0/24", "192.168.2.0", false),
        ("192.168.1.0/24", "::ffff:192.168.1.7", true),
        ("192.168.1.128/25", "192.168.1.127", false),
        ("192.168.1.1/32", "192.168.1.1", true),
        ("0.0.0.0/0", "203.0.113.9", true),
        ("0.0.0.0/0", "::1", false),
        ("10.0.0.0/08", "10.1.1.1", true), // leading zeros in the length, as Go
        // IPv6 networks.
        ("2001:db8::/32", "2001:db8:1::1", true),
        ("2001:db8::/32", "2001:db9::1", false),
        ("2001:db8::/127", "2001:db8::1", true),
        ("2001:db8::/128", "2001:db8::1", false),
        ("::/0", "2001::1", true),
        ("::/0", "1.2.3.4", false), // an IPv6 network holds no IPv4 address
        ("::ffff:10.0.0.0/104", "10.1.2.3", true),
        ("::ffff:10.0.0.0/104", "11.1.2.3", false),
        // Unparsable expected values never match.
        ("", "10.0.0.1", false),
        ("10.0.0", "10.0.0.1", false),
        ("10.0.0.300", "10.0.0.1", false),
        ("010.0.0.1", "10.0.0.1", false),
        ("10.0.0.0/33", "10.0.0.1", false),
        ("10.0.0.0/", "10.0.0.1", false),
        ("10.0.0.0/-1", "10.0.0.1", false),
        ("10.0.0.0/ 8", "10.0.0.1", false),
        ("fe80::1%eth0", "fe80::1", false),
        ("host-1", "10.0.0.1", false),
    ];
    for &(expected, actual, want) in rows {
        let ip: IpAddr = actual.parse().unwrap();
        assert_eq!(ip_matches(expected, ip), want, "{expected:?} vs {actual}");
    }
}

#[test]
fn constraint_matches_table() {
    let rows: &[(&str, Option<&str>, bool)] = &[
        ("node.labels.rack==a", Some("A"), true),
        ("node.labels.rack==a", Some("b"), false),
        ("node.labels.rack==a", None, false),
        ("node.labels.rack!=a", None, true),
        ("node.labels.rack!=a", Some("a"), false),
        ("node.role==manager", Some("MANAGER"), true),
        ("node.hostname!=h1", Some("h2"), true),
        // Unknown keys match nothing, under either operator.
        ("foo.bar==x", Some("x"), false),
        ("foo.bar!=x", Some("y"), false),
        ("foo.bar!=x", None, false),
        ("node.labels.==x", Some("x"), false),
        // node.ip: addresses and networks.
        ("node.ip==10.0.0.0/8", Some("10.1.1.1"), true),
        ("node.ip==10.0.0.0/8", Some("192.168.0.1"), false),
        ("node.ip==10.0.0.0/8", None, false),
        ("node.ip==10.0.0.0/8", Some("garbage"), false),
        ("node.ip!=10.0.0.0/8", Some("10.1.1.1"), false),
        ("node.ip!=10.0.0.0/8", Some("192.168.0.1"), true),
        ("node.ip!=10.0.0.0/8", None, true),
        ("node.ip!=10.0.0.0/8", Some("garbage"), true),
        ("node.ip==2001:db8::1", Some("2001:DB8:0::1"), true),
        ("node.ip!=2001:db8::1", Some("2001:db8::1"), false),
        // A malformed expected address matches no node under either operator (SwarmKit).
        ("node.ip==10.0.0.300", Some("10.0.0.1"), false),
        ("node.ip!=10.0.0.300", Some("10.0.0.1"), false),
        ("node.ip!=host-1", None, false),
    ];
    for &(expr, actual, want) in rows {
        let constraint = Constraint::parse(expr).unwrap();
        assert_eq!(
            constraint.matches(actual),
            want,
            "{expr:?} against {actual:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Placement preferences
// ---------------------------------------------------------------------------------------------

fn node(label: &str) -> Result<SpreadPreference, PlacementError> {
    Ok(SpreadPreference {
        over: SpreadOver::NodeLabel(label.into()),
    })
}
fn engine(label: &str) -> Result<SpreadPreference, PlacementError> {
    Ok(SpreadPreference {
        over: SpreadOver::EngineLabel(label.into()),
    })
}

#[test]
fn placement_parse_table() {
    use PlacementError::*;
    let bad_format = |s: &str| Err(BadFormat { input: s.into() });
    let unsupported = |s: &str, st: &str| {
        Err(UnsupportedStrategy {
            input: s.into(),
            strategy: st.into(),
        })
    };
    let bad_descriptor = |d: &str| {
        Err(InvalidDescriptor {
            descriptor: d.into(),
        })
    };
    let empty_label = |d: &str| {
        Err(EmptyLabel {
            descriptor: d.into(),
        })
    };
    let bad_label = |d: &str, l: &str| {
        Err(InvalidLabel {
            descriptor: d.into(),
            label: l.into(),
        })
    };
    check(
        "SpreadPreference::parse",
        SpreadPreference::parse,
        &[
            ("spread=node.labels.rack", node("rack")),
            ("spread=engine.labels.os", engine("os")),
            ("SPREAD=Node.Labels.Rack", node("Rack")),
            (" spread = node.labels.datacenter ", node("datacenter")),
            ("spread=node.labels.a.b-c", node("a.b-c")),
            (
                "spread=node.labels.\u{43a}\u{43b}\u{44e}\u{447}",
                node("\u{43a}\u{43b}\u{44e}\u{447}"),
            ),
            (
                "spread=node.labels.a=b",
                bad_label("node.labels.a=b", "a=b"),
            ),
            (
                "spread=node.labels.my rack",
                bad_label("node.labels.my rack", "my rack"),
            ),
            (
                "binpack=node.labels.rack",
                unsupported("binpack=node.labels.rack", "binpack"),
            ),
            (
                "spreads=node.labels.rack",
                unsupported("spreads=node.labels.rack", "spreads"),
            ),
            ("node.labels.rack", bad_format("node.labels.rack")),
            ("=node.labels.rack", bad_format("=node.labels.rack")),
            (" =node.labels.rack", bad_format(" =node.labels.rack")),
            ("", bad_format("")),
            ("spread=", bad_descriptor("")),
            ("spread=node.labels", bad_descriptor("node.labels")),
            ("spread=node.label.rack", bad_descriptor("node.label.rack")),
            ("spread=labels.rack", bad_descriptor("labels.rack")),
            ("spread=node.labels.", empty_label("node.labels.")),
            ("spread=engine.labels.  ", empty_label("engine.labels.")),
        ],
    );
    check(
        "SpreadPreference::parse_descriptor",
        SpreadPreference::parse_descriptor,
        &[
            ("node.labels.rack", node("rack")),
            ("  engine.labels.Zone  ", engine("Zone")),
            ("ENGINE.LABELS.x", engine("x")),
            ("node.labels.\t", empty_label("node.labels.")),
            (
                "node.labels.a\u{0}b",
                bad_label("node.labels.a\u{0}b", "a\u{0}b"),
            ),
            (
                "spread=node.labels.rack",
                bad_descriptor("spread=node.labels.rack"),
            ),
            ("node.id", bad_descriptor("node.id")),
            ("", bad_descriptor("")),
        ],
    );
}

#[test]
fn placement_display_and_messages() {
    let p = SpreadPreference::parse("Spread=NODE.LABELS.Rack").unwrap();
    assert_eq!(p.descriptor(), "node.labels.Rack");
    assert_eq!(p.to_string(), "node.labels.Rack");
    let e = SpreadPreference::parse_descriptor("Engine.Labels.os").unwrap();
    assert_eq!(e.descriptor(), "engine.labels.os");

    check_messages(
        SpreadPreference::parse,
        &[
            (
                "binpack=node.labels.rack",
                &[
                    "unsupported placement preference strategy \"binpack\"",
                    "\"binpack=node.labels.rack\"",
                    "only spread",
                ],
            ),
            ("rack", &["\"rack\"", "\"<strategy>=<arg>\""]),
            (
                "spread=node.rack",
                &[
                    "\"node.rack\"",
                    "node.labels.<label> or engine.labels.<label>",
                ],
            ),
            (
                "spread=node.labels.",
                &["\"node.labels.\"", "names no label"],
            ),
            (
                "spread=node.labels.a b",
                &["\"a b\"", "cannot contain whitespace"],
            ),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Serde: every data type survives bincode.
// ---------------------------------------------------------------------------------------------

#[test]
fn data_types_round_trip_through_bincode() {
    let constraints = parse_constraints(&[
        "node.id==a",
        "node.hostname!=b",
        "node.ip==10.0.0.0/8",
        "node.role==worker",
        "node.platform.os==linux",
        "node.platform.arch==arm64",
        "node.labels.Rack==x y",
        "engine.labels.e!=z",
        "other.key==q",
    ])
    .unwrap();
    let bytes = bincode::serialize(&constraints).unwrap();
    let back: Vec<Constraint> = bincode::deserialize(&bytes).unwrap();
    assert_eq!(back, constraints);

    let prefs = vec![
        SpreadPreference::parse("spread=node.labels.rack").unwrap(),
        SpreadPreference::parse("spread=engine.labels.zone").unwrap(),
    ];
    let bytes = bincode::serialize(&prefs).unwrap();
    let back: Vec<SpreadPreference> = bincode::deserialize(&bytes).unwrap();
    assert_eq!(back, prefs);
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

/// Flips the ASCII case of the characters of `s` whose bit is set in `mask` (cycling).
fn mix_case(s: &str, mask: u64) -> String {
    s.chars()
        .enumerate()
        .map(|(i, ch)| {
            if mask >> (i % 64) & 1 == 1 {
                if ch.is_ascii_lowercase() {
                    ch.to_ascii_uppercase()
                } else {
                    ch.to_ascii_lowercase()
                }
            } else {
                ch
            }
        })
        .collect()
}

/// Valid constraint keys of every kind, in mixed case.
fn key_strategy() -> impl Strategy<Value = String> {
    let known = prop::sample::select(vec![
        "node.id",
        "node.hostname",
        "node.ip",
        "node.role",
        "node.platform.os",
        "node.platform.arch",
    ])
    .prop_map(String::from);
    let labelled = (
        prop::sample::select(vec!["node.labels.", "engine.labels."]),
        "[a-zA-Z0-9_.-]{0,12}",
    )
        .prop_map(|(prefix, label)| format!("{prefix}{label}"));
    let other = "[a-zA-Z_][a-zA-Z0-9_.-]{1,16}";
    (
        prop_oneof![known, labelled, other.prop_map(String::from)],
        any::<u64>(),
    )
        .prop_map(|(key, mask)| mix_case(&key, mask))
}

/// Valid values: a non-space character from the value alphabet, then any of it.
fn value_strategy() -> impl Strategy<Value = String> {
    (
        r"[a-zA-Z0-9:_.*()?+\[\]\\^$|/-]",
        r"[a-zA-Z0-9:_.*()?+\[\]\\^$|/ \t-]{0,16}",
    )
        .prop_map(|(first, rest)| format!("{first}{rest}"))
}

/// Strings close to the duration grammar, to reach deep into the parser.
const DURATION_ALPHABET: &str =
    "[+-]?[0-9.]{0,25}(ns|us|\u{b5}s|\u{3bc}s|ms|s|m|h|d|H|\u{b5}| )?[0-9.hms]{0,25}";

proptest! {
    #[test]
    fn parsers_never_panic(s in any::<String>()) {
        let _ = parse_duration(&s);
        let _ = Constraint::parse(&s);
        let _ = SpreadPreference::parse(&s);
        let _ = SpreadPreference::parse_descriptor(&s);
    }

    #[test]
    fn parsers_never_panic_near_their_grammar(
        d in DURATION_ALPHABET,
        c in r"[ a-zA-Z0-9_.=!<>~\t-]{0,30}",
        p in r"[ a-zA-Z=.]{0,30}",
    ) {
        if let Ok(parsed) = parse_duration(&d) {
            prop_assert_eq!(parse_duration(&format_duration(parsed)), Ok(parsed));
        }
        if let Ok(parsed) = Constraint::parse(&c) {
            prop_assert_eq!(Constraint::parse(&parsed.to_string()), Ok(parsed));
        }
        if let Ok(parsed) = SpreadPreference::parse(&p) {
            prop_assert_eq!(SpreadPreference::parse_descriptor(&parsed.descriptor()), Ok(parsed));
        }
        for ip in ["10.0.0.1", "::1", "::ffff:10.0.0.1"] {
            let _ = ip_matches(&c, ip.parse().unwrap());
        }
    }

    #[test]
    fn duration_round_trips_through_format(nanos in 0..=i64::MAX as u64) {
        let d = Duration::from_nanos(nanos);
        prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }

    #[test]
    fn duration_round_trips_at_human_scales(h in 0u64..10_000, m in 0u64..60, s in 0u64..60, sub in 0u64..1_000_000_000) {
        let d = Duration::new(h * 3600 + m * 60 + s, sub as u32);
        let text = format_duration(d);
        prop_assert_eq!(parse_duration(&text), Ok(d), "text {}", text);
    }

    #[test]
    fn constraint_round_trips_through_display(
        key in key_strategy(),
        op in prop::sample::select(vec!["==", "!="]),
        value in value_strategy(),
        pad in prop::sample::select(vec!["", " ", "  ", "\t"]),
    ) {
        let expr = format!("{pad}{key}{pad}{op}{pad}{value}{pad}");
        let parsed = Constraint::parse(&expr);
        prop_assert!(parsed.is_ok(), "{:?} -> {:?}", expr, parsed);
        let parsed = parsed.unwrap();
        prop_assert_eq!(&parsed.value, value.trim());
        prop_assert_eq!(parsed.op.as_str(), op);
        prop_assert!(parsed.key.to_string().eq_ignore_ascii_case(&key));
        prop_assert_eq!(Constraint::parse(&parsed.to_string()), Ok(parsed));
    }

    #[test]
    fn placement_round_trips_through_descriptor(
        engine in any::<bool>(),
        label in r"[a-zA-Z0-9_./:-]{1,20}",
        mask in any::<u64>(),
    ) {
        let prefix = if engine { "engine.labels." } else { "node.labels." };
        let cli = format!("spread={}{label}", mix_case(prefix, mask));
        let parsed = SpreadPreference::parse(&cli).unwrap();
        let want = if engine { SpreadOver::EngineLabel(label.clone()) } else { SpreadOver::NodeLabel(label.clone()) };
        prop_assert_eq!(&parsed.over, &want);
        prop_assert_eq!(SpreadPreference::parse_descriptor(&parsed.descriptor()), Ok(parsed));
    }
}
