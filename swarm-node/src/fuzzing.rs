//! Entry point of the cargo-fuzz target `request_body` (`fuzz/fuzz_targets/request_body.rs`),
//! also run by the corpus replay test (`tests/fuzz_corpus.rs`), so every corpus file stays a
//! regression test. Behind the `fuzzing` feature: it reaches into the API layer's private
//! decoding and conversion.
//!
//! [`request_body`] takes any bytes and treats them as the body of every endpoint that has one:
//! each Docker type is decoded case-insensitively ([`crate::api::json`]), then converted to its
//! swarm-core type and validated as the route would. Nothing may panic (a panic is a finding), and
//! every body that decodes must survive serialize + decode unchanged.

use std::fmt::Debug;

use bollard::models;
use serde::de::DeserializeOwned;
use serde::Serialize;
use swarm_core::objects::cluster::ClusterSpec;
use swarm_core::objects::node::NodeSpec;
use swarm_core::validate::{self, ServiceLimits};

use crate::api::convert::{network, node, secret, service, swarm};
use crate::api::json;

/// The request bodies `data` decoded and converted as, by Docker type name (for the replay
/// test: a corpus that decodes as nothing checks little).
pub fn request_body(data: &[u8]) -> Vec<&'static str> {
    let mut ok = Vec::new();
    let mut note = |name: &'static str, accepted: bool| {
        if accepted {
            ok.push(name);
        }
    };
    note(
        "ServiceSpec",
        round_trip::<models::ServiceSpec>(data).is_some_and(|s| {
            service::service_spec_in(s).is_ok_and(|req| {
                validate::validate_service_spec(&req.spec, &ServiceLimits::default()).is_ok()
            })
        }),
    );
    note(
        "SecretSpec",
        round_trip::<models::SecretSpec>(data).is_some_and(|s| {
            secret::secret_spec_in(s).is_ok_and(|s| validate::validate_secret_spec(&s).is_ok())
        }),
    );
    note(
        "ConfigSpec",
        round_trip::<models::ConfigSpec>(data).is_some_and(|s| {
            secret::config_spec_in(s).is_ok_and(|s| validate::validate_config_spec(&s).is_ok())
        }),
    );
    note(
        "NetworkCreateRequest",
        round_trip::<models::NetworkCreateRequest>(data).is_some_and(|r| {
            network::network_spec_in(r).is_ok_and(|s| validate::validate_network_spec(&s).is_ok())
        }),
    );
    note(
        "NodeSpec",
        round_trip::<models::NodeSpec>(data)
            .is_some_and(|s| node::node_spec_in(s, &NodeSpec::default()).is_ok()),
    );
    note(
        "SwarmSpec",
        round_trip::<models::SwarmSpec>(data).is_some_and(|s| {
            swarm::cluster_spec_merge(&ClusterSpec::default(), s)
                .is_ok_and(|c| validate::validate_cluster_spec(&c).is_ok())
        }),
    );
    note(
        "SwarmUnlockRequest",
        round_trip::<models::SwarmUnlockRequest>(data).is_some(),
    );
    note(
        "SwarmInitRequest",
        json::decode::<swarm::InitRequestJson>(data)
            .is_ok_and(|r| swarm::init_request_in(r).is_ok()),
    );
    note(
        "SwarmJoinRequest",
        json::decode::<swarm::JoinRequestJson>(data)
            .is_ok_and(|r| swarm::join_request_in(r).is_ok()),
    );
    ok
}

/// Decodes `data` as `T`; a value that decodes must encode and decode to itself.
fn round_trip<T: DeserializeOwned + Serialize + PartialEq + Debug>(data: &[u8]) -> Option<T> {
    let value: T = json::decode(data).ok()?;
    let text = serde_json::to_vec(&value);
    let again = text
        .as_deref()
        .map_err(|e| e.to_string())
        .and_then(|t| json::decode::<T>(t).map_err(|e| e.message));
    assert_eq!(
        again.as_ref(),
        Ok(&value),
        "a decoded {} did not survive serialize + decode",
        std::any::type_name::<T>()
    );
    Some(value)
}
