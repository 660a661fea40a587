//! The Docker Engine API's swarm endpoints over a Unix socket, so the ordinary `docker` CLI drives
//! a swarm-node cluster.
//!
//! [`serve`] runs an axum server on a [`tokio::net::UnixListener`]; [`router`] builds the
//! application for embedding or testing. Requests arrive versioned (`/v1.44/services`) or not
//! (`/services`); versions from [`MIN_API_VERSION`] to [`MAX_ACCEPTED_API_VERSION`] are served (the
//! CLI negotiates down to the advertised [`API_VERSION`] from `/_ping`), older ones are refused with
//! Docker's message. Every answer carries `Api-Version`, `Ostype`, `Docker-Experimental` and
//! `Server` headers; every error is `{"message": "..."}` (see [`error`]).
//!
//! Handlers are thin: parse the query and body ([`json`] decodes Docker's case-insensitive keys),
//! convert to swarm-core types ([`convert`], the only place that knows both shapes), call the
//! control layer ([`crate::control`]) or the [`Backend`], convert back. A locked or inactive node
//! answers every swarm endpoint with the backend's error (503) and shows nothing of the cluster.
//!
//! # Layout
//! - [`error`]: [`ApiError`] and the status mapping.
//! - [`json`]: case-insensitive JSON decoding.
//! - `query`: query parameters and Docker's `filters`.
//! - `server`: the accept loop with the connection cap and header-read timeout ([`ApiOptions`]).
//! - [`convert`]: Docker JSON <-> swarm-core.
//! - `routes`: one module per endpoint group (system, swarm, nodes, services, tasks, secrets and
//!   configs, networks, logs).

pub mod convert;
pub mod error;
pub mod json;
mod query;
mod routes;
mod server;

use std::future::Future;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderValue, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use swarm_core::validate::ServiceLimits;
use swarm_core::Clock;

use crate::backend::Backend;
use crate::control::{Control, SystemClock};
pub use error::ApiError;
pub use server::{ApiOptions, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_MAX_CONNECTIONS};

/// The API version advertised in `/_ping` and `/version`.
pub const API_VERSION: &str = "1.44";
/// The oldest API version served.
pub const MIN_API_VERSION: &str = "1.24";
/// The newest API version accepted in a path (newer CLIs send theirs before negotiating).
pub const MAX_ACCEPTED_API_VERSION: &str = "1.51";

/// What every handler gets.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) limits: ServiceLimits,
    /// Records the store's changes for `/events` (`routes::events`).
    pub(crate) events: Arc<routes::EventHub>,
}

impl AppState {
    /// The control layer over the cluster, or the backend's not-in-swarm / locked error.
    pub(crate) fn control(&self) -> Result<Control, ApiError> {
        let access = self.backend.cluster().map_err(ApiError::from)?;
        self.events.attach(&access);
        Ok(Control::new(access, self.clock.clone()).with_limits(self.limits))
    }

    /// [`AppState::control`] for a read a client may act on (list, inspect): the local store is
    /// made current first ([`Control::sync_reads`]; on a follower, the leader's read index).
    pub(crate) async fn read_control(&self) -> Result<Control, ApiError> {
        let ctl = self.control()?;
        ctl.sync_reads().await?;
        Ok(ctl)
    }
}

/// The application: every route, behind the version-prefix and header middleware, with the
/// default [`ServiceLimits`].
pub fn router(backend: Arc<dyn Backend>) -> Router {
    router_with_limits(backend, ServiceLimits::default())
}

/// [`router`] applying `limits` to every service spec it accepts.
pub fn router_with_limits(backend: Arc<dyn Backend>, limits: ServiceLimits) -> Router {
    router_with_hub(
        backend,
        limits,
        routes::EventHub::new(Arc::new(SystemClock)),
    )
}

fn router_with_hub(
    backend: Arc<dyn Backend>,
    limits: ServiceLimits,
    events: Arc<routes::EventHub>,
) -> Router {
    let state = AppState {
        backend,
        clock: Arc::new(SystemClock),
        limits,
        events,
    };
    let inner = routes::routes()
        .fallback(|| async { ApiError::page_not_found() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed",
            )
        })
        // Inside the router, so the matched route template is known.
        .layer(axum::middleware::from_fn(crate::metrics::api_layer))
        .with_state(state);
    // The middleware wraps the inner router as a whole, so it rewrites the path before routing.
    Router::new()
        .fallback_service(inner)
        .layer(axum::middleware::from_fn(version_and_headers))
}

/// Serves the API on `listener` with the default [`ApiOptions`] until `shutdown` completes, then
/// drains open requests.
pub async fn serve(
    listener: tokio::net::UnixListener,
    backend: Arc<dyn Backend>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, backend, ApiOptions::default(), shutdown).await
}

/// Serves the API on `listener` with `options` (connection cap, header-read timeout, service
/// limits) until `shutdown` completes, then drains open requests.
pub async fn serve_with(
    listener: tokio::net::UnixListener,
    backend: Arc<dyn Backend>,
    options: ApiOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let hub = routes::EventHub::new(Arc::new(SystemClock));
    let app = router_with_hub(backend.clone(), options.service_limits, hub.clone());
    // Events are recorded from the moment the swarm is active, not from the first API call.
    let attach = tokio::spawn(routes::keep_attached(hub, backend));
    let served = server::serve(listener, app, options, shutdown).await;
    attach.abort();
    served
}

/// Parses `1.NN` into `(1, NN)`.
fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (major, minor) = v.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Strips a `/vX.Y` prefix (refusing versions outside the served range) and adds Docker's
/// headers to every answer.
async fn version_and_headers(mut req: Request, next: Next) -> Response {
    if let Err(e) = strip_version(&mut req) {
        return with_headers(e.into_response());
    }
    with_headers(next.run(req).await)
}

fn strip_version(req: &mut Request) -> Result<(), ApiError> {
    let path = req.uri().path();
    let Some(rest) = path.strip_prefix("/v") else {
        return Ok(());
    };
    let (ver, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let Some(v) = parse_version(ver) else {
        return Ok(());
    };
    let min = parse_version(MIN_API_VERSION).unwrap_or((1, 24));
    let max = parse_version(MAX_ACCEPTED_API_VERSION).unwrap_or((1, 51));
    if v < min {
        return Err(ApiError::bad_request(format!(
            "client version {ver} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
        )));
    }
    if v > max {
        return Err(ApiError::bad_request(format!(
            "client version {ver} is too new. Maximum supported API version is {MAX_ACCEPTED_API_VERSION}"
        )));
    }
    let new = match req.uri().query() {
        Some(q) => format!("{tail}?{q}"),
        None => tail.to_string(),
    };
    *req.uri_mut() = Uri::try_from(new)
        .map_err(|e| ApiError::bad_request(format!("invalid request path: {e}")))?;
    Ok(())
}

fn with_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert("Api-Version", HeaderValue::from_static(API_VERSION));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert(
        "Server",
        HeaderValue::from_static(concat!(
            "swarm-node/",
            env!("CARGO_PKG_VERSION"),
            " (linux)"
        )),
    );
    resp
}
