//! Placement preferences: `--placement-pref spread=node.labels.rack`.
//!
//! Swarm supports one strategy, `spread`, over a node label or an engine label. The scheduler
//! builds one tree level per preference and shares the service's tasks equally between the label
//! values (see SEMANTICS.md, Scheduling); this module only parses and prints the preferences.
//!
//! Two forms are accepted:
//! - the CLI form `<strategy>=<descriptor>` ([`SpreadPreference::parse`]), as given to
//!   `docker service create --placement-pref`; the strategy must be `spread` (any case);
//! - the bare descriptor `node.labels.<name>` or `engine.labels.<name>`
//!   ([`SpreadPreference::parse_descriptor`]), as stored in a service spec. The prefix is matched
//!   ignoring case; the label name keeps its case.
//!
//! Whitespace around the strategy and the descriptor is trimmed. A service spec stores any
//! descriptor, as SwarmKit does (`validate.rs` does not call these parsers on it); one these
//! parsers refuse (not a label, or a label name containing whitespace, control characters or
//! `=`) puts every node in the same "missing" branch, so it does not change placement. Everything
//! here is pure.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Descriptor prefix for node labels, matched case-insensitively.
const NODE_LABEL_PREFIX: &str = "node.labels.";
/// Descriptor prefix for engine labels, matched case-insensitively.
const ENGINE_LABEL_PREFIX: &str = "engine.labels.";

/// The label whose values a spread preference shares tasks between.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SpreadOver {
    /// `node.labels.<name>`: a label set on the node by an operator. Holds the name as written.
    NodeLabel(String),
    /// `engine.labels.<name>`: a label the node's engine reported. Holds the name as written.
    EngineLabel(String),
}

/// One `spread` placement preference.
///
/// Its [`Display`](fmt::Display) form is the descriptor (`node.labels.rack`), the same text as
/// [`SpreadPreference::descriptor`]; for every preference returned by the parsers,
/// `SpreadPreference::parse_descriptor(&p.descriptor()) == Ok(p)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SpreadPreference {
    /// The label to spread over.
    pub over: SpreadOver,
}

/// Why a placement preference was rejected. Every message quotes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// The CLI form has no `=`, or nothing before it.
    #[error("placement preference {input:?} must be of the format \"<strategy>=<arg>\", e.g. \"spread=node.labels.rack\"")]
    BadFormat {
        /// The preference as given.
        input: String,
    },
    /// The strategy is not `spread`.
    #[error("unsupported placement preference strategy {strategy:?} in {input:?}: only spread is supported, e.g. \"spread=node.labels.rack\"")]
    UnsupportedStrategy {
        /// The preference as given.
        input: String,
        /// The strategy, trimmed.
        strategy: String,
    },
    /// The descriptor does not start with `node.labels.` or `engine.labels.`.
    #[error("invalid spread descriptor {descriptor:?}: expected node.labels.<label> or engine.labels.<label>, e.g. \"node.labels.rack\"")]
    InvalidDescriptor {
        /// The descriptor, trimmed.
        descriptor: String,
    },
    /// The descriptor is a bare prefix (`node.labels.`) with no label name.
    #[error("spread descriptor {descriptor:?} names no label: add the label name after the prefix, e.g. \"node.labels.rack\"")]
    EmptyLabel {
        /// The descriptor, trimmed.
        descriptor: String,
    },
    /// The label name contains whitespace, a control character or `=`.
    #[error("invalid label name {label:?} in spread descriptor {descriptor:?}: label names cannot contain whitespace, control characters or '='")]
    InvalidLabel {
        /// The descriptor, trimmed.
        descriptor: String,
        /// The label name as written.
        label: String,
    },
}

impl SpreadPreference {
    /// Parses the CLI form `spread=<descriptor>`, e.g. `spread=node.labels.rack`.
    ///
    /// ```
    /// use swarm_core::placement::{SpreadOver, SpreadPreference};
    /// let p = SpreadPreference::parse("spread=node.labels.Rack").unwrap();
    /// assert_eq!(p.over, SpreadOver::NodeLabel("Rack".into()));
    /// assert!(SpreadPreference::parse("binpack=node.labels.rack").is_err());
    /// ```
    pub fn parse(cli: &str) -> Result<SpreadPreference, PlacementError> {
        let bad_format = || PlacementError::BadFormat {
            input: cli.to_owned(),
        };
        let (strategy, descriptor) = cli.split_once('=').ok_or_else(bad_format)?;
        let strategy = strategy.trim();
        if strategy.is_empty() {
            return Err(bad_format());
        }
        if !strategy.eq_ignore_ascii_case("spread") {
            return Err(PlacementError::UnsupportedStrategy {
                input: cli.to_owned(),
                strategy: strategy.to_owned(),
            });
        }
        SpreadPreference::parse_descriptor(descriptor)
    }

    /// Parses a spread descriptor, `node.labels.<name>` or `engine.labels.<name>`.
    pub fn parse_descriptor(descriptor: &str) -> Result<SpreadPreference, PlacementError> {
        let descriptor = descriptor.trim();
        let (label, over): (&str, fn(String) -> SpreadOver) =
            if let Some(label) = strip_prefix_ignore_case(descriptor, NODE_LABEL_PREFIX) {
                (label, SpreadOver::NodeLabel)
            } else if let Some(label) = strip_prefix_ignore_case(descriptor, ENGINE_LABEL_PREFIX) {
                (label, SpreadOver::EngineLabel)
            } else {
                return Err(PlacementError::InvalidDescriptor {
                    descriptor: descriptor.to_owned(),
                });
            };
        if label.is_empty() {
            return Err(PlacementError::EmptyLabel {
                descriptor: descriptor.to_owned(),
            });
        }
        if label
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '=')
        {
            return Err(PlacementError::InvalidLabel {
                descriptor: descriptor.to_owned(),
                label: label.to_owned(),
            });
        }
        Ok(SpreadPreference {
            over: over(label.to_owned()),
        })
    }

    /// The descriptor text, `node.labels.<name>` or `engine.labels.<name>` (prefix in lower case).
    pub fn descriptor(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for SpreadPreference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.over {
            SpreadOver::NodeLabel(name) => write!(f, "{NODE_LABEL_PREFIX}{name}"),
            SpreadOver::EngineLabel(name) => write!(f, "{ENGINE_LABEL_PREFIX}{name}"),
        }
    }
}

/// The rest of `s` after `prefix`, compared ignoring ASCII case.
fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
}
