//! The VIP data plane (root, Linux; [`super::MeshConfig::vip_dataplane`]): connections from this
//! node to a service's virtual IP reach one of its running tasks, wherever it runs.
//!
//! - Kernel side, in the daemon's network namespace: each VIP to serve is added to `lo` (label
//!   `lo:swvip`, so the kernel routes connections to it locally) and one nftables table,
//!   `ip swarm_vip`, redirects TCP to those VIPs (`nat` hook `output`: connections the node's own
//!   processes open, which is where process-runtime tasks live) to the proxy's port on
//!   127.0.0.1. The table is replaced whole (`nft -f`, atomic) when the set changes.
//! - Which VIPs: those of every service on a network that a task running on this node is
//!   attached to (a node with no task on a network does not reach its services).
//! - Proxy: one listener on 127.0.0.1; for each connection it reads the original destination
//!   (`SO_ORIGINAL_DST`), finds the service owning that VIP and connects to one of its running
//!   tasks on the same port, round robin per VIP, each at most once: a task on this node directly,
//!   a task on another node through a `mesh.v1.connect` stream naming the service (the receiving
//!   node accepts only a task that, in its own view, is a running task of that service on
//!   itself). Then bytes are copied both ways as for ingress ports.
//! - Cleanup: the rules and addresses are removed when the mesh stops, and any left by a crashed
//!   daemon are removed at start (so one daemon per network namespace may use it).
//!
//! - UDP (`vip_udp.rs`): the same table hands datagrams to the VIPs to a transparent socket
//!   (`tproxy`), which relays each flow to a task the same way.
//!
//! - Containers linked to the node (`plumb.rs`, the docker runtime) reach the proxy through
//!   their own nftables table; the proxy closes a connection from one to a VIP of a service on
//!   none of its networks.
//!
//! Not done: IPv6 VIPs.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use swarm_core::Id;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;

use super::names::{NameView, NamedTask};
use super::view::Backend;
use super::{tcp, PortKey, Shared};
use swarm_core::objects::service::Protocol;

/// The nftables table holding the redirect.
pub const NFT_TABLE: &str = "swarm_vip";
/// The label of the VIPs added to `lo`.
pub const LO_LABEL: &str = "lo:swvip";

/// Why the kernel side could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum VipError {
    /// A command could not be started.
    #[error("cannot run {cmd}: {source}")]
    Spawn {
        /// The program.
        cmd: &'static str,
        /// Why.
        source: io::Error,
    },
    /// A command failed.
    #[error("{cmd} failed: {stderr}")]
    Failed {
        /// The program.
        cmd: &'static str,
        /// What it printed on standard error.
        stderr: String,
    },
}

pub(super) async fn run(
    cmd: &'static str,
    args: &[&str],
    input: Option<&str>,
) -> Result<(), VipError> {
    let mut c = Command::new(cmd);
    c.args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c
        .spawn()
        .map_err(|source| VipError::Spawn { cmd, source })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .await
            .map_err(|source| VipError::Spawn { cmd, source })?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|source| VipError::Spawn { cmd, source })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(VipError::Failed {
            cmd,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// The nftables script that makes the table redirect TCP to `vips` to `port` and hand UDP to
/// them to the transparent socket on `udp_port` (`vip_udp.rs`; 0: none); the table emptied
/// first; no VIP: no table.
pub fn nft_script(vips: &BTreeSet<Ipv4Addr>, port: u16, udp_port: u16) -> String {
    let mut s = format!("table ip {NFT_TABLE}\ndelete table ip {NFT_TABLE}\n");
    if !vips.is_empty() {
        let set: Vec<String> = vips.iter().map(|v| v.to_string()).collect();
        let set = set.join(", ");
        s.push_str(&format!(
            "table ip {NFT_TABLE} {{\n  chain output {{\n    type nat hook output priority -100; policy accept;\n    ip daddr {{ {set} }} meta l4proto tcp redirect to :{port}\n  }}\n"
        ));
        if udp_port != 0 {
            s.push_str(&format!(
                "  chain datagrams {{\n    type filter hook prerouting priority mangle; policy accept;\n    ip daddr {{ {set} }} meta l4proto udp ct direction original tproxy to 127.0.0.1:{udp_port}\n  }}\n"
            ));
        }
        s.push_str("}\n");
    }
    s
}

/// Removes the table and every `lo:swvip` address (this node's, or a crashed daemon's).
pub async fn cleanup() -> Result<(), VipError> {
    let r1 = run(
        "nft",
        &["-f", "-"],
        Some(&nft_script(&BTreeSet::new(), 0, 0)),
    )
    .await;
    let r2 = run(
        "ip",
        &["addr", "flush", "dev", "lo", "label", LO_LABEL],
        None,
    )
    .await;
    r1.and(r2)
}

/// The networks that tasks running on `node` are attached to (every task's on a single host).
fn local_networks(view: &NameView, node: Option<Id>) -> Vec<Id> {
    let mut out: Vec<Id> = view
        .services
        .values()
        .filter(|s| {
            s.tasks
                .iter()
                .any(|t| node.is_none() || t.node.is_none() || t.node == node)
        })
        .flat_map(|s| s.networks.iter().copied())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Runs the data plane until the mesh stops, then removes what it installed.
pub(crate) async fn serve(shared: Arc<Shared>) {
    if let Err(e) = cleanup().await {
        tracing::debug!(error = %e, "vip data plane: nothing stale to remove");
    }
    let listener = match tcp::bind_tcp(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "vip data plane: cannot listen on 127.0.0.1; VIPs are not served");
            return;
        }
    };
    let port = match listener.local_addr() {
        Ok(a) => a.port(),
        Err(e) => {
            tracing::warn!(error = %e, "vip data plane: no local address; VIPs are not served");
            return;
        }
    };
    shared
        .vip_port
        .store(port, std::sync::atomic::Ordering::Relaxed);
    super::plumb::cleanup_tables().await;
    let accept = tokio::spawn(accept_loop(listener, shared.clone()));
    let (udp, udp_port) = match super::vip_udp::bind_transparent()
        .and_then(|s| Ok((s.local_addr()?.port(), s)))
    {
        Ok((p, s)) => (
            Some(tokio::spawn(super::vip_udp::serve(s, shared.clone()))),
            p,
        ),
        Err(e) => {
            tracing::warn!(error = %e, "vip data plane: no transparent UDP socket; UDP to VIPs is not served");
            (None, 0)
        }
    };
    let mut stop = shared.stop.subscribe();
    let mut names = shared.names.subscribe();
    let mut installed: BTreeSet<Ipv4Addr> = BTreeSet::new();
    loop {
        let view = names.borrow_and_update().clone();
        let want: BTreeSet<Ipv4Addr> = view
            .vips_on(&local_networks(&view, shared.node))
            .into_iter()
            .filter_map(|ip| match ip {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            })
            .collect();
        if want != installed {
            match install(&installed, &want, port, udp_port).await {
                Ok(()) => {
                    tracing::info!(vips = want.len(), port, "vip data plane: rules updated");
                    installed = want;
                }
                Err(e) => tracing::warn!(error = %e, "vip data plane: cannot install the rules"),
            }
        }
        tokio::select! {
            r = names.changed() => if r.is_err() { break },
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    accept.abort();
    let _ = accept.await;
    if let Some(u) = udp {
        u.abort();
        let _ = u.await;
    }
    if let Err(e) = cleanup().await {
        tracing::warn!(error = %e, "vip data plane: cannot remove the rules");
    }
    super::plumb::cleanup_tables().await;
}

/// Adds the new VIPs to `lo`, replaces the table, removes the VIPs no longer served.
async fn install(
    old: &BTreeSet<Ipv4Addr>,
    new: &BTreeSet<Ipv4Addr>,
    port: u16,
    udp_port: u16,
) -> Result<(), VipError> {
    for v in new.difference(old) {
        let a = format!("{v}/32");
        // Already there (a restart racing its cleanup): fine.
        let _ = run(
            "ip",
            &["addr", "add", &a, "dev", "lo", "label", LO_LABEL],
            None,
        )
        .await;
    }
    run("nft", &["-f", "-"], Some(&nft_script(new, port, udp_port))).await?;
    for v in old.difference(new) {
        let a = format!("{v}/32");
        let _ = run("ip", &["addr", "del", &a, "dev", "lo"], None).await;
    }
    Ok(())
}

impl super::RoutingMesh {
    /// Where `task`, a running task of `service` on this node, is reached on `port`, for a
    /// VIP stream from another node; else why not.
    pub fn local_service_backend(
        &self,
        service: &Id,
        task: &Id,
        port: u16,
    ) -> Result<SocketAddr, String> {
        let names = self.shared.names.borrow().clone();
        let s = names
            .services
            .get(service)
            .ok_or_else(|| format!("service {service} is not known here"))?;
        let t = s
            .tasks
            .iter()
            .find(|t| t.task == *task)
            .ok_or_else(|| format!("task {task} is no running task of service {service}"))?;
        if self.shared.node.is_some() && t.node.is_some() && t.node != self.shared.node {
            return Err(format!("task {task} does not run on this node"));
        }
        Ok(SocketAddr::new(t.addr, port))
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let turns: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    loop {
        match listener.accept().await {
            Ok((client, _)) => {
                let _ = client.set_nodelay(true);
                tokio::spawn(proxy(client, shared.clone(), turns.clone()));
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
}

/// The backend a VIP connection on `port` may go to: `t` as the mesh names it.
pub(super) fn backend(view: &NameView, t: &NamedTask, port: u16) -> Backend {
    let node = t.node.and_then(|n| view.nodes.get(&n));
    Backend {
        task: t.task,
        node: t.node,
        addr: SocketAddr::new(t.addr, port),
        node_addr: node.and_then(|n| n.addr),
        node_manager: node.is_some_and(|n| n.manager),
    }
}

async fn proxy(client: TcpStream, shared: Arc<Shared>, turns: Arc<Mutex<HashMap<IpAddr, usize>>>) {
    let dst = match rustix::net::sockopt::ip_original_dst(&client) {
        Ok(d) => d,
        Err(e) => {
            tracing::debug!(error = %e, "vip data plane: no original destination; closing");
            return;
        }
    };
    let vip = IpAddr::V4(*dst.ip());
    let view = shared.names.borrow().clone();
    let Some((service, s)) = view.service_by_vip(vip) else {
        tracing::debug!(%vip, "vip data plane: no service has this VIP; closing");
        return;
    };
    // A container linked to this node (`plumb.rs`) reaches only its networks' services.
    if let Some(scope) = client
        .peer_addr()
        .ok()
        .and_then(|p| super::plumb::scope_of(&shared, p.ip()))
    {
        if !s.networks.iter().any(|n| scope.contains(n)) {
            tracing::debug!(%vip, "vip data plane: the client's networks do not include this service's; closing");
            return;
        }
    }
    let service = *service;
    let n = s.tasks.len();
    if n == 0 {
        return;
    }
    let first = {
        let mut t = turns.lock().unwrap_or_else(|e| e.into_inner());
        let c = t.entry(vip).or_insert(0);
        *c = c.wrapping_add(1);
        *c % n
    };
    let key = PortKey {
        port: dst.port(),
        protocol: Protocol::Tcp,
    };
    let timeout = shared.config.connect_timeout;
    let buffer = shared.config.copy_buffer;
    let mut stop = shared.stop.subscribe();
    for i in 0..n {
        let b = backend(&view, &s.tasks[(first + i) % n], dst.port());
        if !super::is_local(shared.node, &b) {
            let Some(peers) = &shared.peers else { continue };
            match peers.open_service(service, key, &b, timeout).await {
                Ok((send, recv, _slot)) => {
                    tokio::select! {
                        _ = tcp::pipe(client, send, recv, buffer) => {}
                        _ = stop.wait_for(|s| *s) => {}
                    }
                    return;
                }
                Err(e) => {
                    tracing::debug!(%vip, task = %b.task, error = %e, "vip data plane: remote task unusable; trying the next");
                    continue;
                }
            }
        }
        if let Ok(Ok(mut server)) = tokio::time::timeout(timeout, TcpStream::connect(b.addr)).await
        {
            let _ = server.set_nodelay(true);
            let mut client = client;
            tokio::select! {
                _ = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut server, buffer, buffer) => {}
                _ = stop.wait_for(|s| *s) => {}
            }
            return;
        }
    }
    tracing::debug!(%vip, "vip data plane: no task accepted the connection; closing it");
}

#[cfg(test)]
mod tests {
    use super::super::names::tests::sample;
    use super::*;

    #[test]
    fn the_script_replaces_the_table_and_an_empty_set_removes_it() {
        let vips: BTreeSet<Ipv4Addr> = ["10.0.1.2".parse().unwrap(), "10.0.1.5".parse().unwrap()]
            .into_iter()
            .collect();
        let s = nft_script(&vips, 4000, 4001);
        assert!(s.starts_with("table ip swarm_vip\ndelete table ip swarm_vip\n"));
        assert!(s.contains("ip daddr { 10.0.1.2, 10.0.1.5 } meta l4proto tcp redirect to :4000"));
        assert!(s.contains("ip daddr { 10.0.1.2, 10.0.1.5 } meta l4proto udp ct direction original tproxy to 127.0.0.1:4001"));
        assert!(!nft_script(&vips, 4000, 0).contains("udp"));
        assert_eq!(
            nft_script(&BTreeSet::new(), 4000, 4001),
            "table ip swarm_vip\ndelete table ip swarm_vip\n"
        );
    }

    #[test]
    fn only_networks_with_a_local_task_are_served() {
        let v = sample();
        let here = Some(Id::from_u128(50));
        // Every sample task runs on node 50: `web` (front, back), `rr` and `host` (front).
        assert_eq!(
            local_networks(&v, here),
            vec![Id::from_u128(1), Id::from_u128(2)]
        );
        assert_eq!(local_networks(&v, Some(Id::from_u128(51))), vec![]);
    }
}
