//! `/services`: list (filters id, name, label, mode; `status=true`), create, inspect
//! (`insertDefaults=true`), update (`rollback=previous`), remove.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bollard::models;
use serde_json::json;
use swarm_core::Service;

use super::{body, empty, ok, ok_streamed_list, reply, PathId};
use crate::api::convert::service::{service_out, service_spec_in};
use crate::api::error::ApiError;
use crate::api::query::Query;
use crate::api::AppState;
use crate::control::service::{service_status, ServiceStatus};

const FILTERS: &[&str] = &["id", "name", "label", "mode", "runtime"];
const MODES: &[&str] = &["replicated", "global", "replicated-job", "global-job"];

/// `GET /services`.
pub(crate) async fn list(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let ctl = st.read_control().await?;
    let q = Query::parse(q.as_deref());
    let f = q.filters()?;
    f.validate(FILTERS)?;
    if let Some(m) = f.get("mode").iter().find(|m| !MODES.contains(&m.as_str())) {
        return Err(ApiError::bad_request(format!(
            "invalid filter 'mode={m}': use replicated, global, replicated-job or global-job"
        )));
    }
    let runtime_ok =
        f.get("runtime").is_empty() || f.get("runtime").iter().any(|r| r == "container");
    let status = q.bool("status");
    // Hold the store's read lock only to pick the services; convert after releasing it.
    let picked: Vec<(Arc<Service>, Option<ServiceStatus>)> = ctl.store().view(|s| {
        s.iter::<Service>()
            .filter(|svc| {
                runtime_ok
                    && f.any_prefix("id", svc.id.as_str())
                    && f.any_prefix("name", &svc.spec.annotations.name)
                    && f.labels_match("label", &svc.spec.annotations.labels)
                    && f.any_exact("mode", svc.spec.mode.name())
            })
            .map(|svc| (svc.clone(), status.then(|| service_status(s, svc))))
            .collect()
    });
    let host = st.backend.runtime_capabilities().host_network;
    Ok(ok_streamed_list(picked, move |(svc, status)| {
        let out = service_out(svc, *status, false);
        if host {
            out.on_host_network()
        } else {
            out
        }
    }))
}

/// The base64url JSON in `X-Registry-Auth`, passed on as given.
fn registry_auth(headers: &HeaderMap) -> Option<String> {
    headers
        .get("X-Registry-Auth")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// `POST /services/create`: 201 `{"ID": ..., "Warnings": []}`.
pub(crate) async fn create(
    State(st): State<AppState>,
    headers: HeaderMap,
    b: Body,
) -> Result<Response, ApiError> {
    let ctl = st.control()?;
    let docker: models::ServiceSpec = body(&headers, b).await?;
    let req = service_spec_in(docker)?;
    let id = ctl
        .create_service(req, registry_auth(&headers).as_deref())
        .await?;
    Ok(reply(
        StatusCode::CREATED,
        &json!({"ID": id.to_string(), "Warnings": []}),
    ))
}

/// `GET /services/{id}?insertDefaults=`.
pub(crate) async fn inspect(
    State(st): State<AppState>,
    PathId(id): PathId,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let insert_defaults = Query::parse(q.as_deref()).bool("insertDefaults");
    let svc = st.read_control().await?.get::<Service>(&id)?;
    let out = service_out(&svc, None, insert_defaults);
    if st.backend.runtime_capabilities().host_network {
        return Ok(ok(&out.on_host_network()));
    }
    Ok(ok(&out))
}

/// `POST /services/{id}/update?version=&rollback=previous`: `{"Warnings": []}`.
pub(crate) async fn update(
    State(st): State<AppState>,
    PathId(id): PathId,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    b: Body,
) -> Result<Response, ApiError> {
    let ctl = st.control()?;
    let q = Query::parse(q.as_deref());
    let version = q.version("service")?;
    let rollback = match q.get("rollback").unwrap_or("") {
        "" | "none" => false,
        "previous" => true,
        other => {
            return Err(ApiError::bad_request(format!(
                "unrecognized rollback option {other}"
            )))
        }
    };
    match q.get("registryAuthFrom").unwrap_or("") {
        "" | "spec" | "previous-spec" => {}
        _ => return Err(ApiError::bad_request("unsupported registryAuthFrom value")),
    }
    let docker: models::ServiceSpec = body(&headers, b).await?;
    let req = service_spec_in(docker)?;
    ctl.update_service(&id, version, req, rollback).await?;
    Ok(ok(&json!({"Warnings": []})))
}

/// `DELETE /services/{id}`.
pub(crate) async fn remove(
    State(st): State<AppState>,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    st.control()?.remove_service(&id).await?;
    Ok(empty())
}
