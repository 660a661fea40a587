//! Placement constraints: `node.labels.rack == a`, `node.role != manager`, `node.ip == 10.0.0.0/8`.
//!
//! A constraint is `key op value` with `op` either `==` or `!=`. Parsing follows SwarmKit's
//! `manager/constraint` rules so every constraint a Docker user already writes means the same thing:
//!
//! - The expression is split at the first `==`; failing that, at the first `!=`. Any other
//!   operator (`=`, `>`, `>=`, `~`, ...) is rejected.
//! - Whitespace around the key and the value is trimmed.
//! - The key matches `^(?i)[a-z_][a-z0-9\-_.]+$` (so it has at least two characters).
//! - The value is non-empty and matches
//!   `^(?i)[a-z0-9:\-_\s\.\*\(\)\?\+\[\]\\\^\$\|\/]+$`, which leaves out every operator character.
//! - Keys are recognised case-insensitively ([`ConstraintKey`]); label names keep their case. A key
//!   that is none of the known ones still parses, as [`ConstraintKey::Unknown`], and matches no node.
//!
//! Ours: the character classes are ASCII only (Go's `(?i)` would also admit `ſ` and the Kelvin sign
//! in keys), and parse errors name the rule that was broken.
//!
//! Matching is exact and case-insensitive, and a fact the node lacks counts as `""`, so `==` fails
//! and `!=` passes. The helpers take plain strings so the scheduler can feed them node facts
//! without this module knowing any node type. Everything here is pure.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Key prefix for node labels (`node.labels.<name>`), matched case-insensitively.
const NODE_LABEL_PREFIX: &str = "node.labels.";
/// Key prefix for engine labels (`engine.labels.<name>`), matched case-insensitively.
const ENGINE_LABEL_PREFIX: &str = "engine.labels.";

/// Punctuation allowed in a value besides ASCII letters, digits and whitespace.
const VALUE_PUNCTUATION: &str = ":-_.*()?+[]\\^$|/";

/// Characters that make up operators; used only to name a rejected operator.
const OPERATOR_CHARS: &[char] = &['=', '!', '<', '>', '~'];

/// One parsed placement constraint, `key op value`.
///
/// Its [`Display`](fmt::Display) form is the canonical text: the key (known keys in lower case,
/// label names as given), the operator, and the value, with no spaces around the operator, e.g.
/// `node.labels.rack==a`. For every constraint returned by [`Constraint::parse`],
/// `Constraint::parse(&c.to_string()) == Ok(c)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Constraint {
    /// What the constraint looks at.
    pub key: ConstraintKey,
    /// Whether the node's value must equal or differ from `value`.
    pub op: ConstraintOp,
    /// The expected value, trimmed, case as written (comparison ignores case).
    pub value: String,
}

/// The node fact a constraint looks at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConstraintKey {
    /// `node.id`: the node's id.
    NodeId,
    /// `node.hostname`: the hostname the node reported.
    NodeHostname,
    /// `node.ip`: the node's address; the value is an IP address or a CIDR network.
    NodeIp,
    /// `node.role`: `manager` or `worker`.
    NodeRole,
    /// `node.platform.os`: the operating system the node reported, e.g. `linux`.
    NodePlatformOs,
    /// `node.platform.arch`: the architecture the node reported, e.g. `x86_64`.
    NodePlatformArch,
    /// `node.labels.<name>`: a label set on the node by an operator (`docker node update
    /// --label-add`). Holds the name, case as written.
    NodeLabel(String),
    /// `engine.labels.<name>`: a label the node's engine reported. Holds the name, case as written.
    EngineLabel(String),
    /// Any other syntactically valid key, kept as written. It parses (as in SwarmKit) but no node
    /// satisfies it, whatever the operator.
    Unknown(String),
}

/// The comparison a constraint makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConstraintOp {
    /// `==`: the node's value equals the expected one (ignoring case).
    Eq,
    /// `!=`: the node's value differs from the expected one (ignoring case).
    NotEq,
}

/// Why a constraint expression was rejected. Every message quotes the expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConstraintError {
    /// The expression has neither `==` nor `!=` nor any other operator.
    #[error("constraint {expr:?} has no operator: write key==value or key!=value, e.g. \"node.labels.rack==a\"")]
    MissingOperator {
        /// The expression as given.
        expr: String,
    },
    /// The expression uses an operator other than `==` and `!=`, such as `=` or `>=`.
    #[error("constraint {expr:?} uses unsupported operator {op:?}: only == and != are supported, e.g. \"node.role==manager\"")]
    UnsupportedOperator {
        /// The expression as given.
        expr: String,
        /// The operator characters found, e.g. `=` or `>=`.
        op: String,
    },
    /// Nothing but whitespace comes before the operator.
    #[error("constraint {expr:?} has no key before the operator, e.g. \"node.labels.rack==a\"")]
    EmptyKey {
        /// The expression as given.
        expr: String,
    },
    /// The key does not match `^(?i)[a-z_][a-z0-9\-_.]+$`.
    #[error("invalid key {key:?} in constraint {expr:?}: a key has at least two characters, starts with a letter or '_', and contains only letters, digits, '-', '_' and '.', e.g. node.labels.rack")]
    InvalidKey {
        /// The expression as given.
        expr: String,
        /// The key, trimmed.
        key: String,
    },
    /// Nothing but whitespace comes after the operator.
    #[error("constraint {expr:?} has no value after the operator, e.g. \"node.labels.rack==a\"")]
    EmptyValue {
        /// The expression as given.
        expr: String,
    },
    /// The value contains a character outside SwarmKit's value pattern.
    #[error("invalid value {value:?} in constraint {expr:?}: {found:?} is not allowed; a value may contain letters, digits, spaces and the characters : - _ . * ( ) ? + [ ] \\ ^ $ | /")]
    InvalidValue {
        /// The expression as given.
        expr: String,
        /// The value, trimmed.
        value: String,
        /// The first character that is not allowed.
        found: char,
    },
    /// An expression in a list failed; returned by [`parse_constraints`].
    #[error("constraint number {} in the list: {error}", .index + 1)]
    InList {
        /// Position of the failing expression in the list, from 0.
        index: usize,
        /// What was wrong with it.
        error: Box<ConstraintError>,
    },
}

impl Constraint {
    /// Parses one expression such as `node.labels.rack == a` (see the module docs for the rules).
    ///
    /// ```
    /// use swarm_core::constraint::{Constraint, ConstraintKey, ConstraintOp};
    /// let c = Constraint::parse(" Node.Labels.Rack != a1 ").unwrap();
    /// assert_eq!(c.key, ConstraintKey::NodeLabel("Rack".into()));
    /// assert_eq!(c.op, ConstraintOp::NotEq);
    /// assert_eq!(c.to_string(), "node.labels.Rack!=a1");
    /// ```
    pub fn parse(expr: &str) -> Result<Constraint, ConstraintError> {
        let (op, raw_key, raw_value) = if let Some((k, v)) = expr.split_once("==") {
            (ConstraintOp::Eq, k, v)
        } else if let Some((k, v)) = expr.split_once("!=") {
            (ConstraintOp::NotEq, k, v)
        } else {
            return Err(operator_error(expr));
        };

        let key = raw_key.trim();
        if key.is_empty() {
            return Err(ConstraintError::EmptyKey {
                expr: expr.to_owned(),
            });
        }
        if !is_valid_key(key) {
            return Err(ConstraintError::InvalidKey {
                expr: expr.to_owned(),
                key: key.to_owned(),
            });
        }

        let value = raw_value.trim();
        if value.is_empty() {
            return Err(ConstraintError::EmptyValue {
                expr: expr.to_owned(),
            });
        }
        if let Some(found) = value.chars().find(|&c| !is_value_char(c)) {
            return Err(ConstraintError::InvalidValue {
                expr: expr.to_owned(),
                value: value.to_owned(),
                found,
            });
        }

        Ok(Constraint {
            key: ConstraintKey::from_key(key),
            op,
            value: value.to_owned(),
        })
    }

    /// Whether a node whose fact for [`Self::key`] is `actual` satisfies this constraint.
    ///
    /// `actual` is `None` when the node lacks the fact (no such label, no hostname reported); that
    /// counts as `""`. For [`ConstraintKey::NodeIp`], `actual` is parsed as an IP address and
    /// compared with [`ip_matches`]; an address that is missing or unparsable is in no network
    /// (so `==` fails and `!=` passes), while an expected value that is neither an IP nor a CIDR
    /// matches no node under either operator, as in SwarmKit. [`ConstraintKey::Unknown`] matches
    /// nothing. Every other key compares with [`ConstraintOp::matches`].
    pub fn matches(&self, actual: Option<&str>) -> bool {
        match &self.key {
            ConstraintKey::Unknown(_) => false,
            ConstraintKey::NodeIp => {
                if parse_ip_or_network(&self.value).is_none() {
                    return false;
                }
                let within = actual
                    .and_then(|a| a.trim().parse::<IpAddr>().ok())
                    .is_some_and(|ip| ip_matches(&self.value, ip));
                match self.op {
                    ConstraintOp::Eq => within,
                    ConstraintOp::NotEq => !within,
                }
            }
            _ => self.op.matches(&self.value, actual),
        }
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.key, self.op, self.value)
    }
}

impl ConstraintKey {
    /// Classifies a key that passed the key check. Known names and label prefixes are matched
    /// ignoring ASCII case; a bare prefix such as `node.labels.` names no label and is `Unknown`.
    fn from_key(key: &str) -> ConstraintKey {
        let known = [
            ("node.id", ConstraintKey::NodeId),
            ("node.hostname", ConstraintKey::NodeHostname),
            ("node.ip", ConstraintKey::NodeIp),
            ("node.role", ConstraintKey::NodeRole),
            ("node.platform.os", ConstraintKey::NodePlatformOs),
            ("node.platform.arch", ConstraintKey::NodePlatformArch),
        ];
        if let Some((_, k)) = known
            .into_iter()
            .find(|(name, _)| key.eq_ignore_ascii_case(name))
        {
            return k;
        }
        if let Some(label) = strip_prefix_ignore_case(key, NODE_LABEL_PREFIX) {
            return ConstraintKey::NodeLabel(label.to_owned());
        }
        if let Some(label) = strip_prefix_ignore_case(key, ENGINE_LABEL_PREFIX) {
            return ConstraintKey::EngineLabel(label.to_owned());
        }
        ConstraintKey::Unknown(key.to_owned())
    }
}

impl fmt::Display for ConstraintKey {
    /// The canonical key text: `node.id`, ..., `node.labels.<name>`, `engine.labels.<name>`, or an
    /// unknown key as written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConstraintKey::NodeId => f.write_str("node.id"),
            ConstraintKey::NodeHostname => f.write_str("node.hostname"),
            ConstraintKey::NodeIp => f.write_str("node.ip"),
            ConstraintKey::NodeRole => f.write_str("node.role"),
            ConstraintKey::NodePlatformOs => f.write_str("node.platform.os"),
            ConstraintKey::NodePlatformArch => f.write_str("node.platform.arch"),
            ConstraintKey::NodeLabel(name) => write!(f, "{NODE_LABEL_PREFIX}{name}"),
            ConstraintKey::EngineLabel(name) => write!(f, "{ENGINE_LABEL_PREFIX}{name}"),
            ConstraintKey::Unknown(key) => f.write_str(key),
        }
    }
}

impl ConstraintOp {
    /// The operator's text, `==` or `!=`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConstraintOp::Eq => "==",
            ConstraintOp::NotEq => "!=",
        }
    }

    /// Whether `actual` satisfies this operator against `expected`.
    ///
    /// Equality is exact but ignores case, like Go's `strings.EqualFold`. A missing value
    /// (`None`) counts as `""`, so under `==` it fails (the expected value is never empty) and
    /// under `!=` it passes.
    pub fn matches(&self, expected: &str, actual: Option<&str>) -> bool {
        let equal = fold_eq(expected, actual.unwrap_or(""));
        match self {
            ConstraintOp::Eq => equal,
            ConstraintOp::NotEq => !equal,
        }
    }
}

impl fmt::Display for ConstraintOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses each expression in order and returns the first failure, wrapped in
/// [`ConstraintError::InList`] with its position. Several constraints are ANDed by the caller.
pub fn parse_constraints<S: AsRef<str>>(exprs: &[S]) -> Result<Vec<Constraint>, ConstraintError> {
    exprs
        .iter()
        .enumerate()
        .map(|(index, expr)| {
            Constraint::parse(expr.as_ref()).map_err(|error| ConstraintError::InList {
                index,
                error: Box::new(error),
            })
        })
        .collect()
}

/// Whether `actual` is the address `expected` or lies in the network `expected` (CIDR).
///
/// Works for IPv4 and IPv6 and follows Go's `net` package, which SwarmKit uses: an IPv4 address
/// and its IPv4-mapped IPv6 form (`::ffff:a.b.c.d`) are the same address, so `10.0.0.0/8`
/// contains `::ffff:10.1.2.3` and `::ffff:10.0.0.0/104` contains `10.1.2.3`; an IPv6 network
/// never contains an IPv4 address (not even `::/0`), nor an IPv4 network an IPv6 one. A
/// network's host bits are ignored (`10.1.2.3/8` is `10.0.0.0/8`). An `expected` that is neither
/// an address nor a network never matches.
pub fn ip_matches(expected: &str, actual: IpAddr) -> bool {
    match (parse_ip_or_network(expected), Family::of(actual)) {
        (Some(Network::V4(net, len)), Family::V4(ip)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            ip & mask == net & mask
        }
        (Some(Network::V6(net, len)), Family::V6(ip)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            ip & mask == net & mask
        }
        _ => false,
    }
}

/// An address or network, with IPv4-mapped IPv6 folded into IPv4. The prefix length is at most
/// the family's width (32 or 128); a single address has the full width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Network {
    V4(u32, u8),
    V6(u128, u8),
}

/// An address's bits, IPv4-mapped IPv6 folded into IPv4 (Go's `To4`).
enum Family {
    V4(u32),
    V6(u128),
}

impl Family {
    fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(v4) => Family::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Family::V4(u32::from(v4)),
                None => Family::V6(u128::from(v6)),
            },
        }
    }
}

/// Parses an address or a CIDR network the way Go's `net.ParseIP` / `net.ParseCIDR` accept them.
fn parse_ip_or_network(text: &str) -> Option<Network> {
    let (addr, prefix) = match text.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (text, None),
    };
    let ip: IpAddr = addr.parse().ok()?;
    let width: u32 = if ip.is_ipv4() { 32 } else { 128 };
    let len = match prefix {
        None => width,
        // Like Go: decimal digits only (leading zeros allowed), at most the address width.
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            let digits = p.trim_start_matches('0');
            let len: u32 = if digits.is_empty() {
                0
            } else {
                digits.parse().ok()?
            };
            if len > width {
                return None;
            }
            len
        }
        Some(_) => return None,
    };
    // Go measures a mapped network's mask in IPv6 bits and keeps only its IPv4 part.
    let network = match (Family::of(ip), ip.is_ipv6()) {
        (Family::V4(bits), true) => Network::V4(bits, len.saturating_sub(96) as u8),
        (Family::V4(bits), false) => Network::V4(bits, len as u8),
        (Family::V6(bits), _) => Network::V6(bits, len as u8),
    };
    Some(network)
}

/// Whether `key` matches `^(?i)[a-z_][a-z0-9\-_.]+$` (ASCII only).
fn is_valid_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    first_ok
        && key.len() >= 2
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Whether `c` is in SwarmKit's value class (`\s` is RE2's ASCII `[\t\n\f\r ]`).
fn is_value_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ')
        || VALUE_PUNCTUATION.contains(c)
}

/// The rest of `s` after `prefix`, compared ignoring ASCII case, when that rest is non-empty.
fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    let rest = s.get(prefix.len()..)?;
    (head.eq_ignore_ascii_case(prefix) && !rest.is_empty()).then_some(rest)
}

/// The error for an expression with neither `==` nor `!=`: name the operator if there is one.
fn operator_error(expr: &str) -> ConstraintError {
    match expr.find(OPERATOR_CHARS) {
        Some(start) => {
            let tail = expr.get(start..).unwrap_or("");
            let op: String = tail
                .chars()
                .take_while(|c| OPERATOR_CHARS.contains(c))
                .collect();
            ConstraintError::UnsupportedOperator {
                expr: expr.to_owned(),
                op,
            }
        }
        None => ConstraintError::MissingOperator {
            expr: expr.to_owned(),
        },
    }
}

/// Case-insensitive equality in the spirit of Go's `strings.EqualFold`: the strings have the same
/// number of characters and each pair is equal, or equal once lower-cased or upper-cased.
fn fold_eq(a: &str, b: &str) -> bool {
    if a.eq_ignore_ascii_case(b) {
        return true;
    }
    let mut left = a.chars();
    let mut right = b.chars();
    loop {
        match (left.next(), right.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) => {
                let same = x == y
                    || x.to_lowercase().eq(y.to_lowercase())
                    || x.to_uppercase().eq(y.to_uppercase());
                if !same {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_eq_follows_unicode_case() {
        assert!(fold_eq("k", "\u{212a}")); // KELVIN SIGN
        assert!(fold_eq("s", "\u{17f}")); // LATIN SMALL LETTER LONG S
        assert!(!fold_eq("Straße", "STRASSE"));
        assert!(fold_eq("ÄRGER", "ärger"));
        assert!(!fold_eq("a", "ab"));
    }

    #[test]
    fn network_prefix_lengths() {
        let ten = u32::from(std::net::Ipv4Addr::new(10, 0, 0, 0));
        assert_eq!(parse_ip_or_network("10.0.0.0/8"), Some(Network::V4(ten, 8)));
        assert_eq!(parse_ip_or_network("10.0.0.0"), Some(Network::V4(ten, 32)));
        assert_eq!(
            parse_ip_or_network("::ffff:10.0.0.0/104"),
            Some(Network::V4(ten, 8))
        );
        assert_eq!(
            parse_ip_or_network("::ffff:10.0.0.0/64"),
            Some(Network::V4(ten, 0))
        );
        assert_eq!(
            parse_ip_or_network("10.0.0.0/0032"),
            Some(Network::V4(ten, 32))
        );
        assert_eq!(parse_ip_or_network("::/0"), Some(Network::V6(0, 0)));
        assert_eq!(parse_ip_or_network("::"), Some(Network::V6(0, 128)));
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "::/+1",
            "::/",
            "::/99999999999999999999",
            "10.0.0.0/8/8",
            "",
            "x",
        ] {
            assert_eq!(parse_ip_or_network(bad), None, "{bad:?}");
        }
    }
}
