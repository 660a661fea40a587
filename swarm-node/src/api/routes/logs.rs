//! `/services/{id}/logs` and `/tasks/{id}/logs`: the logs each task left on this node, framed as
//! Docker frames them.
//!
//! Without a TTY the body is Docker's multiplexed stream: per line an 8-byte header
//! `[stream, 0, 0, 0, len as u32 big-endian]` (stream 1 = stdout, 2 = stderr) then the payload.
//! With `details=true` each payload starts with `com.docker.swarm.node.id=..,
//! com.docker.swarm.service.id=..,com.docker.swarm.task.id=..` and a space (the CLI's `service
//! logs` needs it to name the task); with `timestamps=true`, the time first. `follow` is not
//! supported: the answer ends after the lines available now. `tail` applies per task.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use swarm_core::{Service, Task};
use swarm_runtime::LogStream;

use super::PathId;
use crate::api::convert::timestamp;
use crate::api::error::ApiError;
use crate::api::query::Query;
use crate::api::AppState;
use crate::backend::BackendError;

/// What the query asks for.
struct LogOptions {
    stdout: bool,
    stderr: bool,
    details: bool,
    timestamps: bool,
    tail: Option<usize>,
}

fn options(q: &Query) -> Result<LogOptions, ApiError> {
    let o = LogOptions {
        stdout: q.bool("stdout"),
        stderr: q.bool("stderr"),
        details: q.bool("details"),
        timestamps: q.bool("timestamps"),
        tail: match q.get("tail").unwrap_or("all") {
            "" | "all" => None,
            t => match t.parse::<i64>() {
                Ok(n) if n < 0 => {
                    return Err(ApiError::bad_request("negative tail values not supported"))
                }
                Ok(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
                Err(_) => {
                    return Err(ApiError::bad_request(
                        "tail value must be a positive integer or \"all\"",
                    ))
                }
            },
        },
    };
    if !(o.stdout || o.stderr) {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    Ok(o)
}

/// `GET /services/{id}/logs`.
pub(crate) async fn service_logs(
    State(st): State<AppState>,
    PathId(id): PathId,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let ctl = st.control()?;
    let opts = options(&Query::parse(q.as_deref()))?;
    let svc = ctl.get::<Service>(&id)?;
    let mut tasks: Vec<Arc<Task>> = ctl
        .store()
        .view(|s| s.tasks_by_service(&svc.id).cloned().collect());
    tasks.sort_by_key(|t| (t.slot, t.meta.created_at, t.id));
    let tty = svc.spec.task.container.tty;
    render(&st, &tasks, &opts, tty).await
}

/// `GET /tasks/{id}/logs`.
pub(crate) async fn task_logs(
    State(st): State<AppState>,
    PathId(id): PathId,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let ctl = st.control()?;
    let opts = options(&Query::parse(q.as_deref()))?;
    let task = ctl.get::<Task>(&id)?;
    let tty = task.spec.container.tty;
    render(&st, &[task], &opts, tty).await
}

async fn render(
    st: &AppState,
    tasks: &[Arc<Task>],
    opts: &LogOptions,
    tty: bool,
) -> Result<Response, ApiError> {
    let mut out: Vec<u8> = Vec::new();
    for task in tasks {
        let lines = match st.backend.task_logs(task, opts.tail).await {
            Ok(lines) => lines,
            // A task that never ran here has no logs: skip it, as Docker's broker does.
            Err(BackendError::NoLogs(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        let details = format!(
            "com.docker.swarm.node.id={},com.docker.swarm.service.id={},com.docker.swarm.task.id={}",
            task.node_id.map(|n| n.to_string()).unwrap_or_default(),
            task.service_id,
            task.id
        );
        for line in lines {
            let stream: u8 = match line.stream {
                LogStream::Stdout if opts.stdout => 1,
                LogStream::Stderr if opts.stderr => 2,
                _ => continue,
            };
            let mut payload = String::new();
            if opts.timestamps {
                payload.push_str(&timestamp(st.clock.now()));
                payload.push(' ');
            }
            if opts.details {
                payload.push_str(&details);
                payload.push(' ');
            }
            payload.push_str(&line.line);
            payload.push('\n');
            if !tty {
                let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
                out.extend_from_slice(&[stream, 0, 0, 0]);
                out.extend_from_slice(&len.to_be_bytes());
            }
            out.extend_from_slice(payload.as_bytes());
        }
    }
    let ct = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    let mut resp = (StatusCode::OK, out).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    Ok(resp)
}
