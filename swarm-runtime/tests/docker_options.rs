//! The docker runtime applies the container options of a service's ContainerSpec: seen from
//! inside the running container (hostname, extra hosts, resolver settings, sysctls, ulimits,
//! capabilities, OOM score, groups, read-only root filesystem, no-new-privileges), not only in
//! the create body. The engine is the judge: each check reads what the kernel or the files in
//! the container say. Skipped loudly without a Docker socket.

mod support;

use std::time::Duration;

use swarm_core::objects::service::{ContainerSpec, DnsConfig, Privileges, Ulimit};
use swarm_runtime::Runtime;

/// Bit of a capability in `/proc/self/status`'s `CapEff`.
const CAP_MKNOD: u32 = 27;
const CAP_NET_ADMIN: u32 = 12;

/// A shell command run in the container and what its output must satisfy.
type Check = (&'static str, Box<dyn Fn(&str) -> bool>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_options_apply_inside_the_container() {
    let Some((rt, c)) = support::docker_image::idle_task(
        "options",
        ContainerSpec {
            hostname: "opt-host".into(),
            hosts: vec!["10.9.8.7 fidelity.example".into()],
            dns_config: Some(DnsConfig {
                nameservers: vec!["10.0.0.53".into()],
                search: vec!["fidelity.example".into()],
                options: vec!["ndots:3".into()],
            }),
            sysctls: [("net.core.somaxconn".to_string(), "1234".to_string())].into(),
            ulimits: vec![Ulimit {
                name: "nofile".into(),
                soft: 777,
                hard: 888,
            }],
            capability_add: vec!["CAP_NET_ADMIN".into()],
            capability_drop: vec!["CAP_MKNOD".into()],
            oom_score_adj: 123,
            groups: vec!["4321".into()],
            read_only: true,
            privileges: Some(Privileges {
                no_new_privileges: true,
                ..Privileges::default()
            }),
            ..ContainerSpec::default()
        },
    )
    .await
    else {
        return;
    };
    let run = |script: &str| {
        let cmd = vec!["sh".to_string(), "-c".to_string(), script.to_string()];
        let rt = &rt;
        let id = c.task_id;
        async move {
            rt.exec(&id, &cmd, Duration::from_secs(20))
                .await
                .expect("exec")
                .output
        }
    };
    let checks: Vec<Check> = vec![
        ("hostname", Box::new(|o| o.trim() == "opt-host")),
        (
            "grep fidelity.example /etc/hosts",
            Box::new(|o| o.contains("10.9.8.7")),
        ),
        (
            "cat /etc/resolv.conf",
            Box::new(|o| {
                o.contains("nameserver 10.0.0.53")
                    && o.contains("search fidelity.example")
                    && o.contains("ndots:3")
            }),
        ),
        (
            "cat /proc/sys/net/core/somaxconn",
            Box::new(|o| o.trim() == "1234"),
        ),
        (
            "ulimit -n; ulimit -Hn",
            Box::new(|o| o.split_whitespace().eq(["777", "888"])),
        ),
        (
            "cat /proc/self/oom_score_adj",
            Box::new(|o| o.trim() == "123"),
        ),
        (
            "id -G",
            Box::new(|o| o.split_whitespace().any(|g| g == "4321")),
        ),
        (
            "touch /written 2>/dev/null; echo rc=$?",
            Box::new(|o| o.trim() == "rc=1"),
        ),
        (
            "grep NoNewPrivs /proc/self/status",
            Box::new(|o| o.split_whitespace().eq(["NoNewPrivs:", "1"])),
        ),
        (
            "grep CapEff /proc/self/status",
            Box::new(|o| {
                let caps = o
                    .split_whitespace()
                    .nth(1)
                    .and_then(|h| u64::from_str_radix(h, 16).ok())
                    .unwrap_or(0);
                caps & (1 << CAP_NET_ADMIN) != 0 && caps & (1 << CAP_MKNOD) == 0
            }),
        ),
    ];
    let mut failed = Vec::new();
    for (script, ok) in &checks {
        let out = run(script).await;
        if !ok(&out) {
            failed.push(format!("{script}: {out:?}"));
        }
    }
    rt.remove(&c.task_id).await.expect("remove");
    assert!(failed.is_empty(), "{failed:#?}");
}
