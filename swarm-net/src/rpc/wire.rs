//! The call protocol on one QUIC bidirectional stream.
//!
//! ```text
//! client -> server   frame: RequestHead { method, timeout_ms }      (limit HEAD.limit)
//!                    frame: request                               (limit: method's max_request)
//! server -> client   frame: Result<Response, Status>               (unary: exactly one)
//!                    frames: Result<Item, Status> ... then FIN     (streams; an Err frame ends it)
//! client             FIN after the response (or the end of the stream);
//!                    RESET_STREAM(CANCELLED) + STOP_SENDING to cancel, which the server sees and
//!                    answers by dropping the handler.
//! ```
//!
//! The server learns the method from the head before reading the request, so the request's size
//! limit is the method's own.

use serde::{Deserialize, Serialize};

use crate::rpc::frame::FrameKind;
use crate::rpc::method::{MethodDescriptor, MAX_METHOD_NAME};
use crate::rpc::status::MAX_MESSAGE;

/// First frame of every call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RequestHead {
    /// Method name as declared in its descriptor.
    pub(crate) method: String,
    /// Time the caller will wait, in milliseconds (None: no deadline, streams only).
    pub(crate) timeout_ms: Option<u64>,
}

/// Limit of the head frame: the method name plus a few integers.
pub(crate) const HEAD: FrameKind = FrameKind {
    name: "request head",
    limit: MAX_METHOD_NAME as u32 + 32,
};

/// Room in a response frame for an error status in place of the response.
const STATUS_ALLOWANCE: u32 = MAX_MESSAGE as u32 + 32;

/// Stream error code: the caller cancelled (dropped the call or its deadline passed).
pub(crate) const CANCELLED: u32 = 1;
/// Stream error code: the receiver refused a frame (over its limit, malformed).
pub(crate) const REFUSED: u32 = 2;
/// Connection close code: the peer's certificate is not the peer the caller expected.
pub(crate) const WRONG_PEER: u32 = 3;
/// Connection close code: the endpoint is shutting down.
pub(crate) const SHUTDOWN: u32 = 4;

pub(crate) fn request_kind(desc: &MethodDescriptor) -> FrameKind {
    FrameKind {
        name: desc.name,
        limit: desc.max_request,
    }
}

pub(crate) fn response_kind(desc: &MethodDescriptor) -> FrameKind {
    FrameKind {
        name: desc.name,
        limit: desc.max_response.saturating_add(STATUS_ALLOWANCE),
    }
}
