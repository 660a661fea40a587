//! Secrets and configs. A secret's `Data` is accepted on create and never rendered.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bollard::models;
use swarm_core::objects::secret::{ConfigSpec, Driver, SecretSpec};
use swarm_core::{Annotations, Config, Secret, SecretData};
use zeroize::Zeroizing;

use super::{labels_in, labels_out, ts, version, Result};
use crate::api::error::ApiError;
use crate::control::Blob;

/// The Engine API side of a [`Blob`] kind: its request and response models, so that one set of
/// route handlers serves `/secrets` and `/configs` alike.
pub(crate) trait ApiBlob: Blob {
    /// Docker's word for the kind, in messages ("secret", "config").
    const NOUN: &'static str;
    /// The body of a create or update request (`SecretSpec`, `ConfigSpec`).
    type Model: serde::de::DeserializeOwned + Send;
    /// The object as Docker shows it.
    type Out: serde::Serialize;
    /// A create request's body to a spec (payload decoded, unsupported drivers refused).
    fn spec_in(m: Self::Model) -> Result<Self::Spec>;
    /// The object as Docker shows it (a secret without its data).
    fn out(&self) -> Self::Out;
    /// What an update request asks for: its name, its `Data` (decoded; `None` when absent or
    /// empty) and its labels.
    fn update_in(m: Self::Model) -> Result<UpdateRequest>;
}

/// The parts of a secret or config update request the control API checks and applies.
pub(crate) struct UpdateRequest {
    /// The name given, if any (the current name is kept when absent).
    pub(crate) name: Option<String>,
    /// The payload given, decoded.
    pub(crate) data: Option<Zeroizing<Vec<u8>>>,
    /// The new labels.
    pub(crate) labels: std::collections::BTreeMap<String, String>,
}

impl ApiBlob for Secret {
    const NOUN: &'static str = "secret";
    type Model = models::SecretSpec;
    type Out = models::Secret;
    fn spec_in(m: models::SecretSpec) -> Result<SecretSpec> {
        secret_spec_in(m)
    }
    fn out(&self) -> models::Secret {
        secret_out(self)
    }
    fn update_in(m: models::SecretSpec) -> Result<UpdateRequest> {
        Ok(UpdateRequest {
            data: request_data(Self::NOUN, m.data.as_deref())?,
            name: m.name,
            labels: labels_in(m.labels),
        })
    }
}

impl ApiBlob for Config {
    const NOUN: &'static str = "config";
    type Model = models::ConfigSpec;
    type Out = models::Config;
    fn spec_in(m: models::ConfigSpec) -> Result<ConfigSpec> {
        config_spec_in(m)
    }
    fn out(&self) -> models::Config {
        config_out(self)
    }
    fn update_in(m: models::ConfigSpec) -> Result<UpdateRequest> {
        Ok(UpdateRequest {
            data: request_data(Self::NOUN, m.data.as_deref())?,
            name: m.name,
            labels: labels_in(m.labels),
        })
    }
}

fn decode_data(kind: &str, data: Option<&str>) -> Result<Zeroizing<Vec<u8>>> {
    let text = data.unwrap_or("");
    STANDARD
        .decode(text.trim())
        .map(Zeroizing::new)
        .map_err(|e| ApiError::bad_request(format!("{kind} Data is not valid base64: {e}")))
}

fn driver_in(d: Option<models::Driver>) -> Option<Driver> {
    d.map(|d| Driver {
        name: d.name,
        options: labels_in(d.options),
    })
}

fn driver_out(d: &Option<Driver>) -> Option<models::Driver> {
    d.as_ref().map(|d| models::Driver {
        name: d.name.clone(),
        options: labels_out(&d.options),
    })
}

/// The `Data` of an update request, decoded; `None` when absent or empty.
fn request_data(kind: &str, data: Option<&str>) -> Result<Option<Zeroizing<Vec<u8>>>> {
    match data {
        None | Some("") => Ok(None),
        Some(d) => decode_data(kind, Some(d)).map(Some),
    }
}

/// `POST /secrets/create` body to a spec. External secret drivers are refused.
pub(crate) fn secret_spec_in(s: models::SecretSpec) -> Result<SecretSpec> {
    if s.driver.as_ref().is_some_and(|d| !d.name.is_empty()) {
        return Err(ApiError::bad_request(
            "secret drivers are not supported: give the secret's Data",
        ));
    }
    let mut data = decode_data("secret", s.data.as_deref())?;
    Ok(SecretSpec {
        annotations: Annotations {
            name: s.name.unwrap_or_default(),
            labels: labels_in(s.labels),
        },
        data: SecretData::new(std::mem::take(&mut *data)),
        templating: driver_in(s.templating),
    })
}

/// A secret as Docker shows it: never with its data.
pub(crate) fn secret_out(s: &Secret) -> models::Secret {
    models::Secret {
        id: Some(s.id.to_string()),
        version: version(&s.meta),
        created_at: ts(s.meta.created_at),
        updated_at: ts(s.meta.updated_at),
        spec: Some(models::SecretSpec {
            name: Some(s.spec.annotations.name.clone()),
            labels: labels_out(&s.spec.annotations.labels),
            data: None,
            driver: None,
            templating: driver_out(&s.spec.templating),
        }),
    }
}

/// `POST /configs/create` body to a spec.
pub(crate) fn config_spec_in(s: models::ConfigSpec) -> Result<ConfigSpec> {
    let data = decode_data("config", s.data.as_deref())?;
    Ok(ConfigSpec {
        annotations: Annotations {
            name: s.name.unwrap_or_default(),
            labels: labels_in(s.labels),
        },
        data: data.to_vec(),
        templating: driver_in(s.templating),
    })
}

/// A config as Docker shows it, data included (configs are not secret).
pub(crate) fn config_out(c: &Config) -> models::Config {
    models::Config {
        id: Some(c.id.to_string()),
        version: version(&c.meta),
        created_at: ts(c.meta.created_at),
        updated_at: ts(c.meta.updated_at),
        spec: Some(models::ConfigSpec {
            name: Some(c.spec.annotations.name.clone()),
            labels: labels_out(&c.spec.annotations.labels),
            data: Some(STANDARD.encode(&c.spec.data)),
            templating: driver_out(&c.spec.templating),
        }),
    }
}
