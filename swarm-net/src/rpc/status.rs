//! [`Status`]: the error a server returns for one call, carried in the response frame.

use serde::{Deserialize, Serialize};

/// Longest status message sent; longer messages are cut (on a character boundary) so an error
/// always fits in the response frame's allowance.
pub const MAX_MESSAGE: usize = 512;

/// What kind of failure a [`Status`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Code {
    /// The request was malformed or invalid.
    InvalidArgument,
    /// The object the request names does not exist.
    NotFound,
    /// The object the request creates already exists.
    AlreadyExists,
    /// No client certificate, or one of another cluster, for a method that needs one; or the
    /// node was removed or its certificate expired.
    Unauthenticated,
    /// The caller's role may not call this method.
    PermissionDenied,
    /// A message was over its size limit.
    ResourceExhausted,
    /// The system is not in a state to do this (for example: not the leader, locked).
    FailedPrecondition,
    /// The call's deadline passed before it finished.
    DeadlineExceeded,
    /// The server cannot serve right now; the caller may retry.
    Unavailable,
    /// The server does not know the method.
    Unimplemented,
    /// A bug or an unexpected failure on the server.
    Internal,
}

/// A call's failure as the server reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct Status {
    /// The kind of failure.
    pub code: Code,
    /// What happened, for a person (at most [`MAX_MESSAGE`] bytes).
    pub message: String,
}

impl Status {
    /// A status with `code` and `message` (cut to [`MAX_MESSAGE`] bytes).
    pub fn new(code: Code, message: impl Into<String>) -> Status {
        let mut message = message.into();
        if message.len() > MAX_MESSAGE {
            let mut end = MAX_MESSAGE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        Status { code, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let s = Status::new(Code::Internal, "é".repeat(400));
        assert!(s.message.len() <= MAX_MESSAGE);
        assert_eq!(s.message.chars().count(), MAX_MESSAGE / 2);
    }
}
