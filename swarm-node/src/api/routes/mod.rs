//! The routes, one module per endpoint group, and the helpers every handler uses.

mod events;
mod logs;
mod networks;
mod nodes;
mod secrets;
mod services;
mod swarm;
mod system;
mod tasks;

use axum::body::Body;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Serialize;
use swarm_core::{Config, Secret};

pub(crate) use self::events::{keep_attached, EventHub};
use super::error::ApiError;
use super::{json, AppState};

/// Largest request body read (a config is < 1000 KiB, about 1.3 MiB in base64).
const MAX_BODY: usize = 4 * 1024 * 1024;

/// Every route of the API (unversioned paths; `super::router` strips the version).
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/_ping", get(system::ping).head(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/distribution/{*name}", get(system::distribution))
        .route("/images/{*rest}", axum::routing::any(system::no_image))
        .route(
            "/containers/{*rest}",
            axum::routing::any(system::no_container),
        )
        .route("/swarm", get(swarm::inspect))
        .route("/swarm/init", post(swarm::init))
        .route("/swarm/join", post(swarm::join))
        .route("/swarm/leave", post(swarm::leave))
        .route("/swarm/update", post(swarm::update))
        .route("/swarm/unlock", post(swarm::unlock))
        .route("/swarm/unlockkey", get(swarm::unlock_key))
        .route("/nodes", get(nodes::list))
        .route("/nodes/{id}", get(nodes::inspect).delete(nodes::remove))
        .route("/nodes/{id}/update", post(nodes::update))
        .route("/services", get(services::list))
        .route("/services/create", post(services::create))
        .route(
            "/services/{id}",
            get(services::inspect).delete(services::remove),
        )
        .route("/services/{id}/update", post(services::update))
        .route("/services/{id}/logs", get(logs::service_logs))
        .route("/tasks", get(tasks::list))
        .route("/tasks/{id}", get(tasks::inspect))
        .route("/tasks/{id}/logs", get(logs::task_logs))
        .merge(secrets::routes::<Secret>("secrets"))
        .merge(secrets::routes::<Config>("configs"))
        .route("/networks", get(networks::list))
        .route("/networks/create", post(networks::create))
        .route(
            "/networks/{id}",
            get(networks::inspect).delete(networks::remove),
        )
        .route("/networks/prune", post(networks::prune))
        .route("/networks/{id}/connect", post(networks::connect))
        .route("/networks/{id}/disconnect", post(networks::connect))
        .route("/session", post(system::session))
        .route("/events", get(events::events))
        .route("/plugins", get(system::plugins))
        .route("/volumes", get(system::volumes))
        .route(
            "/volumes/{name}",
            delete(system::no_volume).get(system::no_volume),
        )
}

/// The object name or id in the path, with a Docker-style error if it cannot be decoded.
pub(crate) struct PathId(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(s)| PathId(s))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

/// A JSON answer.
pub(crate) fn reply<T: Serialize>(status: StatusCode, value: &T) -> Response {
    reply_sized(status, value, 256)
}

/// A JSON answer serialized into a buffer of `capacity` bytes to start with (a list of a thousand
/// services is most of a megabyte: growing the buffer from empty would copy it about ten times).
pub(crate) fn reply_sized<T: Serialize>(
    status: StatusCode,
    value: &T,
    capacity: usize,
) -> Response {
    let mut body = Vec::with_capacity(capacity);
    match serde_json::to_writer(&mut body, value) {
        Ok(()) => {
            let mut resp = (status, body).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("could not encode the answer: {e}"),
        )
        .into_response(),
    }
}

/// A 200 JSON list, sized for about `per_item` bytes per element.
pub(crate) fn ok_list<T: Serialize>(items: &[T], per_item: usize) -> Response {
    reply_sized(
        StatusCode::OK,
        &items,
        items.len().saturating_mul(per_item).max(256),
    )
}

/// Items per chunk of a streamed list, and the length from which a list is streamed.
const STREAM_CHUNK: usize = 256;

/// A 200 JSON list of `items`, each converted by `convert` only when the client reads that far: a
/// list of [`STREAM_CHUNK`] items or more is sent chunked, [`STREAM_CHUNK`] items at a time, so
/// the answer is never whole in memory (a million tasks would be about 1.5 GB of JSON). Shorter
/// lists are sent in one piece, as [`ok_list`]. The bytes are the same either way.
pub(crate) fn ok_streamed_list<A, T, F>(items: Vec<A>, convert: F) -> Response
where
    A: Send + 'static,
    T: Serialize,
    F: Fn(&A) -> T + Send + 'static,
{
    if items.len() < STREAM_CHUNK {
        let out: Vec<T> = items.iter().map(&convert).collect();
        return ok_list(&out, 1024);
    }
    let total = items.len();
    let state = (items, 0usize, convert);
    let chunks = futures_util::stream::unfold(state, move |(items, at, convert)| async move {
        if at > total {
            return None;
        }
        let end = (at + STREAM_CHUNK).min(total);
        let mut buf = Vec::with_capacity((end - at) * 1024 + 2);
        if at == 0 {
            buf.push(b'[');
        }
        for (i, item) in items[at..end].iter().enumerate() {
            if at + i > 0 {
                buf.push(b',');
            }
            if let Err(e) = serde_json::to_writer(&mut buf, &convert(item)) {
                // Nothing here fails to encode; if it did, the client sees a cut answer, not a
                // wrong one.
                let err = std::io::Error::other(format!("could not encode the answer: {e}"));
                return Some((Err(err), (items, total + 1, convert)));
            }
        }
        // After the last chunk, `total + 1` ends the stream.
        let next = if end == total {
            buf.push(b']');
            total + 1
        } else {
            end
        };
        Some((Ok::<_, std::io::Error>(buf), (items, next, convert)))
    });
    let mut resp = (StatusCode::OK, Body::from_stream(chunks)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A 200 JSON answer.
pub(crate) fn ok<T: Serialize>(value: &T) -> Response {
    reply(StatusCode::OK, value)
}

/// An empty 200 answer.
pub(crate) fn empty() -> Response {
    StatusCode::OK.into_response()
}

/// Reads and decodes a JSON body (Docker's `invalid JSON` on failure; a non-JSON content type is
/// refused as Docker refuses it).
pub(crate) async fn body<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
) -> Result<T, ApiError> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("");
        let mime = ct.split(';').next().unwrap_or("").trim();
        if !mime.is_empty() && !mime.eq_ignore_ascii_case("application/json") {
            return Err(ApiError::bad_request(format!(
                "unsupported Content-Type header ({ct}): must be 'application/json'"
            )));
        }
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than {MAX_BODY} bytes"),
        )
    })?;
    json::decode(&bytes)
}

#[cfg(test)]
mod stream_tests {
    use super::*;

    async fn body_of(resp: Response) -> (bool, Vec<u8>) {
        let sized = resp.headers().contains_key(header::CONTENT_LENGTH)
            || axum::body::HttpBody::size_hint(resp.body())
                .exact()
                .is_some();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body");
        (sized, bytes.to_vec())
    }

    /// A streamed list is byte for byte the JSON of the whole list, for lengths around every
    /// chunk boundary; short lists go out in one sized piece.
    #[tokio::test]
    async fn streamed_lists_are_the_same_json_as_whole_ones() {
        for n in [0, 1, 255, 256, 257, 511, 512, 513, 1000] {
            let items: Vec<u64> = (0..n).collect();
            let want = serde_json::to_vec(&items.iter().map(|i| i * 3).collect::<Vec<_>>())
                .expect("encode");
            let (sized, got) = body_of(ok_streamed_list(items, |i: &u64| i * 3)).await;
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want),
                "{n} items"
            );
            assert_eq!(sized, (n as usize) < STREAM_CHUNK, "{n} items");
        }
    }
}
