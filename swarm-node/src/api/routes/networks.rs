//! `/networks`: swarm-scoped networks (their objects, allocated IPAM, peers and service VIPs;
//! the data plane is the runtime's): list (filters id, name, label,
//! driver, scope, type, dangling), create (201 `{"Id", "Warning"}`), inspect, remove, prune.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bollard::models;
use serde_json::json;
use swarm_core::Network;

use super::{body, empty, ok, reply, PathId};
use crate::api::convert::network::{network_inspect, network_out, network_spec_in};
use crate::api::error::ApiError;
use crate::api::query::Query;
use crate::api::AppState;

const FILTERS: &[&str] = &["dangling", "driver", "id", "label", "name", "scope", "type"];

/// `GET /networks`.
pub(crate) async fn list(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let ctl = st.read_control().await?;
    let f = Query::parse(q.as_deref()).filters()?;
    f.validate(FILTERS)?;
    for t in f.get("type") {
        if t != "custom" && t != "builtin" {
            return Err(ApiError::bad_request(format!(
                "invalid filter: 'type'='{t}'"
            )));
        }
    }
    // Every network here is a user-defined ("custom") swarm network.
    let type_ok = f.get("type").is_empty() || f.get("type").iter().any(|t| t == "custom");
    let scope_ok = f.get("scope").is_empty() || f.get("scope").iter().any(|s| s == "swarm");
    let dangling = f.get("dangling").first().map(|d| d == "true" || d == "1");
    let nets: Vec<models::NetworkInspect> = ctl.store().view(|s| {
        s.iter::<Network>()
            .filter(|n| {
                let name = &n.spec.annotations.name;
                let in_use = s.services_by_network(n.id.as_str()).next().is_some();
                type_ok
                    && scope_ok
                    && dangling != Some(in_use)
                    && f.any_prefix("id", n.id.as_str())
                    && (f.get("name").is_empty()
                        || f.get("name").iter().any(|x| name.contains(x.as_str())))
                    && f.any_exact("driver", &n.spec.driver.name)
                    && f.labels_match("label", &n.spec.annotations.labels)
            })
            .map(|n| network_out(n))
            .collect()
    });
    Ok(ok(&nets))
}

/// `POST /networks/create`.
pub(crate) async fn create(
    State(st): State<AppState>,
    headers: HeaderMap,
    b: Body,
) -> Result<Response, ApiError> {
    let ctl = st.control()?;
    let docker: models::NetworkCreateRequest = body(&headers, b).await?;
    let id = ctl.create_network(network_spec_in(docker)?).await?;
    Ok(reply(
        StatusCode::CREATED,
        &json!({"Id": id.to_string(), "Warning": ""}),
    ))
}

/// `GET /networks/{id}` (id, name or id prefix; `scope` other than `swarm` finds nothing).
pub(crate) async fn inspect(
    State(st): State<AppState>,
    PathId(id): PathId,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let ctl = st.read_control().await?;
    let q = Query::parse(q.as_deref());
    if let Some(scope) = q.get("scope").filter(|s| !s.is_empty() && *s != "swarm") {
        return Err(ApiError::not_found(format!(
            "network {id} not found in scope {scope}"
        )));
    }
    let net = ctl.get::<Network>(&id)?;
    let verbose = matches!(q.get("verbose"), Some("1" | "true"));
    let view = ctl.store().view(|s| network_inspect(&net, s, verbose));
    Ok(ok(&view))
}

/// `DELETE /networks/{id}`.
pub(crate) async fn remove(
    State(st): State<AppState>,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    st.control()?.remove_network(&id).await?;
    Ok(empty())
}

/// `POST /networks/prune`: nothing is pruned (swarm networks are removed explicitly).
pub(crate) async fn prune(State(st): State<AppState>) -> Result<Response, ApiError> {
    st.control()?;
    Ok(ok(&json!({ "NetworksDeleted": [] })))
}

/// `POST /networks/{id}/connect|disconnect`: there are no containers to attach here.
pub(crate) async fn connect() -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "attaching containers to networks is not supported by this daemon",
    )
}
