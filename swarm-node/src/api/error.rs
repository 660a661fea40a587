//! [`ApiError`]: an HTTP status plus Docker's `{"message": "..."}` body.
//!
//! Status codes follow Docker's `httpstatus` mapping: 400 for invalid parameters (bad JSON, bad
//! filters, spec rules), 404 for unknown objects, 409 for name conflicts and stale versions, 503
//! when the node is not in a swarm, is locked or has no quorum, 501 for unsupported operations, and
//! 500 only for failures inside the daemon. Ours: a stale version is 409, where Docker answers 500
//! (`update out of sequence` reaches it as a gRPC `Unknown`); the message keeps Docker's form,
//! `rpc error: code = Unknown desc = ...update out of sequence`, ending with the words SDKs match.
//! Messages of errors SwarmKit raises carry its gRPC code as Docker shows it (`rpc error: code =
//! <code> desc = <message>`); `tests/api_fidelity.rs` checks them against a real engine's.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::backend::BackendError;
use crate::control::ControlError;

/// An error answer. Never carries secret data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The `message` field.
    pub message: String,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// 400: a parameter the client sent is wrong.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// 400 `invalid JSON: ...`, Docker's answer to a body it cannot decode.
    pub(crate) fn invalid_json(e: impl std::fmt::Display) -> ApiError {
        ApiError::bad_request(format!("invalid JSON: {e}"))
    }

    /// 404 `page not found`, Docker's answer to an unknown path.
    pub(crate) fn page_not_found() -> ApiError {
        ApiError::not_found("page not found")
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "message": self.message }).to_string();
        let mut resp = (self.status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> ApiError {
        let status = match &e {
            ControlError::Spec(_)
            | ControlError::InvalidArgument(_)
            | ControlError::Ambiguous { .. }
            | ControlError::FailedPrecondition(_) => StatusCode::BAD_REQUEST,
            ControlError::NotFound { .. } => StatusCode::NOT_FOUND,
            ControlError::AlreadyExists(_)
            | ControlError::Conflict(_)
            | ControlError::OutOfSequence(_) => StatusCode::CONFLICT,
            ControlError::Unimplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ControlError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ControlError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = match e.grpc_code() {
            Some(code) => format!("rpc error: code = {code} desc = {e}"),
            None => e.to_string(),
        };
        ApiError::new(status, message)
    }
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> ApiError {
        let status = match &e {
            BackendError::NotInSwarm
            | BackendError::Locked
            | BackendError::AlreadyInSwarm
            | BackendError::LeaveRefused
            | BackendError::LeaveLosesQuorum { .. }
            | BackendError::LeaveManager
            | BackendError::LeaveLocked
            | BackendError::NotAManager
            | BackendError::JoinPending => StatusCode::SERVICE_UNAVAILABLE,
            BackendError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
            BackendError::JoinFailed(_) => StatusCode::INTERNAL_SERVER_ERROR,
            BackendError::InvalidUnlockKey => StatusCode::UNAUTHORIZED,
            BackendError::MalformedUnlockKey(_) => StatusCode::BAD_REQUEST,
            BackendError::NotLocked => StatusCode::CONFLICT,
            BackendError::NoLogs(_) => StatusCode::NOT_FOUND,
            BackendError::Commit(c) => return ControlError::from(c.clone()).into(),
            BackendError::ListenFailed(_) | BackendError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError::new(status, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_core::{Id, ObjectKind, StoreError};

    #[test]
    fn control_errors_map_to_docker_statuses() {
        let cases: Vec<(ControlError, u16, &str)> = vec![
            (
                ControlError::not_found("service", "web"),
                404,
                "service web not found",
            ),
            (
                StoreError::NameConflict {
                    kind: ObjectKind::Secret,
                    name: "pw".into(),
                }
                .into(),
                409,
                "rpc error: code = AlreadyExists desc = secret pw already exists",
            ),
            (
                StoreError::VersionConflict {
                    kind: ObjectKind::Service,
                    id: Id::from_u128(1),
                    current: 5,
                    given: 3,
                }
                .into(),
                409,
                "update out of sequence",
            ),
            (
                ControlError::Unavailable("no quorum".into()),
                503,
                "no quorum",
            ),
        ];
        for (e, status, msg) in cases {
            let a = ApiError::from(e);
            assert_eq!(a.status.as_u16(), status);
            assert!(a.message.contains(msg), "{}", a.message);
        }
    }
}
