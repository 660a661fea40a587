//! `/secrets` and `/configs`: list (filters id, name, names, label), create (201 `{"ID"}`), inspect
//! (a secret's data is never shown), labels-only update, remove.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bollard::models;
use serde_json::json;
use swarm_core::{Annotations, Config, Secret, StoreObject};

use super::{body, empty, ok, reply, PathId};
use crate::api::convert::labels_in;
use crate::api::convert::secret::{
    config_out, config_spec_in, request_data, secret_out, secret_spec_in,
};
use crate::api::error::ApiError;
use crate::api::query::{Filters, Query};
use crate::api::AppState;

const FILTERS: &[&str] = &["id", "name", "names", "label"];

/// Objects of type `T` matching Docker's secret/config filters (`name` is a prefix, `names` exact).
fn filtered<T: StoreObject>(
    st: &AppState,
    q: Option<String>,
    annotations: impl Fn(&T) -> &Annotations,
) -> Result<Vec<Arc<T>>, ApiError> {
    let ctl = st.control()?;
    let f: Filters = Query::parse(q.as_deref()).filters()?;
    f.validate(FILTERS)?;
    Ok(ctl.store().view(|s| {
        s.iter::<T>()
            .filter(|o| {
                let a = annotations(o);
                f.any_prefix("id", o.id().as_str())
                    && f.any_prefix("name", &a.name)
                    && f.any_exact("names", &a.name)
                    && f.labels_match("label", &a.labels)
            })
            .cloned()
            .collect()
    }))
}

fn created(id: swarm_core::Id) -> Response {
    reply(StatusCode::CREATED, &json!({ "ID": id.to_string() }))
}

/// `GET /secrets`.
pub(crate) async fn list_secrets(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let list = filtered::<Secret>(&st, q, |s| &s.spec.annotations)?;
    Ok(ok(&list.iter().map(|s| secret_out(s)).collect::<Vec<_>>()))
}

/// `POST /secrets/create`.
pub(crate) async fn create_secret(
    State(st): State<AppState>,
    headers: HeaderMap,
    b: Body,
) -> Result<Response, ApiError> {
    let ctl = st.control()?;
    let docker: models::SecretSpec = body(&headers, b).await?;
    let id = ctl.create_secret(secret_spec_in(docker)?).await?;
    Ok(created(id))
}

/// `GET /secrets/{id}`.
pub(crate) async fn inspect_secret(
    State(st): State<AppState>,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let s = st.control()?.get::<Secret>(&id)?;
    Ok(ok(&secret_out(&s)))
}

/// `POST /secrets/{id}/update?version=`: only labels may change.
pub(crate) async fn update_secret(
    State(st): State<AppState>,
    PathId(id): PathId,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    b: Body,
) -> Result<Response, ApiError> {
    let ctl = st.control()?;
    let version = Query::parse(q.as_deref()).version("secret")?;
    let docker: models::SecretSpec = body(&headers, b).await?;
    let cur = ctl.get::<Secret>(&id)?;
    let name = docker
        .name
        .clone()
        .unwrap_or_else(|| cur.spec.annotations.name.clone());
    let data = request_data("secret", docker.data.as_deref())?;
    ctl.update_secret(
        cur.id.as_str(),
        version,
        &name,
        data.as_deref().map(|d| d.as_slice()),
        labels_in(docker.labels),
    )
    .await?;
    Ok(empty())
}

/// `DELETE /secrets/{id}`.
pub(crate) async fn remove_secret(
    State(st): State<AppState>,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    st.control()?.remove_secret(&id).await?;
    Ok(empty())
}

/// `GET /configs`.
pub(crate) async fn list_configs(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let list = filtered::<Config>(&st, q, |c| &c.spec.annotations)?;
    Ok(ok(&list.iter().map(|c| config_out(c)).collect::<Vec<_>>()))
}

/// `POST /configs/create`.
pub(crate) async fn create_config(
    State(st): State<AppState>,
    headers: HeaderMap,
    b: Body,
) -> Result<Response, ApiError> {
    let ctl = st.control()?;
    let docker: models::ConfigSpec = body(&headers, b).await?;
    let id = ctl.create_config(config_spec_in(docker)?).await?;
    Ok(created(id))
}

/// `GET /configs/{id}`.
pub(crate) async fn inspect_config(
    State(st): State<AppState>,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let c = st.control()?.get::<Config>(&id)?;
    Ok(ok(&config_out(&c)))
}

/// `POST /configs/{id}/update?version=`: only labels may change.
pub(crate) async fn update_config(
    State(st): State<AppState>,
    PathId(id): PathId,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    b: Body,
) -> Result<Response, ApiError> {
    let ctl = st.control()?;
    let version = Query::parse(q.as_deref()).version("config")?;
    let docker: models::ConfigSpec = body(&headers, b).await?;
    let cur = ctl.get::<Config>(&id)?;
    let name = docker
        .name
        .clone()
        .unwrap_or_else(|| cur.spec.annotations.name.clone());
    // `docker stack deploy` sends configs back with their data; only a changed payload is refused.
    let data = request_data("config", docker.data.as_deref())?;
    ctl.update_config(
        cur.id.as_str(),
        version,
        &name,
        data.as_deref().map(|d| d.as_slice()),
        labels_in(docker.labels),
    )
    .await?;
    Ok(empty())
}

/// `DELETE /configs/{id}`.
pub(crate) async fn remove_config(
    State(st): State<AppState>,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    st.control()?.remove_config(&id).await?;
    Ok(empty())
}
