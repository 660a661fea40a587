//! Swarm networks as engine bridge networks: created on demand, shared by this adapter's tasks
//! (a reference count per swarm network), removed when the last task using one is removed.
//!
//! The engine network of swarm network `N` (id `I`) is the bridge `swarm-<N>-<first 8 of I>`,
//! labelled [`LABEL_NETWORK_ID`] `= I`. Tasks use it by its engine id, never by name, because an
//! API 1.41 engine accepts two networks with one name: when two adapters sharing an engine create
//! it at once, both list the networks carrying the name afterwards and keep the one created first
//! (the other's creator removes its copy), so every task of `N` ends up on the same bridge.

use std::collections::HashMap;

use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest};
use bollard::query_parameters::ListNetworksOptionsBuilder;
use bollard::Docker;
use swarm_core::{Id, Network};
use tokio::sync::Mutex;

use super::convert::{engine, message, status_code};
use crate::error::RuntimeError;

/// The label carrying the swarm network id on its engine network.
pub(crate) const LABEL_NETWORK_ID: &str = "com.docker.swarm.network.id";
/// The label carrying the swarm network name on its engine network.
pub(crate) const LABEL_NETWORK_NAME: &str = "com.docker.swarm.network.name";

/// The engine name of a swarm network's bridge: unique per swarm network, readable by people.
pub(crate) fn engine_name(n: &Network) -> String {
    let id = n.id.to_string();
    format!(
        "swarm-{}-{}",
        n.spec.annotations.name,
        &id[..id.len().min(8)]
    )
}

/// The create request for `n`'s bridge.
pub(crate) fn create_request(n: &Network) -> NetworkCreateRequest {
    let mut labels: HashMap<String, String> = n
        .spec
        .annotations
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(LABEL_NETWORK_ID.into(), n.id.to_string());
    labels.insert(LABEL_NETWORK_NAME.into(), n.spec.annotations.name.clone());
    let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let ipam = &n.spec.ipam;
    let configs: Vec<IpamConfig> = ipam
        .configs
        .iter()
        .filter(|c| !c.subnet.is_empty())
        .map(|c| IpamConfig {
            subnet: nonempty(&c.subnet),
            ip_range: nonempty(&c.range),
            gateway: nonempty(&c.gateway),
            auxiliary_addresses: None,
        })
        .collect();
    NetworkCreateRequest {
        name: engine_name(n),
        driver: Some("bridge".into()),
        internal: Some(n.spec.internal),
        enable_ipv6: Some(n.spec.ipv6_enabled),
        ipam: (!configs.is_empty()).then(|| Ipam {
            driver: Some(nonempty(&ipam.driver).unwrap_or_else(|| "default".into())),
            config: Some(configs),
            options: (!ipam.options.is_empty()).then(|| {
                ipam.options
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            }),
        }),
        labels: Some(labels),
        ..NetworkCreateRequest::default()
    }
}

/// A sort key for an engine timestamp (RFC 3339 with up to nine fraction digits, which Go trims
/// of trailing zeros, so plain string order is wrong).
fn time_key(t: &str) -> (String, u32) {
    // `YYYY-MM-DDTHH:MM:SS`, then an optional fraction, then the zone (UTC for the engine).
    let head: String = t.chars().take(19).collect();
    let digits: String = t
        .get(19..)
        .and_then(|r| r.strip_prefix('.'))
        .unwrap_or("")
        .chars()
        .take_while(char::is_ascii_digit)
        .take(9)
        .collect();
    let nanos = format!("{digits:0<9}").parse().unwrap_or(0);
    (head, nanos)
}

#[derive(Debug)]
struct Held {
    engine_id: String,
    refs: usize,
}

/// The engine networks this adapter's tasks hold, by swarm network id.
#[derive(Debug)]
pub(crate) struct Networks {
    docker: Docker,
    held: Mutex<HashMap<Id, Held>>,
}

impl Networks {
    pub(crate) fn new(docker: Docker) -> Networks {
        Networks {
            docker,
            held: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one reference on each of `nets` (creating the bridges that do not exist) and returns
    /// their engine ids in order. On error, nothing is held.
    pub(crate) async fn acquire(&self, nets: &[&Network]) -> Result<Vec<String>, RuntimeError> {
        let mut held = self.held.lock().await;
        let mut out = Vec::with_capacity(nets.len());
        for n in nets {
            let known = held.get(&n.id).map(|h| h.engine_id.clone());
            // A cached bridge may have been removed behind our back (by hand, or by another
            // adapter on this engine whose last task left): check that it still exists.
            let valid = match known {
                Some(id) => match self.docker.inspect_network(&id, None).await {
                    Ok(_) => Some(id),
                    Err(e) if status_code(&e) == Some(404) => None,
                    Err(e) => {
                        self.release_locked(&mut held, &nets[..out.len()]).await;
                        return Err(engine("inspect network", e));
                    }
                },
                None => None,
            };
            let id = match valid {
                Some(id) => id,
                None => match self.ensure(n).await {
                    Ok(id) => id,
                    Err(e) => {
                        self.release_locked(&mut held, &nets[..out.len()]).await;
                        return Err(e);
                    }
                },
            };
            let h = held.entry(n.id).or_insert(Held {
                engine_id: id.clone(),
                refs: 0,
            });
            h.engine_id = id.clone();
            h.refs += 1;
            out.push(id);
        }
        Ok(out)
    }

    /// Takes one reference on an engine network an adopted container is attached to (see
    /// `adopt.rs`), as if `acquire` had taken it for that container.
    pub(crate) async fn adopt(&self, swarm_id: Id, engine_id: &str) {
        let mut held = self.held.lock().await;
        let h = held.entry(swarm_id).or_insert(Held {
            engine_id: engine_id.to_string(),
            refs: 0,
        });
        h.refs += 1;
    }

    /// Gives back one reference on each network; the engine network of one no task of this
    /// adapter holds any more is removed (best effort: one still in use by someone else stays).
    pub(crate) async fn release(&self, nets: &[Id]) {
        let mut held = self.held.lock().await;
        for id in nets {
            self.release_one(&mut held, *id).await;
        }
    }

    async fn release_locked(&self, held: &mut HashMap<Id, Held>, nets: &[&Network]) {
        for n in nets {
            self.release_one(held, n.id).await;
        }
    }

    async fn release_one(&self, held: &mut HashMap<Id, Held>, id: Id) {
        let Some(h) = held.get_mut(&id) else { return };
        h.refs = h.refs.saturating_sub(1);
        if h.refs > 0 {
            return;
        }
        let engine_id = h.engine_id.clone();
        held.remove(&id);
        match self.docker.remove_network(&engine_id).await {
            Ok(()) => tracing::debug!(network = %engine_id, "removed engine network"),
            Err(e) => tracing::debug!(
                network = %engine_id,
                error = %message(&e),
                "engine network not removed (gone, or still used by other containers)"
            ),
        }
    }

    /// Finds or creates `n`'s bridge and returns its engine id.
    async fn ensure(&self, n: &Network) -> Result<String, RuntimeError> {
        if let Some(id) = self.find(n).await? {
            return Ok(id);
        }
        let created = match self.docker.create_network(create_request(n)).await {
            Ok(r) => Some(r.id),
            // A newer engine refuses a second network of the same name: someone was first.
            Err(e) if status_code(&e) == Some(409) => None,
            Err(e) if matches!(status_code(&e), Some(400 | 403)) => {
                return Err(RuntimeError::invalid(format!(
                    "cannot create engine network {:?} for swarm network {:?}: {}",
                    engine_name(n),
                    n.spec.annotations.name,
                    message(&e)
                )))
            }
            Err(e) => return Err(engine("create network", e)),
        };
        let winner = self.find(n).await?;
        if let Some(ours) = &created {
            if winner.as_ref() != Some(ours) {
                // Another adapter created the same bridge at the same time and was first.
                let _ = self.docker.remove_network(ours).await;
            }
        }
        winner.or(created).ok_or_else(|| RuntimeError::Engine {
            op: "create network",
            message: format!(
                "engine network {:?} was reported to exist but cannot be found",
                engine_name(n)
            ),
        })
    }

    /// The engine id of `n`'s bridge if one exists (the first created when there are several);
    /// an error rejecting the task when a network of that name belongs to something else.
    async fn find(&self, n: &Network) -> Result<Option<String>, RuntimeError> {
        let name = engine_name(n);
        let filters = HashMap::from([("name".to_string(), vec![name.clone()])]);
        let opts = ListNetworksOptionsBuilder::default()
            .filters(&filters)
            .build();
        let list = self
            .docker
            .list_networks(Some(opts))
            .await
            .map_err(|e| engine("list networks", e))?;
        let want = n.id.to_string();
        let mut best: Option<((String, u32), String)> = None;
        // The name filter matches substrings: keep exact names only.
        for net in list.iter().filter(|x| x.name.as_deref() == Some(&name)) {
            let label = net
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_NETWORK_ID))
                .cloned();
            if label.as_deref() != Some(want.as_str()) {
                return Err(RuntimeError::invalid(format!(
                    "engine network {name:?} exists but is not the one for swarm network {:?} \
                     ({LABEL_NETWORK_ID} is {}, want {want}); remove it (docker network rm \
                     {name}) and retry",
                    n.spec.annotations.name,
                    label.map_or_else(|| "unset".to_string(), |l| format!("{l:?}")),
                )));
            }
            let Some(id) = net.id.clone() else { continue };
            let key = time_key(
                &net.created
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            );
            if best.as_ref().is_none_or(|(k, i)| (&key, &id) < (k, i)) {
                best = Some((key, id));
            }
        }
        Ok(best.map(|(_, id)| id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_core::objects::network::{IpamConfig as SwarmIpam, NetworkSpec};
    use swarm_core::Annotations;

    fn net() -> Network {
        let mut spec = NetworkSpec {
            annotations: Annotations::named("backend"),
            internal: true,
            ..NetworkSpec::default()
        };
        spec.annotations.labels.insert("team".into(), "blue".into());
        spec.ipam.configs.push(SwarmIpam {
            subnet: "10.77.0.0/24".into(),
            range: "10.77.0.128/25".into(),
            gateway: String::new(),
        });
        Network {
            id: Id::from_u128(0xdead_beef_1234_5678_9abc),
            meta: Default::default(),
            spec,
            ipam: None,
        }
    }

    #[test]
    fn bridge_request_carries_name_labels_ipam_and_flags() {
        let n = net();
        let r = create_request(&n);
        let id = n.id.to_string();
        assert_eq!(r.name, format!("swarm-backend-{}", &id[..8]));
        assert_eq!(r.driver.as_deref(), Some("bridge"));
        assert_eq!(r.internal, Some(true));
        assert_eq!(r.enable_ipv6, Some(false));
        let labels = r.labels.unwrap();
        assert_eq!(labels[LABEL_NETWORK_ID], id);
        assert_eq!(labels[LABEL_NETWORK_NAME], "backend");
        assert_eq!(labels["team"], "blue");
        let ipam = r.ipam.unwrap();
        assert_eq!(ipam.driver.as_deref(), Some("default"));
        let c = &ipam.config.unwrap()[0];
        assert_eq!(c.subnet.as_deref(), Some("10.77.0.0/24"));
        assert_eq!(c.ip_range.as_deref(), Some("10.77.0.128/25"));
        assert_eq!(c.gateway, None);
    }

    #[test]
    fn no_ipam_config_lets_the_engine_pick() {
        let mut n = net();
        n.spec.ipam.configs.clear();
        assert!(create_request(&n).ipam.is_none());
    }

    #[test]
    fn engine_timestamps_order_by_value_not_text() {
        assert!(
            time_key("2024-01-01T00:00:01.12Z") < time_key("2024-01-01T00:00:01.123Z"),
            "trimmed fractions compare by value"
        );
        assert!(time_key("2024-01-01T00:00:01Z") < time_key("2024-01-01T00:00:01.5Z"));
        assert!(time_key("2024-01-01T00:00:01.9Z") < time_key("2024-01-01T00:00:02Z"));
    }
}
