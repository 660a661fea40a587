//! `/tasks`: list with every filter the CLI sends (id, name, service, node, desired-state, label,
//! `_up-to-date`, runtime) and inspect.
//!
//! As Docker does, `service` and `node` filter values are resolved first (name, id or id prefix)
//! and an unknown one is a 404; `name` matches task names (`<service>.<slot>.<id>`) by prefix.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::Response;
use swarm_core::{Id, Node, Service, Store, StoreObject, Task, TaskState};
use swarm_sched::is_task_dirty;

use super::{ok, ok_streamed_list, PathId};
use crate::api::convert::task::task_out;
use crate::api::error::ApiError;
use crate::api::query::{Filters, Query};
use crate::api::AppState;
use crate::control::Control;

const FILTERS: &[&str] = &[
    "id",
    "name",
    "label",
    "service",
    "node",
    "desired-state",
    "_up-to-date",
    "runtime",
];

/// `GET /tasks`.
pub(crate) async fn list(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let ctl = st.read_control().await?;
    let f = Query::parse(q.as_deref()).filters()?;
    f.validate(FILTERS)?;
    let services = resolve_ids::<Service>(&ctl, f.get("service"))?;
    let nodes = resolve_ids::<Node>(&ctl, f.get("node"))?;
    let mut desired = Vec::new();
    for s in f.get("desired-state") {
        match TaskState::parse(&s.to_ascii_lowercase()) {
            Some(state) => desired.push(state),
            None if s.is_empty() => {}
            None => {
                return Err(ApiError::bad_request(format!(
                    "Invalid desired-state filter: '{s}'"
                )))
            }
        }
    }
    let up_to_date = f.contains("_up-to-date");
    let runtime_ok = f.get("runtime").is_empty()
        || f.get("runtime")
            .iter()
            .any(|r| r.is_empty() || r == "container");
    // Hold the store's read lock only to pick the tasks; convert after releasing it.
    let picked: Vec<Arc<Task>> = ctl.store().view(|s| {
        let candidates: Box<dyn Iterator<Item = &Arc<Task>>> = match &services {
            Some(ids) => Box::new(ids.iter().flat_map(|id| s.tasks_by_service(id))),
            None => Box::new(s.iter::<Task>()),
        };
        candidates
            .filter(|t| {
                runtime_ok
                    && nodes
                        .as_ref()
                        .is_none_or(|n| t.node_id.is_some_and(|id| n.contains(&id)))
                    && (desired.is_empty() || desired.contains(&t.desired_state))
                    && matches(&f, t)
                    && (!up_to_date || is_up_to_date(s, t))
            })
            .cloned()
            .collect()
    });
    Ok(ok_streamed_list(picked, |t: &Arc<Task>| task_out(t)))
}

fn matches(f: &Filters, t: &Task) -> bool {
    f.any_prefix("id", t.id.as_str())
        && (f.get("name").is_empty() || f.any_prefix("name", &t.name()))
        && f.labels_match("label", &t.service_annotations.labels)
}

/// SwarmKit's `_up-to-date`: the task's spec is the service's current one.
fn is_up_to_date(s: &Store, t: &Task) -> bool {
    let Some(service) = s.get::<Service>(&t.service_id) else {
        return false;
    };
    let node = t.node_id.and_then(|n| s.get::<Node>(&n).map(|n| &**n));
    !is_task_dirty(service, t, node)
}

/// Resolves filter values to ids (`None` when the filter is absent).
fn resolve_ids<T: StoreObject>(
    ctl: &Control,
    values: &[String],
) -> Result<Option<BTreeSet<Id>>, ApiError> {
    if values.is_empty() {
        return Ok(None);
    }
    let mut ids = BTreeSet::new();
    for v in values {
        ids.insert(ctl.get::<T>(v)?.id());
    }
    Ok(Some(ids))
}

/// `GET /tasks/{id}` (id, task name or id prefix).
pub(crate) async fn inspect(
    State(st): State<AppState>,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let task = st.read_control().await?.get::<Task>(&id)?;
    Ok(ok(&task_out(&task)))
}
