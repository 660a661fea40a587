//! The docker adapter's networking and mounts against the local engine (skipped loudly without a
//! Docker socket), driven through the `Runtime` trait with hand-built `TaskConfig`s:
//! swarm networks become engine bridges with the task's DNS aliases (resolvable on that network
//! only, round-robin over a service's tasks), `inspect` reports addresses per swarm network and
//! the bound host-mode ports, the last task of a network takes its bridge with it, named volumes
//! outlive their tasks, read-only mounts are enforced and a missing bind source rejects the task
//! before anything is created.
//!
//! Every test names its networks, volumes and services from its own random numbers, so tests
//! running in parallel (or several runs on one engine) never share an engine object, and a
//! [`Cleanup`] guard removes what a test created even when it fails.

mod support;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm_core::objects::network::{IpamConfig, NetworkSpec};
use swarm_core::objects::service::{
    ContainerSpec, Mount, MountKind, PortConfig, Protocol, PublishMode,
};
use swarm_core::objects::task::NetworkAttachment;
use swarm_core::{Annotations, Id, Network};
use swarm_runtime::{
    DockerOptions, DockerRuntime, ExecResult, Runtime, RuntimeError, RuntimeState, TaskConfig,
};

const NETWORK_LABEL: &str = "com.docker.swarm.network.id";

/// A random number from this process's randomly keyed hasher (no RNG dependency needed).
fn random() -> u128 {
    static N: AtomicU64 = AtomicU64::new(0);
    let s = RandomState::new();
    let n = N.fetch_add(1, Ordering::Relaxed);
    (u128::from(s.hash_one((n, 1u8))) << 64) | u128::from(s.hash_one((n, 2u8)))
}

/// A short random name suffix (lowercase hex).
fn suffix() -> String {
    format!("{:08x}", random() as u32)
}

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI")
}

fn docker_lines(args: &[&str]) -> Vec<String> {
    String::from_utf8_lossy(&docker(args).stdout)
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

/// The engine networks carrying `net`'s id label.
fn engine_networks(net: &Network) -> Vec<String> {
    docker_lines(&[
        "network",
        "ls",
        "-q",
        "--filter",
        &format!("label={NETWORK_LABEL}={}", net.id),
    ])
}

/// Removes, on drop, the containers of the test's services, its networks and its volumes.
#[derive(Default)]
struct Cleanup {
    services: Vec<String>,
    networks: Vec<Id>,
    volumes: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for s in &self.services {
            let filter = format!("label=com.docker.swarm.service.name={s}");
            for c in docker_lines(&["ps", "-aq", "--filter", &filter]) {
                docker(&["rm", "-f", "-v", &c]);
            }
        }
        for id in &self.networks {
            let filter = format!("label={NETWORK_LABEL}={id}");
            for n in docker_lines(&["network", "ls", "-q", "--filter", &filter]) {
                docker(&["network", "rm", &n]);
            }
        }
        for v in &self.volumes {
            docker(&["volume", "rm", "-f", v]);
        }
    }
}

impl Cleanup {
    fn service(&mut self) -> String {
        let s = format!("svc{}", suffix());
        self.services.push(s.clone());
        s
    }

    fn network(&mut self, name: &str) -> Arc<Network> {
        let n = Network {
            id: Id::from_u128(random()),
            meta: Default::default(),
            spec: NetworkSpec {
                annotations: Annotations::named(format!("{name}{}", suffix())),
                ..NetworkSpec::default()
            },
            ipam: None,
        };
        self.networks.push(n.id);
        Arc::new(n)
    }

    fn volume(&mut self) -> String {
        let v = format!("swarmtest-{}", suffix());
        self.volumes.push(v.clone());
        v
    }
}

async fn runtime() -> Option<(DockerRuntime, &'static str)> {
    let image = support::docker_image::ensure()?;
    let rt = DockerRuntime::connect(DockerOptions::default())
        .await
        .expect("connecting to the docker engine");
    Some((rt, image))
}

/// A task of `service` running `script` under sh, with a fresh random id.
fn task(image: &str, service: &str, script: &str) -> TaskConfig {
    TaskConfig::new(
        Id::from_u128(random()),
        service,
        ContainerSpec {
            image: image.into(),
            command: vec!["sh".into(), "-c".into(), script.into()],
            stop_grace_period: Some(Duration::from_secs(1)),
            ..ContainerSpec::default()
        },
    )
}

/// Attaches `t` to `net` with the aliases the agent gives: service, `tasks.<service>`, task name.
fn attach(t: &mut TaskConfig, net: &Arc<Network>) {
    let s = t.service_name.clone();
    t.networks.push(NetworkAttachment {
        network: net.clone(),
        aliases: vec![s.clone(), format!("tasks.{s}"), t.task_name.clone()],
    });
}

const IDLE: &str = "trap 'exit 0' TERM; while true; do sleep 1; done";

/// An HTTP server answering `body` on port 80.
fn httpd(body: &str) -> String {
    format!("mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p 80 -h /www")
}

async fn run(rt: &DockerRuntime, t: &TaskConfig) {
    rt.prepare(t).await.expect("prepare");
    rt.start(&t.task_id).await.expect("start");
}

async fn exec(rt: &DockerRuntime, t: &TaskConfig, script: &str) -> ExecResult {
    rt.exec(
        &t.task_id,
        &["sh".into(), "-c".into(), script.into()],
        Duration::from_secs(20),
    )
    .await
    .expect("exec")
}

/// Runs `script` in `t` until it exits 0 (bounded); returns the last result either way.
async fn until_ok(rt: &DockerRuntime, t: &TaskConfig, script: &str) -> ExecResult {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = exec(rt, t, script).await;
        if r.exit_code == 0 || Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The addresses busybox `nslookup` printed for the name (the server's own lines left out).
fn looked_up(output: &str) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = output
        .lines()
        .filter_map(|l| l.strip_prefix("Address:"))
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    out.sort();
    out.dedup();
    out
}

async fn ipv4_on(rt: &DockerRuntime, t: &TaskConfig, net: &Network) -> IpAddr {
    let i = rt.inspect(&t.task_id).await.expect("inspect");
    i.addresses
        .iter()
        .find(|a| a.network_id == Some(net.id) && a.addr.is_ipv4())
        .unwrap_or_else(|| panic!("no address on {}: {:?}", net.id, i.addresses))
        .addr
}

/// A task reaches another by its service name on their shared swarm network; a task on another
/// swarm network cannot resolve that name. The positive check runs first and waits until the
/// server answers, so the negative one fails for isolation, not for a server still starting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_name_resolves_on_its_network_only() {
    let Some((rt, image)) = runtime().await else {
        return;
    };
    let mut c = Cleanup::default();
    let (front, back) = (c.network("front"), c.network("back"));
    let web = c.service();
    let body = format!("hello-{}", suffix());
    let mut server = task(image, &web, &httpd(&body));
    attach(&mut server, &front);
    let client_svc = c.service();
    let mut client = task(image, &client_svc, IDLE);
    attach(&mut client, &front);
    let mut outsider = task(image, &client_svc, IDLE);
    attach(&mut outsider, &back);
    for t in [&server, &client, &outsider] {
        run(&rt, t).await;
    }

    let url = format!("timeout 5 wget -qO- http://{web}:80/");
    let r = until_ok(&rt, &client, &url).await;
    assert_eq!((r.exit_code, r.output.trim()), (0, body.as_str()), "{r:?}");
    let r = until_ok(
        &rt,
        &client,
        &format!("timeout 5 wget -qO- http://tasks.{web}/"),
    )
    .await;
    assert_eq!(r.output.trim(), body, "tasks.<service> answers too");

    let r = exec(&rt, &outsider, &url).await;
    assert_ne!(
        r.exit_code, 0,
        "another network must not reach {web}: {r:?}"
    );
    let r = exec(&rt, &outsider, &format!("nslookup {web}")).await;
    assert!(
        looked_up(&r.output)
            .iter()
            .all(|a| a.to_string().starts_with("127.")),
        "{web} must not resolve on another network: {}",
        r.output
    );

    for t in [&server, &client, &outsider] {
        rt.remove(&t.task_id).await.expect("remove");
    }
}

/// Two tasks of one service: the service name (and `tasks.<service>`) resolves to both of their
/// addresses on the network, and each of them answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_name_round_robins_over_its_tasks() {
    let Some((rt, image)) = runtime().await else {
        return;
    };
    let mut c = Cleanup::default();
    let net = c.network("rr");
    let web = c.service();
    let mut servers = Vec::new();
    for i in 0..2 {
        let mut t = task(image, &web, &httpd(&format!("replica-{i}")));
        attach(&mut t, &net);
        run(&rt, &t).await;
        servers.push(t);
    }
    let client_svc = c.service();
    let mut client = task(image, &client_svc, IDLE);
    attach(&mut client, &net);
    run(&rt, &client).await;

    let ips = [
        ipv4_on(&rt, &servers[0], &net).await,
        ipv4_on(&rt, &servers[1], &net).await,
    ];
    assert_ne!(ips[0], ips[1]);
    let mut want = ips.to_vec();
    want.sort();
    for name in [web.clone(), format!("tasks.{web}")] {
        let r = until_ok(&rt, &client, &format!("nslookup {name}")).await;
        let got: Vec<IpAddr> = looked_up(&r.output)
            .into_iter()
            .filter(|a| !a.is_loopback())
            .collect();
        assert_eq!(got, want, "{name}: {}", r.output);
    }
    for (i, ip) in ips.iter().enumerate() {
        let r = until_ok(&rt, &client, &format!("timeout 5 wget -qO- http://{ip}/")).await;
        assert_eq!(r.output.trim(), format!("replica-{i}"), "{r:?}");
    }

    for t in servers.iter().chain([&client]) {
        rt.remove(&t.task_id).await.expect("remove");
    }
}

/// `inspect` right after `start` reports one address per swarm network with its id (a second
/// network is connected with its aliases before start), `None` for the engine's default bridge;
/// a bridge lives while any task of this adapter uses it and is removed with the last one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_per_network_and_bridge_removed_with_last_task() {
    let Some((rt, image)) = runtime().await else {
        return;
    };
    let mut c = Cleanup::default();
    let (mut one, two) = (c.network("one"), c.network("two"));
    // One network with the operator's own subnet and labels (a random /24 of 10.0.0.0/8).
    let (x, y) = (random() as u8 | 0x80, random() as u8);
    let subnet = format!("10.{x}.{y}.0/24");
    {
        let n = Arc::make_mut(&mut one);
        n.spec
            .annotations
            .labels
            .insert("team".into(), "blue".into());
        n.spec.ipam.configs.push(IpamConfig {
            subnet: subnet.clone(),
            range: String::new(),
            gateway: format!("10.{x}.{y}.1"),
        });
    }
    let svc = c.service();
    let mut a = task(image, &svc, IDLE);
    attach(&mut a, &one);
    let multi = c.service();
    let mut b = task(image, &multi, IDLE);
    attach(&mut b, &one);
    attach(&mut b, &two);
    let mut peer = task(image, &svc, IDLE);
    attach(&mut peer, &two);
    let plain = task(image, &svc, IDLE);
    for t in [&a, &b, &peer, &plain] {
        run(&rt, t).await;
    }

    let ia = rt.inspect(&a.task_id).await.unwrap();
    assert_eq!(ia.state, RuntimeState::Running);
    let nets: Vec<_> = ia.addresses.iter().map(|x| x.network_id).collect();
    assert_eq!(nets, vec![Some(one.id)], "{:?}", ia.addresses);
    assert!(
        ia.addresses[0]
            .addr
            .to_string()
            .starts_with(&format!("10.{x}.{y}.")),
        "address from the spec's subnet {subnet}: {:?}",
        ia.addresses
    );
    let labels = docker_lines(&[
        "network",
        "inspect",
        "-f",
        "{{index .Labels \"team\"}} {{index .Labels \"com.docker.swarm.network.name\"}} {{.Driver}}",
        &engine_networks(&one)[0],
    ]);
    assert_eq!(
        labels,
        vec![format!("blue {} bridge", one.spec.annotations.name)]
    );
    let ib = rt.inspect(&b.task_id).await.unwrap();
    let nets: Vec<_> = ib.addresses.iter().map(|x| x.network_id).collect();
    assert_eq!(nets, vec![Some(one.id), Some(two.id)], "{:?}", ib.addresses);
    let ip = rt.inspect(&plain.task_id).await.unwrap();
    assert!(
        !ip.addresses.is_empty() && ip.addresses.iter().all(|x| x.network_id.is_none()),
        "default bridge: {:?}",
        ip.addresses
    );
    // The alias on the connected (second) network resolves there to b's address on it.
    let r = until_ok(&rt, &peer, &format!("nslookup {multi}")).await;
    assert_eq!(
        looked_up(&r.output)
            .into_iter()
            .filter(|x| !x.is_loopback())
            .collect::<Vec<_>>(),
        vec![ipv4_on(&rt, &b, &two).await],
        "{}",
        r.output
    );

    assert_eq!(engine_networks(&one).len(), 1);
    assert_eq!(engine_networks(&two).len(), 1);
    rt.remove(&a.task_id).await.unwrap();
    assert_eq!(engine_networks(&one).len(), 1, "b still uses it");
    rt.remove(&b.task_id).await.unwrap();
    assert!(
        engine_networks(&one).is_empty(),
        "last task gone: bridge removed"
    );
    assert_eq!(engine_networks(&two).len(), 1, "peer still uses it");
    rt.remove(&peer.task_id).await.unwrap();
    assert!(engine_networks(&two).is_empty());
    rt.remove(&plain.task_id).await.unwrap();
}

/// Binds port 0 on `ip` and drops it: a port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind port 0")
        .port()
}

fn http_get(port: u16) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn host_port(target: u32, published: u32) -> PortConfig {
    PortConfig {
        name: String::new(),
        protocol: Protocol::Tcp,
        target_port: target,
        published_port: published,
        publish_mode: PublishMode::Host,
    }
}

/// A host-mode port answers on the node from outside the container; `inspect` reports it, and a
/// port published as 0 with the port the engine picked. Ingress ports are not bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_mode_ports_are_bound_and_reported() {
    let Some((rt, image)) = runtime().await else {
        return;
    };
    let mut c = Cleanup::default();
    let svc = c.service();
    let body = format!("published-{}", suffix());
    let mut t = task(image, &svc, &httpd(&body));
    let port = free_port();
    t.ports = vec![
        host_port(80, u32::from(port)),
        host_port(81, 0),
        PortConfig {
            publish_mode: PublishMode::Ingress,
            ..host_port(82, 0)
        },
    ];
    run(&rt, &t).await;

    let deadline = Instant::now() + Duration::from_secs(20);
    let answer = loop {
        match http_get(port) {
            Ok(a) if a.contains(&body) => break a,
            other if Instant::now() > deadline => panic!("no answer on {port}: {other:?}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    assert!(answer.starts_with("HTTP/1."), "{answer}");

    let ports = rt.inspect(&t.task_id).await.unwrap().ports;
    assert_eq!(ports.len(), 2, "host-mode ports only: {ports:?}");
    assert_eq!(ports[0], host_port(80, u32::from(port)));
    assert_eq!(
        (ports[1].target_port, ports[1].publish_mode),
        (81, PublishMode::Host)
    );
    assert_ne!(ports[1].published_port, 0, "the engine's pick is reported");
    rt.remove(&t.task_id).await.unwrap();
}

/// A host port already in use fails `start` with an error naming the port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taken_host_port_fails_start_naming_it() {
    let Some((rt, image)) = runtime().await else {
        return;
    };
    let mut c = Cleanup::default();
    let svc = c.service();
    // The engine binds all addresses, so hold the port on all of them.
    let holder = TcpListener::bind("0.0.0.0:0").expect("bind");
    let port = holder.local_addr().unwrap().port();
    let mut t = task(image, &svc, IDLE);
    t.ports = vec![host_port(80, u32::from(port))];
    rt.prepare(&t).await.expect("prepare");
    let err = rt.start(&t.task_id).await.unwrap_err().to_string();
    assert!(
        err.contains(&format!("host-mode port {port}/tcp: ")),
        "error must name the port: {err}"
    );
    drop(holder);
    rt.remove(&t.task_id).await.unwrap();
}

/// A named volume keeps what one task wrote for the next and outlives both; an anonymous volume
/// goes with its task's container.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_volume_outlives_its_tasks() {
    let Some((rt, image)) = runtime().await else {
        return;
    };
    let mut c = Cleanup::default();
    let svc = c.service();
    let vol = c.volume();
    let data = format!("kept-{}", suffix());
    let volume_at = |t: &mut TaskConfig| {
        t.container.mounts.push(Mount {
            kind: MountKind::Volume,
            source: vol.clone(),
            target: "/data".into(),
            ..Mount::default()
        });
    };
    let mut writer = task(image, &svc, &format!("echo {data} > /data/f"));
    volume_at(&mut writer);
    writer.container.mounts.push(Mount {
        kind: MountKind::Volume,
        source: String::new(),
        target: "/scratch".into(),
        ..Mount::default()
    });
    run(&rt, &writer).await;
    assert!(rt.wait(&writer.task_id).await.unwrap().success());
    let cid = rt.inspect(&writer.task_id).await.unwrap().container_id;
    let anonymous = docker_lines(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{if eq .Destination \"/scratch\"}}{{.Name}}{{end}}{{end}}",
        &cid,
    ]);
    assert_eq!(anonymous.len(), 1, "{anonymous:?}");
    c.volumes.push(anonymous[0].clone());
    rt.remove(&writer.task_id).await.unwrap();
    assert!(
        docker(&["volume", "inspect", &vol]).status.success(),
        "the named volume survives its task"
    );
    assert!(
        !docker(&["volume", "inspect", &anonymous[0]])
            .status
            .success(),
        "the anonymous volume goes with its container"
    );

    let mut reader = task(image, &svc, IDLE);
    volume_at(&mut reader);
    run(&rt, &reader).await;
    let r = exec(&rt, &reader, "cat /data/f").await;
    assert_eq!(r.output.trim(), data);
    rt.remove(&reader.task_id).await.unwrap();
    assert!(docker(&["volume", "inspect", &vol]).status.success());
}

/// Read-only bind and tmpfs mounts refuse writes inside the task; a read-write bind writes
/// through to the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_mounts_are_enforced() {
    let Some((rt, image)) = runtime().await else {
        return;
    };
    let mut c = Cleanup::default();
    let svc = c.service();
    let ro = tempfile::tempdir().unwrap();
    let rw = tempfile::tempdir().unwrap();
    std::fs::write(ro.path().join("in"), "from-host").unwrap();
    let mut t = task(image, &svc, IDLE);
    let bind = |dir: &tempfile::TempDir, target: &str, read_only: bool| Mount {
        kind: MountKind::Bind,
        source: dir.path().display().to_string(),
        target: target.into(),
        read_only,
        ..Mount::default()
    };
    t.container.mounts = vec![
        bind(&ro, "/ro", true),
        bind(&rw, "/rw", false),
        Mount {
            kind: MountKind::Tmpfs,
            target: "/t".into(),
            read_only: true,
            ..Mount::default()
        },
    ];
    run(&rt, &t).await;
    assert_eq!(exec(&rt, &t, "cat /ro/in").await.output, "from-host");
    for path in ["/ro/x", "/t/x"] {
        let r = exec(&rt, &t, &format!("touch {path}")).await;
        assert_ne!(r.exit_code, 0, "{path} must be read-only: {r:?}");
        assert!(r.output.contains("Read-only file system"), "{r:?}");
    }
    let r = exec(&rt, &t, "echo through > /rw/out").await;
    assert_eq!(r.exit_code, 0, "{r:?}");
    assert_eq!(
        std::fs::read_to_string(rw.path().join("out")).unwrap(),
        "through\n"
    );
    // The container wrote as root; let the temp dir go.
    exec(&rt, &t, "rm -f /rw/out").await;
    rt.remove(&t.task_id).await.unwrap();
}

/// A bind mount of a missing host path, or a swarm network together with the network runtime
/// option, rejects the task in `prepare` in plain words, leaving no container and no network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_mounts_and_network_options_reject_before_creating() {
    let Some((rt, image)) = runtime().await else {
        return;
    };
    let mut c = Cleanup::default();
    let svc = c.service();
    let net = c.network("rej");
    let missing = format!("/tmp/swarm-no-such-dir-{}", suffix());
    let mut t = task(image, &svc, IDLE);
    attach(&mut t, &net);
    t.container.mounts.push(Mount {
        kind: MountKind::Bind,
        source: missing.clone(),
        target: "/x".into(),
        ..Mount::default()
    });
    let err = rt.prepare(&t).await.unwrap_err();
    assert!(err.is_rejection(), "{err}");
    assert!(
        err.to_string().contains(&format!(
            "invalid mount config for type \"bind\": bind source path does not exist: {missing}"
        )),
        "{err}"
    );
    let filter = format!("label=com.docker.swarm.service.name={svc}");
    assert!(docker_lines(&["ps", "-aq", "--filter", &filter]).is_empty());
    assert!(engine_networks(&net).is_empty());
    assert!(matches!(
        rt.inspect(&t.task_id).await,
        Err(RuntimeError::NotFound { .. })
    ));

    // The engine's own refusal (a relative bind source) is a rejection too.
    t.container.mounts[0].source = "relative/path".into();
    let err = rt.prepare(&t).await.unwrap_err();
    assert!(err.is_rejection(), "{err}");
    assert!(err.to_string().contains("invalid mount config"), "{err}");
    assert!(docker_lines(&["ps", "-aq", "--filter", &filter]).is_empty());
    assert!(engine_networks(&net).is_empty(), "released on failure");

    t.container.mounts.clear();
    t.container
        .labels
        .insert("swarm.runtime.docker.network".into(), "bridge".into());
    let err = rt.prepare(&t).await.unwrap_err();
    assert!(err.is_rejection(), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&net.spec.annotations.name) && msg.contains("swarm.runtime.docker.network"),
        "{msg}"
    );
    assert!(engine_networks(&net).is_empty());
}

/// Two adapters on one engine (two swarm daemons, or one restarted) preparing tasks of the same
/// swarm network at the same moment end up on one bridge, where each resolves the other's
/// service; the bridge outlives the first adapter's last task while the second still uses it.
/// Several networks race at once so that the engine's lack of name checks (API 1.41 creates two
/// networks of one name) is actually hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn adapters_sharing_an_engine_share_one_bridge() {
    let Some((rt1, image)) = runtime().await else {
        return;
    };
    let (rt2, _) = runtime().await.expect("second adapter");
    let mut c = Cleanup::default();
    let (s1, s2) = (c.service(), c.service());
    let nets: Vec<Arc<Network>> = (0..3).map(|_| c.network("shared")).collect();
    let mut pairs = Vec::new();
    for net in &nets {
        let mut a = task(image, &s1, IDLE);
        attach(&mut a, net);
        let mut b = task(image, &s2, IDLE);
        attach(&mut b, net);
        pairs.push((a, b));
    }
    let prepares = pairs
        .iter()
        .map(|(a, b)| async { tokio::join!(rt1.prepare(a), rt2.prepare(b)) });
    for (ra, rb) in futures_util::future::join_all(prepares).await {
        ra.expect("prepare on adapter 1");
        rb.expect("prepare on adapter 2");
    }
    for (net, (a, b)) in nets.iter().zip(&pairs) {
        assert_eq!(
            engine_networks(net).len(),
            1,
            "one bridge per swarm network"
        );
        rt1.start(&a.task_id).await.unwrap();
        rt2.start(&b.task_id).await.unwrap();
        let r = until_ok(&rt2, b, &format!("nslookup {s1}")).await;
        let got: Vec<IpAddr> = looked_up(&r.output)
            .into_iter()
            .filter(|x| !x.is_loopback())
            .collect();
        assert_eq!(got, vec![ipv4_on(&rt1, a, net).await], "{}", r.output);
    }
    for (net, (a, b)) in nets.iter().zip(&pairs) {
        rt1.remove(&a.task_id).await.unwrap();
        assert_eq!(engine_networks(net).len(), 1, "adapter 2 still uses it");
        rt2.remove(&b.task_id).await.unwrap();
        assert!(engine_networks(net).is_empty(), "gone with the last task");
    }
}
