//! Swarm-scoped networks (`NetworkCreateRequest` in, `NetworkInspect`/`NetworkSummary` out).

use std::collections::HashMap;

use bollard::models;
use swarm_core::objects::network::{Ipam, IpamConfig, NetworkSpec};
use swarm_core::objects::secret::Driver;
use swarm_core::{Annotations, Network};

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
        ipam: Some(ipam_out(&s.ipam)),
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
