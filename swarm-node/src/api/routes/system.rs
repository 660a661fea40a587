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
use crate::backend::SwarmState;

/// `GET|HEAD /_ping`: `OK` with the negotiation headers and the node's swarm state.
pub(crate) async fn ping(State(st): State<AppState>) -> Response {
    let swarm = match st.backend.swarm_state() {
        SwarmState::Inactive => "inactive",
        SwarmState::Locked => "locked",
        SwarmState::Active => "active/manager",
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

/// `GET /info`, with the `Swarm` section (cluster details only when active).
pub(crate) async fn info(State(st): State<AppState>) -> Response {
    let mut daemon = st.backend.info();
    let state = st.backend.swarm_state();
    if state == SwarmState::Locked {
        // A locked node shows nothing of the swarm, its own id included.
        daemon.node_id = None;
    }
    let swarm = match (state, st.control()) {
        (SwarmState::Active, Ok(ctl)) => {
            let node_id = Some(ctl.node_id().to_string());
            let found = ctl.store().view(|s| {
                let nodes: Vec<_> = s.iter::<Node>().cloned().collect();
                s.cluster().cloned().map(|c| (c, nodes))
            });
            match &found {
                Some((cluster, nodes)) => swarm_info_out(state, node_id, Some((cluster, nodes))),
                None => swarm_info_out(state, node_id, None),
            }
        }
        (SwarmState::Locked, _) => swarm_info_out(state, None, None),
        _ => swarm_info_out(state, daemon.node_id.map(|n| n.to_string()), None),
    };
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
