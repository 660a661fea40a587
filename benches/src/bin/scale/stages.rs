//! The stages of `scale run` after the workload converged, each optional: nodes lost at once
//! (`--lose N`), a rolling update of one service (`--update`), and a new manager catching up
//! (`--catch-up`). Each returns its figures as JSON and prints them.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cluster::{api, Manager, Procs};

/// The hostname prefix of the pack whose nodes `--lose` kills.
pub const LOST_PREFIX: &str = "lost";

/// Percent-encodes `s` for a query string (everything but unreserved characters).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn filters(v: &Value) -> String {
    format!("filters={}", encode(&v.to_string()))
}

/// The `lost-*` nodes: (id, state) each.
async fn lost_nodes(socket: &std::path::Path) -> Result<Vec<(String, String)>, String> {
    let path = format!(
        "/nodes?{}",
        filters(&json!({"name": [format!("{LOST_PREFIX}-")]}))
    );
    let (status, v) = api(socket, "GET", &path, None).await?;
    if status != 200 {
        return Err(format!("GET /nodes (lost): {status} {v}"));
    }
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| {
            let id = n["ID"].as_str()?.to_string();
            let state = n["Status"]["State"].as_str().unwrap_or("").to_string();
            Some((id, state))
        })
        .collect())
}

/// Running tasks of `scale-*` services, summed (`GET /services?status=true`).
async fn running(socket: &std::path::Path) -> Result<u64, String> {
    let (_, svcs) = api(socket, "GET", "/services?status=true", None).await?;
    Ok(crate::driver::scale_running(&svcs))
}

/// `--lose`: SIGKILLs the pack `pack` (the `lost-*` nodes), and times until the managers mark
/// them all down and until replacements of their tasks run. A lost node's tasks stay `running`
/// in the store (orphaned only after 24 h, as in SwarmKit), so "replaced" is: the running count
/// reached `total` plus the tasks the lost nodes were running. Polled on `follower` (see the
/// driver: the running count walks every task).
pub async fn lose(
    follower: &Manager,
    procs: &mut Procs,
    pack: u32,
    total: u64,
    timeout: Duration,
) -> Result<Value, String> {
    let socket = &follower.socket;
    let nodes = lost_nodes(socket).await?;
    let ids: Vec<&str> = nodes.iter().map(|(id, _)| id.as_str()).collect();
    let path = format!(
        "/tasks?{}",
        filters(&json!({"node": ids, "desired-state": ["running"]}))
    );
    let (status, tasks) = api(socket, "GET", &path, None).await?;
    if status != 200 {
        return Err(format!("GET /tasks (lost nodes): {status} {tasks}"));
    }
    let on_lost = tasks
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["Status"]["State"].as_str() == Some("running"))
        .count() as u64;
    let t = Instant::now();
    procs.kill_pack(pack)?;
    let (mut down_s, mut replaced_s) = (None, None);
    while down_s.is_none() || replaced_s.is_none() {
        if t.elapsed() > timeout {
            return Err(format!(
                "nodes lost: not recovered within {timeout:?} (down {down_s:?}, replaced {replaced_s:?})"
            ));
        }
        if down_s.is_none() {
            let now = lost_nodes(socket).await?;
            if now.iter().all(|(_, s)| s == "down") {
                down_s = Some(t.elapsed().as_secs_f64());
                eprintln!("lost nodes all down at {:.1} s", t.elapsed().as_secs_f64());
            }
        }
        if replaced_s.is_none() {
            let r = running(socket).await?;
            if r >= total + on_lost {
                replaced_s = Some(t.elapsed().as_secs_f64());
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let v =
        json!({"nodes": nodes.len(), "tasks": on_lost, "down_s": down_s, "replaced_s": replaced_s});
    println!("nodes lost: {v}");
    Ok(v)
}

/// `--update`: a rolling update of `scale-0` (an environment variable added), parallelism 100,
/// no delay, timed from the update call until `UpdateStatus.State` is `completed`.
pub async fn rolling_update(leader: &Manager, timeout: Duration) -> Result<Value, String> {
    let socket = &leader.socket;
    let (status, svc) = api(socket, "GET", "/services/scale-0", None).await?;
    if status != 200 {
        return Err(format!("GET /services/scale-0: {status} {svc}"));
    }
    let version = svc["Version"]["Index"]
        .as_u64()
        .ok_or("no Version.Index on scale-0")?;
    let replicas = svc["Spec"]["Mode"]["Replicated"]["Replicas"]
        .as_u64()
        .unwrap_or(0);
    let mut spec = svc["Spec"].clone();
    spec["TaskTemplate"]["ContainerSpec"]["Env"] = json!(["SCALE_UPDATE=1"]);
    spec["UpdateConfig"] = json!({"Parallelism": 100, "Delay": 0, "FailureAction": "pause",
        "Order": "stop-first", "MaxFailureRatio": 0});
    let t = Instant::now();
    let path = format!("/services/scale-0/update?version={version}");
    let (status, v) = api(socket, "POST", &path, Some(&spec)).await?;
    if status != 200 {
        return Err(format!("update scale-0: {status} {v}"));
    }
    let mut last = String::new();
    loop {
        let (_, svc) = api(socket, "GET", "/services/scale-0", None).await?;
        let state = svc["UpdateStatus"]["State"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if state != last {
            eprintln!("update: {state} at {:.1} s", t.elapsed().as_secs_f64());
            last = state.clone();
        }
        match state.as_str() {
            "completed" => break,
            "paused" | "rollback_started" | "rollback_paused" | "rollback_completed" => {
                return Err(format!(
                    "update of scale-0 ended {state}: {}",
                    svc["UpdateStatus"]
                ))
            }
            _ => {}
        }
        if t.elapsed() > timeout {
            return Err(format!(
                "update of scale-0 not completed within {timeout:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let v =
        json!({"replicas": replicas, "parallelism": 100, "completed_s": t.elapsed().as_secs_f64()});
    println!("rolling update: {v}");
    Ok(v)
}

/// `--catch-up`: starts a fourth manager, joins it with the manager token, and times until its
/// own API (reading its own store) counts every `scale-*` task running, `total` or more.
pub async fn catch_up(
    procs: &mut Procs,
    managers: &[Manager],
    bin: &std::path::Path,
    port: u16,
    total: u64,
    timeout: Duration,
) -> Result<Value, String> {
    let (_, swarm) = api(&managers[0].socket, "GET", "/swarm", None).await?;
    let token = swarm["JoinTokens"]["Manager"]
        .as_str()
        .ok_or("no manager token")?
        .to_string();
    let m = procs.start_manager(bin, managers.len(), port, false)?;
    let body = json!({
        "ListenAddr": m.addr.to_string(),
        "AdvertiseAddr": m.addr.to_string(),
        "RemoteAddrs": [managers[0].addr.to_string()],
        "JoinToken": token,
    });
    let t = Instant::now();
    let (status, v) = api(&m.socket, "POST", "/swarm/join", Some(&body)).await?;
    if status != 200 {
        return Err(format!("catch-up manager join: {status} {v}"));
    }
    let joined_s = t.elapsed().as_secs_f64();
    loop {
        if let Ok(r) = running(&m.socket).await {
            if r >= total {
                break;
            }
        }
        if t.elapsed() > timeout {
            return Err(format!(
                "the new manager did not catch up within {timeout:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let v = json!({"join_returned_s": joined_s, "caught_up_s": t.elapsed().as_secs_f64(),
        "pid": m.pid, "rss_mib": crate::cluster::rss_mib(m.pid)});
    println!("catch-up: {v}");
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_percent_encoded() {
        assert_eq!(
            filters(&json!({"name": ["lost-"]})),
            "filters=%7B%22name%22%3A%5B%22lost-%22%5D%7D"
        );
    }
}
