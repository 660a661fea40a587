//! Task logs across hosts (SwarmKit's log broker, reshaped for swarm-net's call kinds): a manager
//! answering `docker service logs` or `docker task logs` for a task on another node gets the lines
//! from that node.
//!
//! # Protocol
//! swarm-net calls go from a node to a manager (workers serve no listener), so, as SwarmKit's
//! agent does with `ListenSubscriptions` / `PublishLogs`, the node holding the logs dials out:
//! - [`LISTEN`] (server streaming, `Access::Node`): a node opens it on **every** manager it knows
//!   and keeps it open; the manager streams [`ListenMessage`]s down it: a [`LogSubscription`]
//!   (one task, with `since`, `tail` and `follow`) or the cancellation of one.
//! - [`PUBLISH`] (unary, `Access::Node`): the node sends a subscription's lines in batches (at
//!   most [`MAX_BATCH_RECORDS`] records, [`MAX_BATCH_BYTES`] of text), one call at a time per
//!   subscription, the last with its [`LogEnd`].
//!
//! # Who may see what
//! - The node publishes only for subscriptions it received on its listen stream, only to the
//!   manager that sent them, and only to managers: its listen calls name `Role::Manager` (and the
//!   manager's node id when known), so the client closes a connection whose certificate says
//!   otherwise, and TLS only accepts certificates of its cluster's root.
//! - The node serves only its own tasks: a subscription naming another node is refused, and so is a
//!   task its agent does not control (SwarmKit's agent checks the same); a task it has no logs for
//!   (its runtime never ran it or already removed it) ends with no lines, as the local path does.
//! - The manager accepts a batch only from the node the subscription was sent to (the caller's
//!   certificate, never a field of the request) and only for that subscription's task.
//!
//! # Any manager answers
//! Every node (workers, and every manager for its own tasks) listens on every manager in its
//! manager list (a worker's from its dispatcher session, a manager's from the store), so each
//! manager, leader or follower, holds a listen stream from every other node and asks it directly:
//! no forwarding to the leader, and nothing to redo on a leader change. A node whose listen stream
//! to a manager is not open (yet) is waited for [`LISTENER_WAIT`], then its part answers
//! "not available".
//!
//! # Bounded memory
//! The manager queues at most [`LISTENER_BUFFER`] control messages per node (a full queue refuses
//! the subscription) and [`SUBSCRIPTION_BUFFER`] batches per subscription: a publish call waits
//! while its subscriber (the HTTP client) is slow, and the node, publishing one batch at a time
//! per subscription, stops reading its runtime meanwhile. A node serves at most
//! [`MAX_SUBSCRIPTIONS`] subscriptions per manager at once.
//!
//! # Ends
//! A subscription ends when the task's output ends (or at once without `follow`), when the
//! subscriber drops its stream (the node is told to cancel, and its next publish is refused), or
//! when the node's listen stream ends (the node is down, unreachable past the connection's idle
//! timeout, or restarting): then the subscriber's stream yields an error naming the node, which the
//! API writes as Docker's "Error grabbing logs" frame, never a silent hang.

//!
//! # Layout
//! - this module: the methods, their messages and limits;
//! - [`broker`]: the manager's side ([`LogBroker`], [`logs_routes`]);
//! - [`publisher`]: the node's side ([`LogPublisher`], [`LogSource`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use swarm_core::{Id, Timestamp};
use swarm_net::rpc::{Access, ServerStreaming, Unary};
use swarm_runtime::{LogOptions, LogRecord, LogStream};

pub mod broker;
pub mod publisher;

pub use broker::{logs_routes, node_down, LogBroker, NoLogsThere};
pub use publisher::{LogPublisher, LogSource, ManagerList, OwnsTask, TaskLogs};

/// Most records in one [`PUBLISH`] call.
pub const MAX_BATCH_RECORDS: usize = 256;
/// Most line bytes in one [`PUBLISH`] call (a batch is sent before it would pass this).
pub const MAX_BATCH_BYTES: usize = 1 << 20;
/// Longest line sent; longer ones are cut (on a character boundary).
pub const MAX_LINE: usize = 256 << 10;
/// Control messages a manager queues for one node's listen stream.
pub const LISTENER_BUFFER: usize = 256;
/// Batches a manager queues for one subscription before its publish calls wait.
pub const SUBSCRIPTION_BUFFER: usize = 8;
/// Subscriptions a node serves at once for one manager.
pub const MAX_SUBSCRIPTIONS: usize = 512;
/// How long a subscription waits for the node's listen stream to this manager to be open.
pub const LISTENER_WAIT: Duration = Duration::from_secs(3);
/// How long a node may take to answer a subscription (its first, possibly empty, batch).
pub const ANSWER_WAIT: Duration = Duration::from_secs(10);
/// How long one publish call may wait for its subscriber to take the previous lines.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(300);
/// How often a node re-reads its manager list.
const MANAGERS_EVERY: Duration = Duration::from_secs(1);
/// Longest pause between two attempts to open a listen stream.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// A node's standing request for log subscriptions: see the module docs.
pub const LISTEN: ServerStreaming<ListenRequest, ListenMessage> =
    ServerStreaming::new("logs.listen", Access::Node, 64, 64 << 10);
/// A batch of a subscription's lines.
pub const PUBLISH: Unary<PublishRequest, PublishResponse> =
    Unary::new("logs.publish", Access::Node, 2 << 20, 64);

/// The request opening [`LISTEN`]; the node is the caller's certificate's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenRequest {}

/// One task's logs, as a manager asks a node for them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogSubscription {
    /// Chosen by the manager; quoted in every publish.
    pub id: u64,
    /// The node the manager believes runs the task.
    pub node_id: Id,
    /// The task.
    pub task_id: Id,
    /// Only lines written at or after this time.
    pub since: Option<Timestamp>,
    /// Of those, only the last `tail`.
    pub tail: Option<u64>,
    /// Keep sending lines as they are written, until the task's output ends.
    pub follow: bool,
}

impl LogSubscription {
    fn options(&self) -> LogOptions {
        LogOptions {
            since: self.since,
            tail: self.tail.map(|t| usize::try_from(t).unwrap_or(usize::MAX)),
            follow: self.follow,
        }
    }
}

/// An item of the [`LISTEN`] stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ListenMessage {
    /// Send this task's lines.
    Subscribe(LogSubscription),
    /// The subscriber went away: stop sending subscription `id`.
    Cancel {
        /// The subscription.
        id: u64,
    },
}

/// One line on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireRecord {
    /// When it was written, if the runtime knows.
    pub time: Option<Timestamp>,
    /// Standard error (else standard output).
    pub stderr: bool,
    /// The line.
    pub line: String,
}

impl WireRecord {
    fn from_record(r: LogRecord) -> WireRecord {
        let mut line = r.line;
        if line.len() > MAX_LINE {
            let mut end = MAX_LINE;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            line.truncate(end);
        }
        WireRecord {
            time: r.time,
            stderr: r.stream == LogStream::Stderr,
            line,
        }
    }

    fn into_record(self) -> LogRecord {
        LogRecord {
            time: self.time,
            stream: if self.stderr {
                LogStream::Stderr
            } else {
                LogStream::Stdout
            },
            line: self.line,
        }
    }
}

/// How a subscription ended, on the node's side.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogEnd {
    /// Every line was sent (the output ended; or, without follow, the lines kept now).
    Done,
    /// The node has no logs of the task (never ran it here, or already removed).
    NoLogs,
    /// The node refuses: the task is not its own.
    Refused(String),
    /// Reading the logs failed.
    Failed(String),
}

/// A batch of a subscription's lines (and with `end`, its last).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishRequest {
    /// The subscription.
    pub subscription: u64,
    /// Its task.
    pub task_id: Id,
    /// Lines, oldest first.
    pub records: Vec<WireRecord>,
    /// Set on the last call.
    pub end: Option<LogEnd>,
}

/// The answer to [`PUBLISH`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishResponse {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_cross_the_wire_with_their_stream_and_time_and_long_lines_are_cut() {
        let r = LogRecord {
            time: Some(Timestamp(7)),
            stream: LogStream::Stderr,
            line: "oops".into(),
        };
        assert_eq!(WireRecord::from_record(r.clone()).into_record(), r);
        // A line over the limit is cut on a character boundary (a 3-byte character straddles it).
        let long = format!("{}€€", "a".repeat(MAX_LINE - 1));
        let w = WireRecord::from_record(LogRecord {
            time: None,
            stream: LogStream::Stdout,
            line: long,
        });
        assert_eq!(w.line.len(), MAX_LINE - 1);
        assert!(!w.stderr);
    }
}
