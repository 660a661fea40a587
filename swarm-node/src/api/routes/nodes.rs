//! `/nodes`: list (filters id, name, role, membership, label, node.label), inspect, update, remove.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use bollard::models;
use swarm_core::objects::node::NodeRole;
use swarm_core::Node;

use super::{body, empty, ok, ok_streamed_list, PathId};
use crate::api::convert::node::{node_out, node_spec_in, NodeContext};
use crate::api::convert::tls::tls_info_out;
use crate::api::error::ApiError;
use crate::api::query::Query;
use crate::api::AppState;
use crate::control::Control;

const FILTERS: &[&str] = &["id", "name", "label", "role", "membership", "node.label"];

/// `GET /nodes`.
pub(crate) async fn list(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let ctl = st.read_control().await?;
    let f = Query::parse(q.as_deref()).filters()?;
    f.validate(FILTERS)?;
    let mut roles = Vec::new();
    for r in f.get("role") {
        match r.to_ascii_lowercase().as_str() {
            "manager" => roles.push(NodeRole::Manager),
            "worker" => roles.push(NodeRole::Worker),
            "" => {}
            _ => return Err(ApiError::bad_request(format!("Invalid role filter: '{r}'"))),
        }
    }
    // Every node in the store has been accepted: no membership is pending here.
    let mut accepted = Vec::new();
    for m in f.get("membership") {
        match m.to_ascii_lowercase().as_str() {
            "accepted" => accepted.push(true),
            "pending" => accepted.push(false),
            "" => {}
            _ => {
                return Err(ApiError::bad_request(format!(
                    "Invalid membership filter: '{m}'"
                )))
            }
        }
    }
    let membership_ok = accepted.is_empty() || accepted.contains(&true);
    let nctx = node_context(&ctl);
    // Hold the store's read lock only to pick the nodes; convert as the answer is sent.
    let picked: Vec<Arc<Node>> = ctl.store().view(|s| {
        s.iter::<Node>()
            .filter(|n| {
                membership_ok
                    && f.any_prefix("id", n.id.as_str())
                    && f.any_prefix("name", n.hostname())
                    && (roles.is_empty() || roles.contains(&n.role))
                    && f.labels_match(
                        "label",
                        &n.description
                            .as_ref()
                            .map(|d| d.engine.labels.clone())
                            .unwrap_or_default(),
                    )
                    && f.labels_match("node.label", &n.spec.annotations.labels)
            })
            .cloned()
            .collect()
    });
    Ok(ok_streamed_list(picked, move |n: &Arc<Node>| {
        node_out(n, &nctx)
    }))
}

/// `GET /nodes/{id}` (id, hostname or id prefix).
pub(crate) async fn inspect(
    State(st): State<AppState>,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let ctl = st.read_control().await?;
    let node = ctl.get::<Node>(&id)?;
    Ok(ok(&node_out(&node, &node_context(&ctl))))
}

/// The raft membership (when the daemon has a raft view) and the root CA's `TLSInfo`.
fn node_context(ctl: &Control) -> NodeContext {
    NodeContext {
        raft: ctl.raft().map(|r| r.members()),
        tls: ctl
            .cluster()
            .ok()
            .map(|c| tls_info_out(&c.root_ca.ca_cert_pem)),
    }
}

/// `POST /nodes/{id}/update?version=`.
pub(crate) async fn update(
    State(st): State<AppState>,
    PathId(id): PathId,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    b: Body,
) -> Result<Response, ApiError> {
    let ctl = st.control()?;
    let version = Query::parse(q.as_deref()).version("node")?;
    let docker: models::NodeSpec = body(&headers, b).await?;
    let cur = ctl.get::<Node>(&id)?;
    let spec = node_spec_in(docker, &cur.spec)?;
    ctl.update_node(cur.id.as_str(), version, spec).await?;
    Ok(empty())
}

/// `DELETE /nodes/{id}?force=`.
pub(crate) async fn remove(
    State(st): State<AppState>,
    PathId(id): PathId,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let force = Query::parse(q.as_deref()).bool("force");
    st.control()?.remove_node(&id, force).await?;
    Ok(empty())
}
