//! `/secrets` and `/configs`, one generic set of handlers over [`ApiBlob`]: list (filters id,
//! name, names, label), create (201 `{"ID"}`), inspect (a secret's data is never shown),
//! labels-only update, remove.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;

use super::{body, empty, ok, reply, PathId};
use crate::api::convert::secret::ApiBlob;
use crate::api::error::ApiError;
use crate::api::query::{Filters, Query};
use crate::api::AppState;

const FILTERS: &[&str] = &["id", "name", "names", "label"];

/// The routes of one kind under `/<plural>`: list, create, inspect, remove, update.
pub(super) fn routes<T: ApiBlob>(plural: &str) -> Router<AppState> {
    Router::new()
        .route(&format!("/{plural}"), get(list::<T>))
        .route(&format!("/{plural}/create"), post(create::<T>))
        .route(
            &format!("/{plural}/{{id}}"),
            get(inspect::<T>).delete(remove::<T>),
        )
        .route(&format!("/{plural}/{{id}}/update"), post(update::<T>))
}

/// `GET /secrets`, `GET /configs`: Docker's filters (`name` is a prefix, `names` exact).
pub(super) async fn list<T: ApiBlob>(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let ctl = st.read_control().await?;
    let f: Filters = Query::parse(q.as_deref()).filters()?;
    f.validate(FILTERS)?;
    let list: Vec<Arc<T>> = ctl.store().view(|s| {
        s.iter::<T>()
            .filter(|o| {
                let a = o.annotations();
                f.any_prefix("id", o.id().as_str())
                    && f.any_prefix("name", &a.name)
                    && f.any_exact("names", &a.name)
                    && f.labels_match("label", &a.labels)
            })
            .cloned()
            .collect()
    });
    Ok(ok(&list.iter().map(|o| o.out()).collect::<Vec<_>>()))
}

/// `POST /secrets/create`, `POST /configs/create`.
pub(super) async fn create<T: ApiBlob>(
    State(st): State<AppState>,
    headers: HeaderMap,
    b: Body,
) -> Result<Response, ApiError> {
    let ctl = st.control()?;
    let docker: T::Model = body(&headers, b).await?;
    let id = ctl.create_blob::<T>(T::spec_in(docker)?).await?;
    Ok(reply(StatusCode::CREATED, &json!({ "ID": id.to_string() })))
}

/// `GET /secrets/{id}`, `GET /configs/{id}`.
pub(super) async fn inspect<T: ApiBlob>(
    State(st): State<AppState>,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let o = st.read_control().await?.get::<T>(&id)?;
    Ok(ok(&o.out()))
}

/// `POST /secrets/{id}/update?version=`, `POST /configs/{id}/update?version=`: only labels
/// may change (`docker stack deploy` sends configs back with their data; only a changed
/// payload is refused).
pub(super) async fn update<T: ApiBlob>(
    State(st): State<AppState>,
    PathId(id): PathId,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    b: Body,
) -> Result<Response, ApiError> {
    let ctl = st.control()?;
    let version = Query::parse(q.as_deref()).version(T::NOUN)?;
    let docker: T::Model = body(&headers, b).await?;
    let cur = ctl.get::<T>(&id)?;
    let req = T::update_in(docker)?;
    let name = req.name.unwrap_or_else(|| cur.annotations().name.clone());
    ctl.update_blob::<T>(
        cur.id().as_str(),
        version,
        &name,
        req.data.as_deref().map(|d| d.as_slice()),
        req.labels,
    )
    .await?;
    Ok(empty())
}

/// `DELETE /secrets/{id}`, `DELETE /configs/{id}`.
pub(super) async fn remove<T: ApiBlob>(
    State(st): State<AppState>,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    st.control()?.remove_blob::<T>(&id).await?;
    Ok(empty())
}
