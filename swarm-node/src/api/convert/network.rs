//! Swarm-scoped networks (`NetworkCreateRequest` in, `NetworkInspect`/`NetworkSummary` out).

use std::collections::{BTreeMap, HashMap};

use bollard::models;
use swarm_core::objects::network::{Ipam, IpamConfig, NetworkSpec};
use swarm_core::objects::secret::Driver;
use swarm_core::{Annotations, Id, Network, Node, Store, TaskState};

use super::{labels_in, labels_out, ts, Result};
use crate::api::error::ApiError;

/// `POST /networks/create` body to a spec. Only the swarm scope exists here.
pub(crate) fn network_spec_in(r: models::NetworkCreateRequest) -> Result<NetworkSpec> {
    if let Some(scope) = r.scope.as_deref() {
        if !scope.is_empty() && scope != "swarm" {
            return Err(ApiError::bad_request(format!(
                "network scope {scope:?} is not supported: only \"swarm\" networks exist on this daemon"
            )));
        }
    }
    if r.config_only == Some(true) || r.config_from.is_some() {
        return Err(ApiError::bad_request(
            "config-only networks are not supported",
        ));
    }
    let ipam = r.ipam.unwrap_or_default();
    Ok(NetworkSpec {
        annotations: Annotations {
            name: r.name,
            labels: labels_in(r.labels),
        },
        driver: Driver {
            name: r.driver.unwrap_or_default(),
            options: labels_in(r.options),
        },
        ipv6_enabled: r.enable_ipv6.unwrap_or(false),
        internal: r.internal.unwrap_or(false),
        attachable: r.attachable.unwrap_or(false),
        ingress: r.ingress.unwrap_or(false),
        ipam: Ipam {
            driver: ipam.driver.unwrap_or_default(),
            options: labels_in(ipam.options),
            configs: ipam
                .config
                .unwrap_or_default()
                .into_iter()
                .map(|c| IpamConfig {
                    subnet: c.subnet.unwrap_or_default(),
                    range: c.ip_range.unwrap_or_default(),
                    gateway: c.gateway.unwrap_or_default(),
                })
                .collect(),
        },
    })
}

fn ipam_out(i: &Ipam) -> models::Ipam {
    models::Ipam {
        driver: Some(if i.driver.is_empty() {
            "default".to_string()
        } else {
            i.driver.clone()
        }),
        options: labels_out(&i.options),
        config: Some(
            i.configs
                .iter()
                .map(|c| models::IpamConfig {
                    subnet: Some(c.subnet.clone()),
                    ip_range: (!c.range.is_empty()).then(|| c.range.clone()),
                    gateway: (!c.gateway.is_empty()).then(|| c.gateway.clone()),
                    auxiliary_addresses: None,
                })
                .collect(),
        ),
    }
}

/// A network as `docker network inspect` shows it on a manager: [`network_out`] plus `Peers`
/// (the nodes running a task attached to it, by hostname and address) and, with `verbose`,
/// `Services` (each attached service's VIP and tasks with their addresses on this network), as
/// Docker reports them from its overlay. Tasks count when their observed state is running.
pub(crate) fn network_inspect(n: &Network, store: &Store, verbose: bool) -> models::NetworkInspect {
    let mut out = network_out(n);
    let mut peers: BTreeMap<Id, models::PeerInfo> = BTreeMap::new();
    let mut services: HashMap<String, serde_json::Value> = HashMap::new();
    for svc in store.services_by_network(n.id.as_str()) {
        let mut tasks = Vec::new();
        for t in store.tasks_by_service(&svc.id) {
            if t.status.state != TaskState::Running {
                continue;
            }
            let Some(node) = t.node_id.and_then(|id| store.get::<Node>(&id)) else {
                continue;
            };
            peers.entry(node.id).or_insert_with(|| models::PeerInfo {
                name: Some(node_name(node)),
                ip: Some(node.status.addr.clone()),
            });
            // A task whose runtime reported no swarm-network address shares its node's network
            // (the process runtime): it is reached at its node's address, as the resolver says.
            let ip = t
                .status
                .addresses
                .iter()
                .find(|a| a.network_id == Some(n.id))
                .map(|a| a.addr.to_string())
                .or_else(|| {
                    let shared = !t.status.addresses.is_empty()
                        && t.status.addresses.iter().all(|a| a.network_id.is_none());
                    shared.then(|| node.status.addr.clone())
                })
                .unwrap_or_default();
            tasks.push(models::NetworkTaskInfo {
                name: Some(format!("{}.{}.{}", svc.spec.annotations.name, t.slot, t.id)),
                endpoint_id: Some(String::new()),
                endpoint_ip: Some(ip),
                info: Some(HashMap::from([(
                    "Host IP".to_string(),
                    node.status.addr.clone(),
                )])),
            });
        }
        if !verbose {
            continue;
        }
        let vip = svc
            .endpoint
            .virtual_ips
            .iter()
            .find(|v| v.network_id == n.id)
            .map(|v| v.addr.split('/').next().unwrap_or_default().to_string())
            .unwrap_or_default();
        let info = models::ServiceInfo {
            vip: Some(vip),
            ports: Some(
                svc.endpoint
                    .ports
                    .iter()
                    .map(|p| format!("Target: {}, Publish: {}", p.target_port, p.published_port))
                    .collect(),
            ),
            local_lb_index: Some(0),
            tasks: Some(tasks),
        };
        if let Ok(v) = serde_json::to_value(info) {
            services.insert(svc.spec.annotations.name.clone(), v);
        }
    }
    if !peers.is_empty() {
        out.peers = Some(peers.into_values().collect());
    }
    if verbose {
        out.services = Some(services);
    }
    out
}

/// A peer's name as Docker shows it: the node's hostname, else its id.
fn node_name(node: &Node) -> String {
    match node.hostname() {
        "" => node.id.to_string(),
        host => host.to_string(),
    }
}

/// A network as `docker network inspect` shows it.
pub(crate) fn network_out(n: &Network) -> models::NetworkInspect {
    let s = &n.spec;
    models::NetworkInspect {
        name: Some(s.annotations.name.clone()),
        id: Some(n.id.to_string()),
        created: ts(n.meta.created_at),
        scope: Some("swarm".into()),
        driver: Some(s.driver.name.clone()),
        // `EnableIPv4` is API 1.47; Docker 1.44 (and 20.10) do not write it.
        enable_ipv4: None,
        enable_ipv6: Some(s.ipv6_enabled),
        // As allocated (pools with gateways, or the subnet from the default pool), as Docker shows.
        ipam: Some(ipam_out(n.ipam.as_ref().unwrap_or(&s.ipam))),
        internal: Some(s.internal),
        attachable: Some(s.attachable),
        ingress: Some(s.ingress),
        config_from: Some(models::ConfigReference {
            network: Some(String::new()),
        }),
        config_only: Some(false),
        options: labels_out(&s.driver.options),
        labels: labels_out(&s.annotations.labels),
        peers: None,
        containers: Some(HashMap::new()),
        services: None,
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use swarm_core::objects::service::{NetworkAttachmentConfig, VirtualIp};
    use swarm_core::objects::task::TaskAddress;
    use swarm_core::testing::{id, node, service, task};
    use swarm_core::{Batch, Meta, StoreAction, Timestamp};

    use super::*;

    /// Peers are the nodes running a task of an attached service; verbose adds each service's VIP
    /// and its running tasks with their address on this network and their node's address.
    #[test]
    fn inspect_shows_peers_and_verbose_services_from_the_store() {
        let net = Network {
            id: id(900),
            meta: Meta::default(),
            spec: NetworkSpec::default(),
            ipam: None,
        };
        let mut svc = service(10, "web", 2);
        svc.spec.task.networks = vec![NetworkAttachmentConfig {
            target: net.id.to_string(),
            aliases: vec![],
            driver_opts: Default::default(),
        }];
        svc.endpoint.virtual_ips = vec![VirtualIp {
            network_id: net.id,
            addr: "10.0.0.2/24".into(),
        }];
        let mut running = task(20, &svc, 1);
        running.node_id = Some(id(1));
        running.status.state = TaskState::Running;
        running.status.addresses = vec![TaskAddress {
            network_id: Some(net.id),
            addr: "10.0.0.7".parse().unwrap(),
        }];
        let mut pending = task(21, &svc, 2);
        pending.node_id = Some(id(2));
        let mut store = Store::new();
        store
            .apply(Batch {
                index: 1,
                timestamp: Timestamp::default(),
                actions: vec![
                    StoreAction::Create(net.clone().into()),
                    StoreAction::Create(node(1).into()),
                    StoreAction::Create(node(2).into()),
                    StoreAction::Create(svc.into()),
                    StoreAction::Create(running.into()),
                    StoreAction::Create(pending.into()),
                ],
            })
            .unwrap();
        let net = Arc::clone(store.get::<Network>(&net.id).unwrap());
        let plain = serde_json::to_value(network_inspect(&net, &store, false)).unwrap();
        assert_eq!(
            plain["Peers"],
            serde_json::json!([{"Name": "node-1", "IP": "127.0.0.2"}])
        );
        assert!(plain.get("Services").is_none(), "{plain}");
        let verbose = serde_json::to_value(network_inspect(&net, &store, true)).unwrap();
        let web = &verbose["Services"]["web"];
        assert_eq!(web["VIP"], "10.0.0.2");
        assert_eq!(web["Tasks"].as_array().map(Vec::len), Some(1), "{web}");
        assert_eq!(web["Tasks"][0]["EndpointIP"], "10.0.0.7");
        assert_eq!(web["Tasks"][0]["Info"]["Host IP"], "127.0.0.2");

        // A process-runtime task (its address on the node's own network): its node's address.
        let mut t = Arc::clone(store.get::<swarm_core::Task>(&id(20)).unwrap());
        Arc::make_mut(&mut t).status.addresses = vec![TaskAddress {
            network_id: None,
            addr: "127.0.0.1".parse().unwrap(),
        }];
        store
            .apply(Batch {
                index: 2,
                timestamp: Timestamp::default(),
                actions: vec![StoreAction::Update((*t).clone().into())],
            })
            .unwrap();
        let verbose = serde_json::to_value(network_inspect(&net, &store, true)).unwrap();
        assert_eq!(
            verbose["Services"]["web"]["Tasks"][0]["EndpointIP"],
            "127.0.0.2"
        );
    }
}
