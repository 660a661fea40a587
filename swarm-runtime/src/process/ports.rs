//! Host-mode published ports. Process tasks share the node's network namespace and there is no
//! NAT, so a host-mode port can only be the task's target port itself; `prepare` checks that the
//! port is free on the node (and not published by another task of this runtime) before the task
//! is accepted. Ingress ports are the routing mesh's business and need nothing here.

use std::collections::HashMap;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};

use swarm_core::objects::service::{PortConfig, Protocol, PublishMode};
use swarm_core::Id;

use crate::error::RuntimeError;

/// The host-mode ports of `ports`, with the published port filled in (it is the target port).
/// Refuses a published port that differs from its target: there is no NAT to map it.
pub(super) fn host_ports(ports: &[PortConfig]) -> Result<Vec<PortConfig>, RuntimeError> {
    let mut out = Vec::new();
    for p in ports.iter().filter(|p| p.publish_mode == PublishMode::Host) {
        if p.target_port == 0 || p.target_port > u32::from(u16::MAX) {
            return Err(RuntimeError::invalid(format!(
                "host-mode port has target port {}, which is not a valid port number (1-65535)",
                p.target_port
            )));
        }
        if p.published_port != 0 && p.published_port != p.target_port {
            return Err(RuntimeError::invalid(format!(
                "the process runtime runs tasks on the node's network: host-mode port {} \
                 cannot be mapped to target port {}; publish the target port itself",
                p.published_port, p.target_port
            )));
        }
        out.push(PortConfig {
            published_port: p.target_port,
            ..p.clone()
        });
    }
    Ok(out)
}

/// Host ports published by this runtime's tasks, from `prepare` until the task exits.
#[derive(Debug, Default)]
pub(super) struct PortTable {
    held: HashMap<(Protocol, u32), Id>,
}

impl PortTable {
    /// Holds `ports` for `task` if each is free: not held by another task here, and bindable on
    /// 0.0.0.0 right now. On error nothing stays held for `task`.
    pub(super) fn reserve(&mut self, task: &Id, ports: &[PortConfig]) -> Result<(), RuntimeError> {
        for p in ports {
            let key = (p.protocol, p.published_port);
            let in_use = |why: String| {
                RuntimeError::invalid(format!(
                    "host-mode port {}/{} is already in use on this node: {why}",
                    p.published_port,
                    p.protocol.as_str()
                ))
            };
            let result = match self.held.get(&key) {
                Some(other) => Err(in_use(format!("task {other} publishes it"))),
                None => check_free(p.protocol, p.published_port).map_err(|e| in_use(e.to_string())),
            };
            if let Err(e) = result {
                self.release(task);
                return Err(e);
            }
            self.held.insert(key, *task);
        }
        Ok(())
    }

    /// Holds, for `task`, the target port of each of its ingress ports: on the node's network the
    /// task's program listens on that port itself, so two tasks of this runtime publishing the same
    /// target would collide (the second one's program failing to bind). Refused here instead, with
    /// the reason and the ways out. Only this runtime's own tasks are checked: the program may
    /// listen on one address only, so a bind test on 0.0.0.0 would say nothing reliable. On error
    /// the caller releases everything `task` holds.
    pub(super) fn reserve_ingress_targets(
        &mut self,
        task: &Id,
        ports: &[PortConfig],
    ) -> Result<(), RuntimeError> {
        for p in ports
            .iter()
            .filter(|p| p.publish_mode == PublishMode::Ingress)
        {
            let key = (p.protocol, p.target_port);
            match self.held.get(&key) {
                Some(other) if other != task => {
                    return Err(RuntimeError::invalid(format!(
                        "target port {}/{} is already used by task {other} on this node: the \
                         process runtime runs tasks on the node's network, so one task per node \
                         can listen on a port; run one replica per node (--replicas-max-per-node \
                         1, or global mode), update stop-first, or use the docker runtime",
                        p.target_port,
                        p.protocol.as_str()
                    )));
                }
                _ => {
                    self.held.insert(key, *task);
                }
            }
        }
        Ok(())
    }

    /// Frees every port `task` holds (idempotent).
    pub(super) fn release(&mut self, task: &Id) {
        self.held.retain(|_, t| t != task);
    }
}

/// Binds the port on every IPv4 address and lets it go at once. SCTP ports are not checked (the
/// standard library has no SCTP sockets, and a kernel without SCTP has nothing to conflict with).
fn check_free(protocol: Protocol, port: u32) -> std::io::Result<()> {
    let port = u16::try_from(port).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let addr = (Ipv4Addr::UNSPECIFIED, port);
    match protocol {
        Protocol::Tcp => TcpListener::bind(addr).map(drop),
        Protocol::Udp => UdpSocket::bind(addr).map(drop),
        Protocol::Sctp => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(target: u32, published: u32, mode: PublishMode) -> PortConfig {
        PortConfig {
            target_port: target,
            published_port: published,
            publish_mode: mode,
            ..PortConfig::default()
        }
    }

    #[test]
    fn host_ports_are_their_target_ports() {
        let got = host_ports(&[
            port(80, 0, PublishMode::Host),
            port(81, 81, PublishMode::Host),
            port(82, 8082, PublishMode::Ingress),
        ])
        .unwrap();
        assert_eq!(
            got,
            vec![
                port(80, 80, PublishMode::Host),
                port(81, 81, PublishMode::Host)
            ]
        );
        let e = host_ports(&[port(80, 8080, PublishMode::Host)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid task spec: the process runtime runs tasks on the node's network: host-mode \
             port 8080 cannot be mapped to target port 80; publish the target port itself"
        );
        assert!(host_ports(&[port(0, 0, PublishMode::Host)]).is_err());
    }

    #[test]
    fn an_ingress_target_port_is_held_by_one_task_at_a_time() {
        let ingress = port(8081, 8080, PublishMode::Ingress);
        let (a, b) = (Id::from_u128(1), Id::from_u128(2));
        let mut table = PortTable::default();
        table
            .reserve_ingress_targets(&a, std::slice::from_ref(&ingress))
            .unwrap();
        let e = table
            .reserve_ingress_targets(&b, std::slice::from_ref(&ingress))
            .unwrap_err();
        assert!(e.is_rejection());
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("target port 8081/tcp is already used by task {a}")),
            "{msg}"
        );
        assert!(msg.contains("--replicas-max-per-node 1"), "{msg}");
        table.release(&a);
        table.reserve_ingress_targets(&b, &[ingress]).unwrap();
    }

    #[test]
    fn a_port_is_held_by_one_task_at_a_time() {
        let free = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let p = port(u32::from(free), u32::from(free), PublishMode::Host);
        let (a, b) = (Id::from_u128(1), Id::from_u128(2));
        let mut table = PortTable::default();
        table.reserve(&a, std::slice::from_ref(&p)).unwrap();
        let e = table.reserve(&b, std::slice::from_ref(&p)).unwrap_err();
        assert!(e.is_rejection());
        assert!(
            e.to_string().contains(&format!("task {a} publishes it")),
            "{e}"
        );
        table.release(&a);
        table.reserve(&b, &[p]).unwrap();
    }
}
