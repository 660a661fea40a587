//! `/swarm`: inspect, init, join, leave, update (autolock, key rotation), unlock, unlockkey.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use bollard::models::{SwarmSpec, SwarmUnlockRequest};
use serde_json::json;
use zeroize::Zeroizing;

use super::{body, empty, ok};
use crate::api::convert::swarm::{
    cluster_spec_merge, init_request_in, join_request_in, swarm_out, InitRequestJson,
    JoinRequestJson,
};
use crate::api::error::ApiError;
use crate::api::query::Query;
use crate::api::AppState;
use crate::backend::{BackendError, SwarmState};
use crate::control::Rotation;

/// `GET /swarm`.
pub(crate) async fn inspect(State(st): State<AppState>) -> Result<Response, ApiError> {
    let cluster = st.read_control().await?.cluster()?;
    Ok(ok(&swarm_out(&cluster)))
}

/// `POST /swarm/init`: answers the new node id as a JSON string.
pub(crate) async fn init(
    State(st): State<AppState>,
    headers: HeaderMap,
    b: Body,
) -> Result<Response, ApiError> {
    let req: InitRequestJson = body(&headers, b).await?;
    let id = st.backend.init(init_request_in(req)?).await?;
    Ok(ok(&id.to_string()))
}

/// `POST /swarm/join`: validated (400), then [`crate::backend::Backend::join`] (503 when already
/// in a swarm). A node already in a swarm is refused before the request is validated, as Docker does.
pub(crate) async fn join(
    State(st): State<AppState>,
    headers: HeaderMap,
    b: Body,
) -> Result<Response, ApiError> {
    let req: JoinRequestJson = body(&headers, b).await?;
    if st.backend.swarm_state() != SwarmState::Inactive {
        return Err(BackendError::AlreadyInSwarm.into());
    }
    st.backend.join(join_request_in(req)?).await?;
    Ok(empty())
}

/// `POST /swarm/leave?force=`.
pub(crate) async fn leave(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let force = Query::parse(q.as_deref()).bool("force");
    st.backend.leave(force).await?;
    Ok(empty())
}

/// `POST /swarm/update?version=&rotateWorkerToken=&rotateManagerToken=&rotateManagerUnlockKey=`.
pub(crate) async fn update(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    b: Body,
) -> Result<Response, ApiError> {
    let ctl = st.control()?;
    let q = Query::parse(q.as_deref());
    let version = q.version("swarm")?;
    let docker: SwarmSpec = body(&headers, b).await?;
    let cur = ctl.cluster()?;
    let spec = cluster_spec_merge(&cur.spec, docker)?;
    let rotation = Rotation {
        worker_token: q.bool("rotateWorkerToken"),
        manager_token: q.bool("rotateManagerToken"),
        manager_unlock_key: q.bool("rotateManagerUnlockKey"),
    };
    ctl.update_cluster(version, spec, rotation).await?;
    Ok(empty())
}

/// `POST /swarm/unlock` with `{"UnlockKey": "SWMKEY-1-..."}`. The key is never logged.
pub(crate) async fn unlock(
    State(st): State<AppState>,
    headers: HeaderMap,
    b: Body,
) -> Result<Response, ApiError> {
    let req: SwarmUnlockRequest = body(&headers, b).await?;
    let key = Zeroizing::new(req.unlock_key.unwrap_or_default());
    st.backend.unlock(&key).await?;
    Ok(empty())
}

/// `GET /swarm/unlockkey`: `{"UnlockKey": ""}` when autolock is off.
pub(crate) async fn unlock_key(State(st): State<AppState>) -> Result<Response, ApiError> {
    let key = st.control()?.unlock_key()?;
    let text = key.as_ref().map(|k| k.as_str()).unwrap_or("");
    Ok(ok(&json!({ "UnlockKey": text })))
}
