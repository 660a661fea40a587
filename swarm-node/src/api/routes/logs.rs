//! `/services/{id}/logs` and `/tasks/{id}/logs`: the logs each task left on this node, framed as
//! Docker frames them, and with `follow=true` the lines written later.
//!
//! Without a TTY the body is Docker's multiplexed stream: per line an 8-byte header
//! `[stream, 0, 0, 0, len as u32 big-endian]` (stream 1 = stdout, 2 = stderr) then the payload.
//! With `timestamps=true` each payload starts with the time the line was written (RFC 3339 with
//! nanoseconds, as the runtime recorded it) and a space; with `details=true`, then
//! `com.docker.swarm.node.id=..,com.docker.swarm.service.id=..,com.docker.swarm.task.id=..` and
//! a space (the CLI's `service logs` needs it to name the task).
//!
//! A task on another node is read from that node (`crate::net::logs`, through the backend's
//! `task_log_stream`). A part that cannot be read (its node down, lost during a follow, or
//! refusing) is written as Docker writes a failure inside a log stream: a stream-3 frame
//! `Error grabbing logs: ...`, which the CLI prints as "error from daemon in stream"; without
//! `follow` it comes once, after every line that could be read.
//!
//! `since` and `until` are Unix times (`seconds[.nanoseconds]`, what the CLI sends for
//! `--since 10m` or a date); `tail` applies per task to the lines that pass `since`.
//!
//! Without `follow` the answer holds each task's lines in turn and ends. With `follow` the
//! answer is streamed: every task's lines as they are written, interleaved; for a service, the
//! tasks that start later are added as they appear in the store (and their earlier lines, by
//! `since`/`tail`, come first). A task follow ends when the task's output ends; a service follow
//! ends when the service is removed, at `until`, or when the client goes away. A client that
//! disconnects stops the follow: the writer notices the closed body at once and drops every
//! runtime stream it held.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use futures_util::stream::{BoxStream, FuturesUnordered, SelectAll};
use futures_util::StreamExt;
use swarm_core::objects::task::TaskState;
use swarm_core::store::{Event, WatchFilter};
use swarm_core::{Id, Object, ObjectKind, Service, Task, Timestamp};
use swarm_runtime::{LogOptions, LogRecord, LogStream};
use tokio::sync::mpsc;

use super::PathId;
use crate::api::convert::timestamp;
use crate::api::error::ApiError;
use crate::api::query::Query;
use crate::api::AppState;
use crate::backend::BackendError;

/// What the query asks for.
struct Wanted {
    stdout: bool,
    stderr: bool,
    details: bool,
    timestamps: bool,
    follow: bool,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
    tail: Option<usize>,
}

impl Wanted {
    fn runtime(&self) -> LogOptions {
        LogOptions {
            since: self.since,
            tail: self.tail,
            follow: self.follow,
        }
    }
}

/// Parses Docker's `seconds[.nanoseconds]` Unix time (what the CLI sends for `--since`,
/// `--until`); an empty value is no time. `what` names the parameter in the error.
pub(crate) fn parse_unix_time(what: &str, raw: &str) -> Result<Option<Timestamp>, ApiError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    let bad = || {
        ApiError::bad_request(format!(
            "invalid value for {what}: {raw:?} is not a Unix time (seconds[.nanoseconds])"
        ))
    };
    let (secs, frac) = raw.split_once('.').unwrap_or((raw, ""));
    if secs.is_empty() || !secs.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    if !frac.bytes().all(|c| c.is_ascii_digit()) || frac.len() > 9 {
        return Err(bad());
    }
    let secs: u64 = secs.parse().map_err(|_| bad())?;
    let nanos: u64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().map_err(|_| bad())?
    };
    let t = secs
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(nanos))
        .ok_or_else(bad)?;
    Ok(Some(Timestamp(t)))
}

fn options(q: &Query) -> Result<Wanted, ApiError> {
    let o = Wanted {
        stdout: q.bool("stdout"),
        stderr: q.bool("stderr"),
        details: q.bool("details"),
        timestamps: q.bool("timestamps"),
        follow: q.bool("follow"),
        since: parse_unix_time("since", q.get("since").unwrap_or(""))?,
        until: parse_unix_time("until", q.get("until").unwrap_or(""))?,
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
    let service_id = svc.id;
    let tty = svc.spec.task.container.tty;
    if !opts.follow {
        let mut tasks: Vec<Arc<Task>> = ctl
            .store()
            .view(|s| s.tasks_by_service(&service_id).cloned().collect());
        tasks.sort_by_key(|t| (t.slot, t.meta.created_at, t.id));
        return render(&st, &tasks, &opts, tty).await;
    }
    // Subscribe before listing, so a task created in between is not missed.
    let filter = WatchFilter::kinds(&[ObjectKind::Task, ObjectKind::Service]).with_predicate(
        move |o| match o {
            Object::Task(t) => t.service_id == service_id,
            Object::Service(s) => s.id == service_id,
            _ => false,
        },
    );
    let (mut tasks, watcher) = ctl.store().view_and_watch(filter, |s| {
        s.tasks_by_service(&service_id)
            .cloned()
            .collect::<Vec<Arc<Task>>>()
    });
    tasks.sort_by_key(|t| (t.slot, t.meta.created_at, t.id));
    Ok(follow(st, tasks, Some(watcher), opts, tty))
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
    if opts.follow {
        return Ok(follow(st, vec![task], None, opts, tty));
    }
    render(&st, &[task], &opts, tty).await
}

fn content_type(tty: bool) -> HeaderValue {
    HeaderValue::from_static(if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    })
}

/// How one task's lines are framed.
struct Framer {
    details: String,
    stdout: bool,
    stderr: bool,
    timestamps: bool,
    with_details: bool,
    until: Option<Timestamp>,
    tty: bool,
}

impl Framer {
    fn new(task: &Task, opts: &Wanted, tty: bool) -> Framer {
        Framer {
            details: format!(
                "com.docker.swarm.node.id={},com.docker.swarm.service.id={},com.docker.swarm.task.id={}",
                task.node_id.map(|n| n.to_string()).unwrap_or_default(),
                task.service_id,
                task.id
            ),
            stdout: opts.stdout,
            stderr: opts.stderr,
            timestamps: opts.timestamps,
            with_details: opts.details,
            until: opts.until,
            tty,
        }
    }

    /// Appends the line's frame to `out` (nothing when its stream was not asked for or it was
    /// written after `until`). `now` stands in for a runtime that kept no write time.
    fn frame(&self, line: &LogRecord, now: Timestamp, out: &mut Vec<u8>) {
        let stream: u8 = match line.stream {
            LogStream::Stdout if self.stdout => 1,
            LogStream::Stderr if self.stderr => 2,
            _ => return,
        };
        let time = line.time.unwrap_or(now);
        if self.until.is_some_and(|u| time > u) {
            return;
        }
        let mut payload = String::with_capacity(line.line.len() + 64);
        if self.timestamps {
            payload.push_str(&timestamp(time));
            payload.push(' ');
        }
        if self.with_details {
            payload.push_str(&self.details);
            payload.push(' ');
        }
        payload.push_str(&line.line);
        payload.push('\n');
        if !self.tty {
            let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&[stream, 0, 0, 0]);
            out.extend_from_slice(&len.to_be_bytes());
        }
        out.extend_from_slice(payload.as_bytes());
    }
}

/// Appends Docker's frame for a failure inside a log stream: stream 3 (the CLI's "error from
/// daemon in stream"), `Error grabbing logs: ...` as moby's `WriteLogStream` writes it.
fn error_frame(message: &str, tty: bool, out: &mut Vec<u8>) {
    let payload = format!("Error grabbing logs: {message}\n");
    if !tty {
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&[3, 0, 0, 0]);
        out.extend_from_slice(&len.to_be_bytes());
    }
    out.extend_from_slice(payload.as_bytes());
}

async fn render(
    st: &AppState,
    tasks: &[Arc<Task>],
    opts: &Wanted,
    tty: bool,
) -> Result<Response, ApiError> {
    let mut out: Vec<u8> = Vec::new();
    // Parts that could not be read (a node down or lost): said once, after every line read.
    let mut failed: Vec<String> = Vec::new();
    for task in tasks {
        let mut lines = match st.backend.task_log_stream(task, opts.runtime()).await {
            Ok(lines) => lines,
            // A task that never ran here has no logs: skip it, as Docker's broker does.
            Err(BackendError::NoLogs(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        let framer = Framer::new(task, opts, tty);
        let now = st.clock.now();
        while let Some(line) = lines.next().await {
            match line {
                Ok(line) => framer.frame(&line, now, &mut out),
                Err(e) => {
                    failed.push(e.to_string());
                    break;
                }
            }
        }
    }
    if !failed.is_empty() {
        error_frame(
            &format!(
                "warning: incomplete log stream. some logs could not be retrieved for the \
                 following reasons: {}",
                failed.join("; ")
            ),
            tty,
            &mut out,
        );
    }
    let mut resp = (StatusCode::OK, out).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, content_type(tty));
    Ok(resp)
}

/// A streamed answer fed by [`follow_loop`], which stops as soon as the body is dropped.
fn follow(
    st: AppState,
    tasks: Vec<Arc<Task>>,
    watcher: Option<swarm_core::store::Watcher>,
    opts: Wanted,
    tty: bool,
) -> Response {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(follow_loop(st, tasks, watcher, opts, tty, tx));
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    let mut resp = Response::new(Body::from_stream(body));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, content_type(tty));
    resp
}

type Lines = BoxStream<'static, (Arc<Framer>, Result<LogRecord, String>)>;

/// A task's followed lines, each with its framer; an error (its node lost) is written as an error
/// frame and ends nothing else.
fn tagged(framer: Arc<Framer>, lines: swarm_runtime::LogRecords) -> Lines {
    Box::pin(lines.map(move |r| (framer.clone(), r.map_err(|e| e.to_string()))))
}

/// Whether a task may have output here worth following: it was given to a node and got past
/// assignment (a pending task has no runtime state anywhere yet).
fn has_run(t: &Task) -> bool {
    t.node_id.is_some() && t.status.state >= TaskState::Preparing
}

async fn follow_loop(
    st: AppState,
    tasks: Vec<Arc<Task>>,
    watcher: Option<swarm_core::store::Watcher>,
    opts: Wanted,
    tty: bool,
    tx: mpsc::Sender<Bytes>,
) {
    let mut streams: SelectAll<Lines> = SelectAll::new();
    // Tasks whose stream is open, and those being opened: opening may wait on another node (its
    // answer, or its listen stream), so it runs beside the lines already flowing.
    let mut opened: HashSet<Id> = HashSet::new();
    let mut opening: FuturesUnordered<BoxFuture<'static, (Id, Option<Lines>)>> =
        FuturesUnordered::new();
    let mut in_flight: HashSet<Id> = HashSet::new();
    let opener = |task: &Arc<Task>| -> BoxFuture<'static, (Id, Option<Lines>)> {
        let framer = Arc::new(Framer::new(task, &opts, tty));
        Box::pin(open(st.clone(), task.clone(), opts.runtime(), framer))
    };
    for task in tasks.iter().filter(|t| has_run(t)) {
        in_flight.insert(task.id);
        opening.push(opener(task));
    }
    let until = opts.until.map(|u| {
        let now = st.clock.now();
        tokio::time::Instant::now() + u.since(now)
    });
    let mut watching = watcher.is_some();
    loop {
        if streams.is_empty() && opening.is_empty() && !watching {
            return;
        }
        tokio::select! {
            _ = tx.closed() => return,
            _ = async { match until {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            } } => return,
            done = opening.next(), if !opening.is_empty() => {
                let Some((id, lines)) = done else { continue };
                in_flight.remove(&id);
                if let Some(lines) = lines {
                    opened.insert(id);
                    streams.push(lines);
                }
            }
            item = streams.next(), if !streams.is_empty() => {
                let Some((framer, line)) = item else { continue };
                let mut out = Vec::new();
                match line {
                    Ok(line) => framer.frame(&line, st.clock.now(), &mut out),
                    Err(e) => error_frame(&e, tty, &mut out),
                }
                if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
                    return;
                }
            }
            ev = async { match &watcher {
                Some(w) => w.recv().await,
                None => std::future::pending().await,
            } }, if watching => {
                let task = match ev {
                    Ok(Event::Created(Object::Task(t))) => Some(t),
                    Ok(Event::Updated { new: Object::Task(t), .. }) => Some(t),
                    Ok(Event::Removed(Object::Service(_))) => {
                        // The service is gone: what its tasks wrote is delivered, then the end.
                        watching = false;
                        None
                    }
                    Ok(_) => None,
                    Err(_) => {
                        watching = false;
                        None
                    }
                };
                if let Some(t) = task.filter(|t| {
                    has_run(t) && !opened.contains(&t.id) && !in_flight.contains(&t.id)
                }) {
                    in_flight.insert(t.id);
                    opening.push(opener(&t));
                }
            }
        }
    }
}

/// Opens a task's follow stream if its logs can be read (a task whose runtime state is not there
/// yet is retried at its next update): its id, and its tagged lines when opened.
async fn open(
    st: AppState,
    task: Arc<Task>,
    opts: LogOptions,
    framer: Arc<Framer>,
) -> (Id, Option<Lines>) {
    // The runtime may be a moment behind the store: a task just marked running may not be
    // known to it yet. A short, bounded retry covers that; later updates retry again.
    for attempt in 0..3 {
        match st.backend.task_log_stream(&task, opts).await {
            Ok(lines) => return (task.id, Some(tagged(framer, lines))),
            Err(BackendError::NoLogs(_)) if attempt < 2 => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => {
                tracing::debug!(task = %task.id, "not following the task's logs: {e}");
                break;
            }
        }
    }
    (task.id, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_times_parse_as_the_cli_sends_them() {
        assert_eq!(
            parse_unix_time("since", "1700000000.000000001").unwrap(),
            Some(Timestamp(1_700_000_000_000_000_001))
        );
        assert_eq!(
            parse_unix_time("since", "12.5").unwrap(),
            Some(Timestamp(12_500_000_000))
        );
        assert_eq!(parse_unix_time("since", "").unwrap(), None);
        for bad in ["abc", "-1", "1.x", "1.1234567891", ".5"] {
            let e = parse_unix_time("since", bad).unwrap_err();
            assert!(e.message.contains("since"), "{bad}: {}", e.message);
        }
    }
}
