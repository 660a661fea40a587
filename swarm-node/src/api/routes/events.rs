//! `GET /events`: Docker's swarm-scope events, sourced from the store's watch.
//!
//! An [`EventHub`] (one per API router) subscribes to the store as soon as the swarm is active
//! (every control call and a one-second poll from the server attach it; a new store after a
//! leave/init or lock/unlock is picked up the same way) and turns each committed change of a
//! node, service, secret, config or network into Docker's message, as dockerd's cluster event
//! translation does: `Type` is the kind, `Action` is `create` / `update` / `remove`,
//! `Actor.ID` the object's id, `Actor.Attributes` its `name` and, for updates, what changed
//! (`availability.old/new`, `role.old/new`, `state.old/new`, `leader.old/new`,
//! `reachability.old/new` for nodes; `image.old/new`, `replicas.old/new`, `updatestate.old/new`
//! for services), `scope` is `swarm`, and `time`/`timeNano` are the object's creation time for a
//! create, its update time for an update, and now for a removal. Tasks and the cluster object
//! make no events (dockerd shows none either).
//!
//! The hub keeps the last [`HISTORY`] messages for `since`/`until` and hands live ones to every
//! stream. The answer is newline-delimited JSON, streamed: buffered messages from `since` (and
//! up to `until`) first, then live ones until `until` passes or the client goes away; with an
//! `until` already past, only the buffered ones. `filters` are dockerd's: `type`, `event` and
//! `scope` match exactly; `node`, `service`, `secret`, `config`, `network`, `container`,
//! `volume`, `plugin` and `daemon` match the actor's id or name by prefix; `image` exactly;
//! `label` the attributes (`key` or `key=value`). Other filter names are refused.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue};
use axum::response::Response;
use serde::Serialize;
use swarm_core::objects::node::{Node, NodeAvailability, NodeRole, NodeState, Reachability};
use swarm_core::objects::service::ServiceMode;
use swarm_core::store::{Event, WatchFilter};
use swarm_core::{Clock, Id, Meta, Object, ObjectKind, Service, Timestamp};
use tokio::sync::broadcast;

use super::logs::parse_unix_time;
use crate::api::error::ApiError;
use crate::api::query::{Filters, Query};
use crate::api::AppState;
use crate::backend::{Backend, ClusterAccess};

/// Messages kept for `since` (dockerd keeps 256; a swarm service update makes several).
pub(crate) const HISTORY: usize = 1024;
/// Live messages a stream may fall behind by before it is closed (the client sees the end and
/// can reconnect with `since`).
const LIVE_BUFFER: usize = 4096;

/// Filter names `/events` accepts (dockerd's list).
const FILTERS: &[&str] = &[
    "config",
    "container",
    "daemon",
    "event",
    "image",
    "label",
    "network",
    "node",
    "plugin",
    "scope",
    "secret",
    "service",
    "type",
    "volume",
];

/// Who an event is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Actor {
    /// The object's id.
    #[serde(rename = "ID")]
    pub(crate) id: String,
    /// `name`, and for updates what changed (`<field>.old` / `<field>.new`).
    #[serde(rename = "Attributes")]
    pub(crate) attributes: BTreeMap<String, String>,
}

/// One event, in Docker's JSON shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct EventMessage {
    /// `node`, `service`, `secret`, `config` or `network`.
    #[serde(rename = "Type")]
    pub(crate) kind: &'static str,
    /// `create`, `update` or `remove`.
    #[serde(rename = "Action")]
    pub(crate) action: &'static str,
    /// The object.
    #[serde(rename = "Actor")]
    pub(crate) actor: Actor,
    /// Always `swarm`.
    pub(crate) scope: &'static str,
    /// Seconds since the epoch.
    pub(crate) time: u64,
    /// Nanoseconds since the epoch.
    #[serde(rename = "timeNano")]
    pub(crate) time_nano: u64,
}

impl EventMessage {
    /// Docker's `filters` semantics (see the module docs).
    fn matches(&self, f: &Filters) -> bool {
        let name = self.actor.attributes.get("name").map_or("", String::as_str);
        let by_name = |key: &str| {
            !f.contains(key) || f.any_prefix(key, &self.actor.id) || f.any_prefix(key, name)
        };
        let image = self
            .actor
            .attributes
            .get("image")
            .map_or("", String::as_str);
        f.any_exact("type", self.kind)
            && f.any_exact("event", self.action)
            && f.any_exact("scope", self.scope)
            && [
                "container",
                "daemon",
                "plugin",
                "volume",
                "network",
                "node",
                "service",
                "secret",
                "config",
            ]
            .iter()
            .all(|k| by_name(k))
            && (!f.contains("image")
                || f.any_exact("image", &self.actor.id)
                || f.any_exact("image", image))
            && f.labels_match("label", &self.actor.attributes)
    }
}

fn node_state(s: NodeState) -> &'static str {
    match s {
        NodeState::Unknown => "unknown",
        NodeState::Down => "down",
        NodeState::Ready => "ready",
        NodeState::Disconnected => "disconnected",
    }
}

fn reachability(r: Reachability) -> &'static str {
    match r {
        Reachability::Unknown => "unknown",
        Reachability::Unreachable => "unreachable",
        Reachability::Reachable => "reachable",
    }
}

fn availability(a: NodeAvailability) -> &'static str {
    a.as_str()
}

fn role(r: NodeRole) -> &'static str {
    r.as_str()
}

fn changed(attrs: &mut BTreeMap<String, String>, field: &str, old: &str, new: &str) {
    if old != new {
        attrs.insert(format!("{field}.old"), old.to_string());
        attrs.insert(format!("{field}.new"), new.to_string());
    }
}

fn node_attributes(n: &Node, old: Option<&Node>) -> BTreeMap<String, String> {
    let mut name = n.spec.annotations.name.clone();
    if name.is_empty() {
        if let Some(d) = &n.description {
            name = d.hostname.clone();
        }
    }
    let mut a = BTreeMap::from([("name".to_string(), name)]);
    if let Some(o) = old {
        let (oa, na) = (o.spec.availability, n.spec.availability);
        changed(&mut a, "availability", availability(oa), availability(na));
        changed(&mut a, "role", role(o.role), role(n.role));
        changed(
            &mut a,
            "state",
            node_state(o.status.state),
            node_state(n.status.state),
        );
        if let (Some(nm), Some(om)) = (&n.manager_status, &o.manager_status) {
            let b = |v: bool| if v { "true" } else { "false" };
            changed(&mut a, "leader", b(om.leader), b(nm.leader));
            changed(
                &mut a,
                "reachability",
                reachability(om.reachability),
                reachability(nm.reachability),
            );
        }
    }
    a
}

fn replicas(s: &Service) -> Option<u64> {
    match &s.spec.mode {
        ServiceMode::Replicated { replicas } => Some(*replicas),
        _ => None,
    }
}

fn service_attributes(s: &Service, old: Option<&Service>) -> BTreeMap<String, String> {
    let mut a = BTreeMap::from([("name".to_string(), s.spec.annotations.name.clone())]);
    if let Some(o) = old {
        changed(
            &mut a,
            "image",
            &o.spec.task.container.image,
            &s.spec.task.container.image,
        );
        if let (Some(old_n), Some(new_n)) = (replicas(o), replicas(s)) {
            changed(&mut a, "replicas", &old_n.to_string(), &new_n.to_string());
        }
        if let Some(new_u) = &s.update_status {
            let new_state = new_u.state.as_str().to_ascii_lowercase();
            match &o.update_status {
                None => {
                    a.insert("updatestate.new".into(), new_state);
                }
                Some(old_u) if old_u.state != new_u.state => {
                    a.insert(
                        "updatestate.old".into(),
                        old_u.state.as_str().to_ascii_lowercase(),
                    );
                    a.insert("updatestate.new".into(), new_state);
                }
                Some(_) => {}
            }
        }
    }
    a
}

/// The object's kind name, id, attributes and meta, for the kinds that make events.
fn describe(
    o: &Object,
    old: Option<&Object>,
) -> Option<(&'static str, Id, BTreeMap<String, String>, Meta)> {
    let named = |name: &str| BTreeMap::from([("name".to_string(), name.to_string())]);
    Some(match o {
        Object::Node(n) => {
            let old = match old {
                Some(Object::Node(x)) => Some(&**x),
                _ => None,
            };
            ("node", n.id, node_attributes(n, old), n.meta.clone())
        }
        Object::Service(s) => {
            let old = match old {
                Some(Object::Service(x)) => Some(&**x),
                _ => None,
            };
            ("service", s.id, service_attributes(s, old), s.meta.clone())
        }
        Object::Secret(s) => (
            "secret",
            s.id,
            named(&s.spec.annotations.name),
            s.meta.clone(),
        ),
        Object::Config(c) => (
            "config",
            c.id,
            named(&c.spec.annotations.name),
            c.meta.clone(),
        ),
        Object::Network(n) => (
            "network",
            n.id,
            named(&n.spec.annotations.name),
            n.meta.clone(),
        ),
        _ => return None,
    })
}

/// Docker's message for a store event (`None` for kinds and markers that make none). `now` is
/// the time of a removal.
pub(crate) fn translate(ev: &Event, now: Timestamp) -> Option<EventMessage> {
    let (action, obj, old) = match ev {
        Event::Created(o) => ("create", o, None),
        Event::Updated { old, new } => ("update", new, Some(old)),
        Event::Removed(o) => ("remove", o, None),
        Event::Commit { .. } | Event::Reset { .. } => return None,
    };
    let (kind, id, attributes, meta) = describe(obj, old)?;
    let time = match action {
        "create" => meta.created_at,
        "update" => meta.updated_at,
        _ => now,
    };
    Some(EventMessage {
        kind,
        action,
        actor: Actor {
            id: id.to_string(),
            attributes,
        },
        scope: "swarm",
        time: time.as_nanos() / 1_000_000_000,
        time_nano: time.as_nanos(),
    })
}

struct History {
    /// The last [`HISTORY`] messages, oldest first.
    ring: VecDeque<Arc<EventMessage>>,
    /// The node whose store is being watched, while a recorder runs.
    attached: Option<Id>,
    recorder: Option<tokio::task::JoinHandle<()>>,
}

/// Records the store's events as Docker messages and hands them to `/events` streams.
pub(crate) struct EventHub {
    history: Mutex<History>,
    live: broadcast::Sender<Arc<EventMessage>>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for EventHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHub").finish_non_exhaustive()
    }
}

impl Drop for EventHub {
    fn drop(&mut self) {
        if let Some(h) = self.lock().recorder.take() {
            h.abort();
        }
    }
}

impl EventHub {
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Arc<EventHub> {
        Arc::new(EventHub {
            history: Mutex::new(History {
                ring: VecDeque::new(),
                attached: None,
                recorder: None,
            }),
            live: broadcast::channel(LIVE_BUFFER).0,
            clock,
        })
    }

    fn lock(&self) -> MutexGuard<'_, History> {
        // Pushes, pops and handle swaps only: consistent after a panic.
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes sure the cluster's store is being recorded (cheap when it already is). Must run
    /// inside a tokio runtime.
    pub(crate) fn attach(self: &Arc<Self>, access: &ClusterAccess) {
        let mut h = self.lock();
        if h.attached == Some(access.node_id)
            && h.recorder.as_ref().is_some_and(|r| !r.is_finished())
        {
            return;
        }
        if let Some(old) = h.recorder.take() {
            old.abort();
        }
        let watcher = access.store.watch(WatchFilter::kinds(&[
            ObjectKind::Node,
            ObjectKind::Service,
            ObjectKind::Secret,
            ObjectKind::Config,
            ObjectKind::Network,
        ]));
        h.attached = Some(access.node_id);
        let weak = Arc::downgrade(self);
        h.recorder = Some(tokio::spawn(async move {
            // Ends when the store goes away (leave, lock) or the watcher lags; the next attach
            // subscribes again.
            while let Ok(events) = watcher.recv_many().await {
                let Some(hub) = weak.upgrade() else { return };
                hub.record(&events);
            }
        }));
    }

    fn record(&self, events: &[Event]) {
        let now = self.clock.now();
        let mut h = self.lock();
        for ev in events {
            if let Some(msg) = translate(ev, now) {
                let msg = Arc::new(msg);
                if h.ring.len() == HISTORY {
                    h.ring.pop_front();
                }
                h.ring.push_back(msg.clone());
                // Sent under the lock: a subscriber taken with the history sees no gap.
                let _ = self.live.send(msg);
            }
        }
    }

    /// The kept messages matching `since`/`until`, and a subscription to later ones, taken
    /// together so none is missed or seen twice.
    fn subscribe(
        &self,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> (
        Vec<Arc<EventMessage>>,
        broadcast::Receiver<Arc<EventMessage>>,
    ) {
        let h = self.lock();
        let rx = self.live.subscribe();
        if since.is_none() && until.is_none() {
            return (Vec::new(), rx);
        }
        let since = since.map_or(0, |t| t.as_nanos());
        let until = until.map_or(u64::MAX, |t| t.as_nanos());
        let past = h
            .ring
            .iter()
            .filter(|m| m.time_nano >= since && m.time_nano <= until)
            .cloned()
            .collect();
        (past, rx)
    }
}

/// Attaches `hub` to the backend's store whenever the swarm is active, checking every second,
/// so events are recorded from the start and not only after the first API call.
pub(crate) async fn keep_attached(hub: Arc<EventHub>, backend: Arc<dyn Backend>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Ok(access) = backend.cluster() {
            hub.attach(&access);
        }
    }
}

fn line(msg: &EventMessage) -> Bytes {
    let mut v = serde_json::to_vec(msg).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

/// `GET /events`.
pub(crate) async fn events(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(q.as_deref());
    let since = parse_unix_time("since", q.get("since").unwrap_or(""))?;
    let until = parse_unix_time("until", q.get("until").unwrap_or(""))?;
    let filters = q.filters()?;
    filters.validate(FILTERS)?;
    if let (Some(s), Some(u)) = (since, until) {
        if u < s {
            return Err(ApiError::bad_request(format!(
                "`since` time ({}) cannot be after `until` time ({})",
                q.get("since").unwrap_or(""),
                q.get("until").unwrap_or("")
            )));
        }
    }
    // A node outside a swarm has no swarm events but still streams (dockerd does too).
    if let Ok(access) = st.backend.cluster() {
        st.events.attach(&access);
    }
    let now = st.clock.now();
    let only_past = until.is_some_and(|u| u < now);
    let deadline = until.map(|u| tokio::time::Instant::now() + u.since(now));
    let (past, rx) = st.events.subscribe(since, until);
    let filters = Arc::new(filters);
    let f = filters.clone();
    let head = futures_util::stream::iter(
        past.into_iter()
            .filter(move |m| m.matches(&f))
            .map(|m| Ok::<_, Infallible>(line(&m)))
            .collect::<Vec<_>>(),
    );
    let tail = futures_util::stream::unfold(
        (rx, filters, only_past),
        move |(mut rx, filters, done)| async move {
            if done {
                return None;
            }
            loop {
                let next = match deadline {
                    Some(at) => match tokio::time::timeout_at(at, rx.recv()).await {
                        Ok(r) => r,
                        Err(_) => return None,
                    },
                    None => rx.recv().await,
                };
                match next {
                    Ok(m) if m.matches(&filters) => {
                        return Some((Ok(line(&m)), (rx, filters, false)));
                    }
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!("an /events stream fell {n} events behind; closing it");
                        return None;
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    );
    let body = futures_util::StreamExt::chain(head, tail);
    let mut resp = Response::new(Body::from_stream(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: &'static str, action: &'static str, id: &str, name: &str) -> EventMessage {
        EventMessage {
            kind,
            action,
            actor: Actor {
                id: id.into(),
                attributes: BTreeMap::from([("name".to_string(), name.to_string())]),
            },
            scope: "swarm",
            time: 1,
            time_nano: 1_000_000_000,
        }
    }

    fn filters(json: &str) -> Filters {
        Filters::parse(Some(json)).expect("filters")
    }

    #[test]
    fn filters_follow_dockerd() {
        let m = msg("service", "create", "abc123", "web");
        assert!(m.matches(&Filters::default()));
        assert!(m.matches(&filters(r#"{"type":["service"]}"#)));
        assert!(!m.matches(&filters(r#"{"type":["node"]}"#)));
        assert!(m.matches(&filters(r#"{"event":["create","remove"]}"#)));
        assert!(!m.matches(&filters(r#"{"event":["update"]}"#)));
        assert!(m.matches(&filters(r#"{"service":["we"]}"#)));
        assert!(m.matches(&filters(r#"{"service":["abc"]}"#)));
        assert!(!m.matches(&filters(r#"{"service":["db"]}"#)));
        // Every name filter applies to every event, as in dockerd.
        assert!(!m.matches(&filters(r#"{"node":["n1"]}"#)));
        assert!(m.matches(&filters(r#"{"scope":["swarm"]}"#)));
        assert!(!m.matches(&filters(r#"{"scope":["local"]}"#)));
        assert!(m.matches(&filters(r#"{"label":["name=web"]}"#)));
        assert!(!m.matches(&filters(r#"{"label":["name=db"]}"#)));
    }

    #[test]
    fn serializes_as_docker_does() {
        let m = msg("node", "update", "n1", "host");
        let v: serde_json::Value = serde_json::from_slice(&line(&m)).expect("json");
        assert_eq!(v["Type"], "node");
        assert_eq!(v["Action"], "update");
        assert_eq!(v["Actor"]["ID"], "n1");
        assert_eq!(v["Actor"]["Attributes"]["name"], "host");
        assert_eq!(v["scope"], "swarm");
        assert_eq!(v["time"], 1);
        assert_eq!(v["timeNano"], 1_000_000_000u64);
    }
}
