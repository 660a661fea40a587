//! The docker runtime across hosts (issue 16): three `swarm-node run` daemons in network
//! namespaces (`multihost_support/`), all using this machine's one Docker Engine, all with
//! `--vip-dataplane`, so each links its containers to its own namespace (`mesh/plumb.rs`;
//! ARCHITECTURE.md, "Docker tasks across hosts"). No engine bridge joins the hosts: every
//! container has network mode `none` plus one link to its node, so whatever crosses hosts went
//! through the nodes' mesh streams.
//!
//! A WordPress-shaped stack, all busybox: `db` (httpd, network `back`) pinned to host2; `app`
//! (networks `back` and `front`) pinned to host0, serving what it fetches from `db` by name;
//! `web` (network `front`, publishing 8000 in ingress mode) pinned to host1, serving what it
//! fetches from `app` by name; `secret` (httpd, network `other`) pinned to host0 beside `app`.
//!
//! Properties, all read from one page fetched from host2's published port:
//! - a published port on host2 answers from the task pinned to host1 (`web[...]`);
//! - names across hosts: web (host1) reaches app (host0) and app reaches db (host2) by name,
//!   i.e. through their VIPs and the mesh (`db=db-ok`);
//! - isolation: app does not resolve `secret` (another network), and a connection from app to
//!   `secret`'s VIP is closed although `secret` runs on app's own node (`secret=none
//!   secretvip=none`), while the same page shows app's other lookups working.

mod multihost_support;

use std::time::Duration;

use multihost_support::{Cluster, Host, Runtime, IMAGE, TIMEOUT};

/// `name` from [`IMAGE`], pinned to `on`, on `nets`, running `sh -c script`.
async fn service(h0: &Host, name: &str, on: &str, nets: &[&str], extra: &[&str], script: &str) {
    let head = format!("service create --detach --name {name} --constraint node.hostname=={on}");
    let mut cmd: Vec<&str> = head.split(' ').collect();
    for n in nets {
        cmd.extend(["--network", n]);
    }
    cmd.extend_from_slice(extra);
    cmd.extend([IMAGE, "sh", "-c", script]);
    h0.ok(&cmd).await;
}

/// A loop that rewrites `/www/index.html` every half second with `page` (a shell word list),
/// serving it on `port`.
fn serve_page(page: &str, port: u16) -> String {
    format!(
        "mkdir -p /www; (while true; do echo \"{page}\" > /www/i.tmp; mv /www/i.tmp /www/index.html; \
         sleep 0.5; done) & exec httpd -f -p {port} -h /www"
    )
}

/// What `url` answers, or `none` (a shell substitution).
fn fetch(url: &str) -> String {
    format!("$(timeout 5 wget -qO- {url} 2>/dev/null || echo none)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_split_over_three_docker_hosts_talks_by_name_within_its_networks() {
    if !multihost_support::which("nft") || !multihost_support::which("nsenter") {
        multihost_support::skip("no nft or nsenter (Debian packages nftables, util-linux)");
        return;
    }
    let Some(mut c) = Cluster::new(3, Runtime::Docker) else {
        return;
    };
    for i in 0..3 {
        c.host_mut(i).add_arg("--vip-dataplane");
    }
    c.start_all().await;
    c.form(0, 2).await;
    let h0 = c.host(0);
    for n in ["front", "back", "other"] {
        h0.ok(&["network", "create", "-d", "overlay", n]).await;
    }
    for (name, on, net, page, port) in [
        ("db", "host2", "back", "db-ok", 3306),
        ("secret", "host0", "other", "secret-ok", 80),
    ] {
        service(h0, name, on, &[net], &[], &serve_page(page, port)).await;
    }
    let secret_vip = h0
        .wait_for(
            "secret's VIP",
            &[
                "network",
                "inspect",
                "--verbose",
                "other",
                "--format",
                "{{with index .Services \"secret\"}}{{.VIP}}{{end}}",
            ],
            |o| o.contains('.'),
        )
        .await;
    let app = format!(
        "app db={} secret={} secretvip={}",
        fetch("http://db:3306/"),
        fetch("http://secret/"),
        fetch(&format!("http://{secret_vip}/")),
    );
    service(
        h0,
        "app",
        "host0",
        &["back", "front"],
        &[],
        &serve_page(&app, 8080),
    )
    .await;
    let web = format!("web[{}]", fetch("http://app:8080/"));
    service(
        h0,
        "web",
        "host1",
        &["front"],
        &["--publish", "8000:80"],
        &serve_page(&web, 80),
    )
    .await;
    for s in ["db", "secret", "app", "web"] {
        h0.wait_replicas(s, "1/1").await;
    }
    for (s, on) in [
        ("db", "host2"),
        ("secret", "host0"),
        ("app", "host0"),
        ("web", "host1"),
    ] {
        let tasks = h0.running_tasks(s).await;
        assert!(tasks.iter().all(|(_, n)| n == on), "{s} runs on {tasks:?}");
    }

    let want = "web[app db=db-ok secret=none secretvip=none]";
    let h2 = c.host(2);
    let url = format!("http://{}:8000/", h2.ip());
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        let out = h2
            .exec("timeout", &["5", "/bin/busybox", "wget", "-qO-", &url])
            .await;
        last = format!("{}{}", out.stdout.trim(), out.stderr.trim());
        if last == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        last,
        want,
        "host2:8000 never served the whole stack\n{}",
        c.logs()
    );

    // No engine network stands for a swarm network (none carries one of their ids): the
    // containers reach each other only through their nodes.
    for n in ["front", "back", "other"] {
        let id = h0
            .ok(&["network", "inspect", n, "--format", "{{.Id}}"])
            .await;
        let label = format!("label=com.docker.swarm.network.id={id}");
        let out = std::process::Command::new(multihost_support::docker_cli().unwrap())
            .args([
                "-H",
                multihost_support::ENGINE,
                "network",
                "ls",
                "-q",
                "--filter",
                &label,
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let found = String::from_utf8_lossy(&out.stdout);
        assert!(
            found.trim().is_empty(),
            "an engine network for {n}: {found}"
        );
    }
}
