//! The driver of one scale run: managers, packs, workload and figures (see the binary's docs).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use swarm_node::testing::HttpClient;

use crate::cluster::{api, call, cpu_seconds, rss_mib, Manager, Procs};

/// What `scale run` is asked to do.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Simulated worker nodes.
    pub nodes: usize,
    /// Services created.
    pub services: usize,
    /// Replicas per service.
    pub replicas: u64,
    /// Pack processes the nodes are spread over.
    pub packs: usize,
    /// The `swarm-node` binary the managers run.
    pub node_bin: PathBuf,
    /// The first manager's port (the others: +1, +2).
    pub port: u16,
    /// Seconds of each at-rest CPU sample.
    pub rest_secs: u64,
    /// Joins in flight per pack.
    pub join_parallel: usize,
    /// Bound of every wait.
    pub timeout_secs: u64,
    /// Nodes (in a pack of their own, `lost-*`) killed at once after the workload ran; 0: none.
    pub lose: usize,
    /// A rolling update of `scale-0` after that.
    pub update: bool,
    /// A fourth manager joined at the end, timed until its store has every task.
    pub catch_up: bool,
    /// The packs' nice value once joined (10): the simulated workers stand for machines of their
    /// own, so once joined they yield this shared machine's CPU to the managers (and to everyone
    /// else). Not while joining: a join's key, CSR and handshakes are the pack's own CPU work.
    pub pack_nice: i32,
}

impl Default for RunOptions {
    fn default() -> Self {
        let node_bin = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("swarm-node")))
            .unwrap_or_else(|| PathBuf::from("swarm-node"));
        RunOptions {
            nodes: 1000,
            services: 10,
            replicas: 1000,
            packs: 1,
            node_bin,
            port: 24770,
            rest_secs: 20,
            join_parallel: 64,
            timeout_secs: 900,
            lose: 0,
            update: false,
            catch_up: false,
            pack_nice: 10,
        }
    }
}

/// Latency samples of one kind of call.
#[derive(Default)]
struct Samples(Vec<Duration>);

impl Samples {
    fn pct(&self, p: f64) -> f64 {
        let mut v = self.0.clone();
        v.sort();
        if v.is_empty() {
            return f64::NAN;
        }
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v[i].as_secs_f64() * 1e3
    }

    fn summary(&self) -> Value {
        json!({"n": self.0.len(), "p50_ms": self.pct(0.5), "p99_ms": self.pct(0.99), "max_ms": self.pct(1.0)})
    }
}

/// The leader's index among `managers` (from `GET /nodes`).
async fn leader(managers: &[Manager]) -> Result<usize, String> {
    let (_, nodes) = api(&managers[0].socket, "GET", "/nodes", None).await?;
    let addr = nodes
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["ManagerStatus"]["Leader"].as_bool() == Some(true))
        .and_then(|n| n["ManagerStatus"]["Addr"].as_str().map(str::to_string))
        .ok_or("no leader in GET /nodes")?;
    managers
        .iter()
        .position(|m| m.addr.to_string() == addr)
        .ok_or_else(|| format!("the leader {addr} is none of ours"))
}

/// Leader CPU % of one core over `secs`, every manager's RSS (MiB), and the packs' RSS (MiB:
/// each pack's, and their sum over `nodes`, in KiB per node).
async fn at_rest(
    managers: &[Manager],
    packs: &[u32],
    nodes: usize,
    secs: u64,
) -> Result<Value, String> {
    let l = leader(managers).await?;
    let pid = managers[l].pid;
    let c0 = cpu_seconds(pid).ok_or("no /proc stat")?;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let c1 = cpu_seconds(pid).ok_or("no /proc stat")?;
    let cpu = 100.0 * (c1 - c0) / t0.elapsed().as_secs_f64();
    let rss: Vec<f64> = managers
        .iter()
        .map(|m| rss_mib(m.pid).unwrap_or(f64::NAN))
        .collect();
    let pack_rss: Vec<f64> = packs
        .iter()
        .map(|&pid| rss_mib(pid).unwrap_or(f64::NAN))
        .collect();
    let per_node_kib = pack_rss.iter().sum::<f64>() * 1024.0 / nodes.max(1) as f64;
    Ok(json!({
        "leader": l, "leader_pid": pid, "leader_cpu_pct": cpu, "rss_mib": rss,
        "pack_rss_mib": pack_rss, "pack_kib_per_node": per_node_kib,
    }))
}

/// Nodes `Ready` in `GET /nodes`.
async fn ready_nodes(socket: &std::path::Path) -> Result<usize, String> {
    let (_, nodes) = api(socket, "GET", "/nodes", None).await?;
    Ok(nodes
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["Status"]["State"].as_str() == Some("ready"))
        .count())
}

/// Running tasks of the services named `scale-*` (`GET /services?status=true`).
async fn running_tasks(c: &mut HttpClient) -> Result<u64, String> {
    let (_, svcs) = call(c, "GET", "/services?status=true", None).await?;
    Ok(scale_running(&svcs))
}

/// The running tasks of the `scale-*` services in an answer of `GET /services?status=true`.
pub(crate) fn scale_running(svcs: &serde_json::Value) -> u64 {
    svcs.as_array()
        .into_iter()
        .flatten()
        .filter(|s| {
            s["Spec"]["Name"]
                .as_str()
                .is_some_and(|n| n.starts_with("scale-"))
        })
        .filter_map(|s| s["ServiceStatus"]["RunningTasks"].as_u64())
        .sum()
}

fn service_spec(name: &str, replicas: u64) -> Value {
    json!({
        "Name": name,
        "TaskTemplate": {"ContainerSpec": {"Image": "busybox"}},
        "Mode": {"Replicated": {"Replicas": replicas}},
    })
}

/// Runs the whole scenario. See the binary's docs.
pub async fn run(o: RunOptions) -> Result<(), String> {
    let timeout = Duration::from_secs(o.timeout_secs);
    let mut procs = Procs::new()?;
    let mut figures =
        json!({"nodes": o.nodes, "services": o.services, "replicas": o.replicas, "packs": o.packs});
    // Managers.
    let t = Instant::now();
    let m0 = procs.start_manager(&o.node_bin, 0, o.port, true)?;
    let (_, swarm) = api(&m0.socket, "GET", "/swarm", None).await?;
    let worker_token = swarm["JoinTokens"]["Worker"]
        .as_str()
        .ok_or("no worker token in GET /swarm")?
        .to_string();
    let manager_token = swarm["JoinTokens"]["Manager"]
        .as_str()
        .ok_or("no manager token")?
        .to_string();
    let mut managers = vec![m0];
    for i in 1..3 {
        let m = procs.start_manager(&o.node_bin, i, o.port + i as u16, false)?;
        let body = json!({
            "ListenAddr": m.addr.to_string(),
            "AdvertiseAddr": m.addr.to_string(),
            "RemoteAddrs": [managers[0].addr.to_string()],
            "JoinToken": manager_token,
        });
        let (status, v) = api(&m.socket, "POST", "/swarm/join", Some(&body)).await?;
        if status != 200 {
            return Err(format!("manager {i} join: {status} {v}"));
        }
        managers.push(m);
    }
    let pids: Vec<u32> = managers.iter().map(|m| m.pid).collect();
    eprintln!("managers up, pids {pids:?}");
    println!("managers up in {:.1} s", t.elapsed().as_secs_f64());
    // Worker packs, each on its own loopback address.
    let t = Instant::now();
    let regular = o.nodes.saturating_sub(o.lose);
    let per = regular.div_ceil(o.packs);
    let mut packs = Vec::new();
    let mut left = regular;
    let mut lost_pack = None;
    for p in 0..=o.packs {
        // The last pack: the nodes `--lose` kills, if any.
        let (count, name) = if p == o.packs {
            (o.lose, crate::stages::LOST_PREFIX.to_string())
        } else {
            (per.min(left), format!("pack{p}"))
        };
        if p < o.packs {
            left -= count;
        }
        if count == 0 {
            continue;
        }
        let args: Vec<String> = [
            "--manager",
            &managers[0].addr.to_string(),
            "--token",
            &worker_token,
            "--count",
            &count.to_string(),
            "--bind-ip",
            &format!("127.0.1.{}", p + 1),
            "--name",
            &name,
            "--parallel",
            &o.join_parallel.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let pack = procs.start_pack(&args)?;
        if p == o.packs {
            lost_pack = Some(pack.pid);
        }
        packs.push(pack);
    }
    let mut joined = 0;
    let mut failed = 0;
    let mut waiting = packs.len();
    let deadline = Instant::now() + timeout;
    while waiting > 0 {
        if Instant::now() > deadline {
            return Err(format!("packs not ready within {timeout:?}"));
        }
        for p in &packs {
            while let Ok(line) = p.lines.try_recv() {
                let mut w = line.split_whitespace();
                match w.next() {
                    Some("ready") => {
                        joined += w.next().and_then(|n| n.parse::<usize>().ok()).unwrap_or(0);
                        waiting -= 1;
                    }
                    Some("failed") => {
                        failed += 1;
                        if failed <= 5 {
                            eprintln!("pack {}: {line}", p.pid);
                        }
                    }
                    Some("joined") => eprintln!("pack {}: {line}", p.pid),
                    _ => {}
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pack_pids: Vec<u32> = packs.iter().map(|p| p.pid).collect();
    let join_s = t.elapsed().as_secs_f64();
    println!(
        "join: {joined} of {} nodes joined in {join_s:.1} s ({:.0}/s), {failed} failed",
        o.nodes,
        joined as f64 / join_s
    );
    let want = joined + managers.len();
    loop {
        let r = ready_nodes(&managers[0].socket).await?;
        if r >= want {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("{r} of {want} nodes ready within {timeout:?}"));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let ready_s = t.elapsed().as_secs_f64();
    println!("all {want} nodes ready after {ready_s:.1} s");
    if o.pack_nice != 0 {
        for &pid in &pack_pids {
            crate::cluster::renice(pid, o.pack_nice);
        }
    }
    figures["join_s"] = json!(join_s);
    figures["ready_s"] = json!(ready_s);
    figures["joined"] = json!(joined);
    figures["join_failed"] = json!(failed);
    let rest = at_rest(&managers, &pack_pids, joined, o.rest_secs).await?;
    println!("at rest, no tasks: {rest}");
    figures["rest_empty"] = rest;
    // Workload, with API probes meanwhile.
    let l = leader(&managers).await?;
    let socket = managers[l].socket.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let probes = {
        let stop = stop.clone();
        let socket = socket.clone();
        tokio::spawn(async move { probe(&socket, &stop).await })
    };
    let t = Instant::now();
    let mut creates = Samples::default();
    let mut c = HttpClient::connect(&socket)
        .await
        .map_err(|e| e.to_string())?;
    for s in 0..o.services {
        let t1 = Instant::now();
        let (status, v) = call(
            &mut c,
            "POST",
            "/services/create",
            Some(&service_spec(&format!("scale-{s}"), o.replicas)),
        )
        .await?;
        creates.0.push(t1.elapsed());
        if status != 201 {
            return Err(format!("service create: {status} {v}"));
        }
    }
    let total = o.services as u64 * o.replicas;
    // The running count is polled on a follower (a read there waits for the leader's commit
    // index, so it sees what the leader committed): `GET /services?status=true` walks every
    // task, and on the leader that poll took a third of the CPU the leader got at 100,000
    // tasks on this overloaded machine (perf; docs/BENCHMARKS.md).
    let follower = (l + 1) % managers.len();
    let mut poll = HttpClient::connect(&managers[follower].socket)
        .await
        .map_err(|e| e.to_string())?;
    let mut last = 0;
    loop {
        let r = running_tasks(&mut poll).await?;
        if r != last {
            eprintln!("running {r}/{total} at {:.1} s", t.elapsed().as_secs_f64());
            last = r;
        }
        if r >= total {
            break;
        }
        if t.elapsed() > timeout {
            stop.store(true, Ordering::SeqCst);
            return Err(format!("{r} of {total} tasks running within {timeout:?}"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let converge_s = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    let (ls, inspect, create) = probes.await.map_err(|e| e.to_string())??;
    println!(
        "{} x {} = {total} tasks: create -> all running {converge_s:.1} s ({:.0} tasks/s)",
        o.services,
        o.replicas,
        total as f64 / converge_s
    );
    println!(
        "API under load: service create (workload) {}, ls {}, inspect {}, create (probe) {}",
        creates.summary(),
        ls.summary(),
        inspect.summary(),
        create.summary()
    );
    figures["converge_s"] = json!(converge_s);
    figures["create_workload"] = creates.summary();
    figures["ls"] = ls.summary();
    figures["inspect"] = inspect.summary();
    figures["create_probe"] = create.summary();
    let rest = at_rest(&managers, &pack_pids, joined, o.rest_secs).await?;
    println!("at rest, {total} tasks: {rest}");
    figures["rest_tasks"] = rest;
    let l = leader(&managers).await?;
    if let Some(pid) = lost_pack {
        figures["lost"] =
            crate::stages::lose(&managers[(l + 1) % 3], &mut procs, pid, total, timeout).await?;
    }
    if o.update {
        figures["update"] = crate::stages::rolling_update(&managers[l], timeout).await?;
    }
    if o.catch_up {
        let port = o.port + managers.len() as u16;
        figures["catch_up"] =
            crate::stages::catch_up(&mut procs, &managers, &o.node_bin, port, total, timeout)
                .await?;
    }
    println!("{figures}");
    drop(procs);
    Ok(())
}

/// `service ls`, `service inspect` and a 0-replica `service create` in turn, each on its own
/// connection, until `stop`: their latencies.
async fn probe(
    socket: &std::path::Path,
    stop: &AtomicBool,
) -> Result<(Samples, Samples, Samples), String> {
    let (mut ls, mut inspect, mut create) =
        (Samples::default(), Samples::default(), Samples::default());
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        let t = Instant::now();
        api(socket, "GET", "/services", None).await?;
        ls.0.push(t.elapsed());
        let t = Instant::now();
        api(socket, "GET", "/services/scale-0", None).await?;
        inspect.0.push(t.elapsed());
        let t = Instant::now();
        let (status, v) = api(
            socket,
            "POST",
            "/services/create",
            Some(&service_spec(&format!("probe-{n}"), 0)),
        )
        .await?;
        create.0.push(t.elapsed());
        if status != 201 {
            return Err(format!("probe create: {status} {v}"));
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok((ls, inspect, create))
}
