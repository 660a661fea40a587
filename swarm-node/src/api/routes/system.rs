//! `/_ping`, `/version`, `/info`, and Docker-like answers for the engine endpoints this daemon
//! does not have (images, containers, registry lookups, volumes).

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use swarm_core::Node;

use super::{ok, PathId};
use crate::api::convert::swarm::{info_out, swarm_info_out, version_out};
use crate::api::error::ApiError;
use crate::api::AppState;
use crate::backend::LocalNodeState;

/// `GET|HEAD /_ping`: `OK` with the negotiation headers and the node's swarm state.
pub(crate) async fn ping(State(st): State<AppState>) -> Response {
    // Docker: `<LocalNodeState>/<manager|worker>` once in a swarm.
    let local = st.backend.local_node();
    let swarm = match (local.state, local.control_available) {
        (LocalNodeState::Inactive, _) => "inactive",
        (LocalNodeState::Locked, _) => "locked",
        (LocalNodeState::Pending, true) => "pending/manager",
        (LocalNodeState::Pending, false) => "pending/worker",
        (LocalNodeState::Error, true) => "error/manager",
        (LocalNodeState::Error, false) => "error/worker",
        (LocalNodeState::Active, true) => "active/manager",
        (LocalNodeState::Active, false) => "active/worker",
    };
    let mut resp = (StatusCode::OK, "OK").into_response();
    let h = resp.headers_mut();
    h.insert("Swarm", HeaderValue::from_static(swarm));
    h.insert(
        "Cache-Control",
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert("Pragma", HeaderValue::from_static("no-cache"));
    h.insert(
        "Content-Type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// `GET /version`.
pub(crate) async fn version(State(st): State<AppState>) -> Response {
    ok(&version_out(&st.backend.info()))
}

/// `GET /info`, with the `Swarm` section from [`crate::backend::Backend::local_node`] (cluster
/// details only on a manager with control available).
pub(crate) async fn info(State(st): State<AppState>) -> Response {
    let mut daemon = st.backend.info();
    let mut local = st.backend.local_node();
    if local.state == LocalNodeState::Locked {
        // A locked node shows nothing of the swarm, its own id included.
        daemon.node_id = None;
        local.node_id = None;
    }
    let control = match local.control_available {
        true => st.control().ok(),
        false => None,
    };
    let found = control.as_ref().and_then(|ctl| {
        let raft = ctl.raft().map(|r| r.members());
        ctl.store().view(|s| {
            let nodes: Vec<_> = s.iter::<Node>().cloned().collect();
            s.cluster().cloned().map(|c| (c, nodes, raft))
        })
    });
    let swarm = swarm_info_out(
        &local,
        found
            .as_ref()
            .map(|(c, nodes, raft)| (&**c, &nodes[..], raft.as_deref())),
    );
    ok(&info_out(&daemon, swarm))
}

/// `GET /distribution/{name}/json`: no registry access here, so the CLI proceeds unpinned.
pub(crate) async fn distribution(PathId(name): PathId) -> ApiError {
    let image = name.strip_suffix("/json").unwrap_or(&name);
    ApiError::not_found(format!(
        "image {image} could not be resolved: this daemon does not query registries"
    ))
}

/// Any `/images/...` request.
pub(crate) async fn no_image(PathId(rest): PathId) -> ApiError {
    let name = rest.strip_suffix("/json").unwrap_or(&rest);
    ApiError::not_found(format!("No such image: {name}"))
}

/// Any `/containers/...` request.
pub(crate) async fn no_container(PathId(rest): PathId) -> ApiError {
    let name = rest.split('/').next().unwrap_or("");
    ApiError::not_found(format!("No such container: {name}"))
}

/// `GET|DELETE /volumes/{name}`.
pub(crate) async fn no_volume(PathId(name): PathId) -> ApiError {
    ApiError::not_found(format!("get {name}: no such volume"))
}

/// `GET /volumes`: none.
pub(crate) async fn volumes() -> Response {
    ok(&serde_json::json!({"Volumes": [], "Warnings": []}))
}

/// `GET /plugins`: none.
pub(crate) async fn plugins() -> Response {
    ok(&serde_json::json!([]))
}

/// `POST /session` (BuildKit): not available.
pub(crate) async fn session() -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "sessions (BuildKit) are not supported by this daemon",
    )
}
