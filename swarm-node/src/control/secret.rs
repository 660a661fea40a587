//! Secrets and configs: create, labels-only update, remove (refused while a service uses them).

use std::collections::BTreeMap;

use swarm_core::objects::secret::{ConfigSpec, SecretSpec};
use swarm_core::validate::{validate_config_spec, validate_secret_spec};
use swarm_core::{Annotations, Config, Id, Meta, Object, Secret, StoreObject, Version};

use super::resolve::resolve;
use super::{new_id, Control, ControlError};

const ONLY_LABELS: &str = "only updates to Labels are allowed";

impl Control {
    /// `docker secret create`: validates (name, 1 byte .. < 500 KiB) and stores the secret.
    pub async fn create_secret(&self, spec: SecretSpec) -> Result<Id, ControlError> {
        validate_secret_spec(&spec)?;
        let id = new_id();
        self.commit(|tx| {
            tx.create(Secret {
                id,
                meta: Meta::default(),
                spec,
            })?;
            Ok(id)
        })
        .await
    }

    /// `docker secret update`: only the labels may change. `name` and `data` are the request's: a
    /// different name or different data (compared in constant time) is refused with Docker's
    /// message; the same data, or none, is fine.
    pub async fn update_secret(
        &self,
        input: &str,
        version: u64,
        name: &str,
        data: Option<&[u8]>,
        labels: BTreeMap<String, String>,
    ) -> Result<(), ControlError> {
        self.update_labels::<Secret>(input, version, name, data, labels)
            .await
    }

    /// `docker secret rm`: refused while a service references the secret.
    pub async fn remove_secret(&self, input: &str) -> Result<(), ControlError> {
        self.remove_blob::<Secret>(input).await
    }

    /// `docker config create`: validates (name, 1 byte .. < 1000 KiB) and stores the config.
    pub async fn create_config(&self, spec: ConfigSpec) -> Result<Id, ControlError> {
        validate_config_spec(&spec)?;
        let id = new_id();
        self.commit(|tx| {
            tx.create(Config {
                id,
                meta: Meta::default(),
                spec,
            })?;
            Ok(id)
        })
        .await
    }

    /// `docker config update`: only the labels may change (see [`Control::update_secret`]).
    pub async fn update_config(
        &self,
        input: &str,
        version: u64,
        name: &str,
        data: Option<&[u8]>,
        labels: BTreeMap<String, String>,
    ) -> Result<(), ControlError> {
        self.update_labels::<Config>(input, version, name, data, labels)
            .await
    }

    /// `docker config rm`: refused while a service references the config.
    pub async fn remove_config(&self, input: &str) -> Result<(), ControlError> {
        self.remove_blob::<Config>(input).await
    }

    /// Labels-only update shared by secrets and configs.
    async fn update_labels<T: Blob>(
        &self,
        input: &str,
        version: u64,
        name: &str,
        data: Option<&[u8]>,
        labels: BTreeMap<String, String>,
    ) -> Result<(), ControlError> {
        self.commit(|tx| {
            let cur = resolve::<T>(tx.committed(), input)?;
            let same_data = data.is_none_or(|d| constant_time_eq(d, cur.data()));
            if !same_data || name != cur.annotations().name {
                return Err(ControlError::InvalidArgument(ONLY_LABELS.into()));
            }
            let mut o = (*cur).clone();
            o.annotations_mut().labels = labels;
            o.meta_mut().version = Version(version);
            tx.update(o)?;
            Ok(())
        })
        .await
    }

    /// Removal shared by secrets and configs (the store refuses it while a service uses the object).
    async fn remove_blob<T: Blob>(&self, input: &str) -> Result<(), ControlError> {
        self.commit(|tx| {
            let cur = resolve::<T>(tx.committed(), input)?;
            tx.remove(T::KIND, &cur.id())?;
            Ok(())
        })
        .await
    }
}

/// What secrets and configs have in common: a name, labels and a payload that never changes.
trait Blob: StoreObject + Into<Object> {
    fn annotations(&self) -> &Annotations;
    fn annotations_mut(&mut self) -> &mut Annotations;
    fn data(&self) -> &[u8];
}

impl Blob for Secret {
    fn annotations(&self) -> &Annotations {
        &self.spec.annotations
    }
    fn annotations_mut(&mut self) -> &mut Annotations {
        &mut self.spec.annotations
    }
    fn data(&self) -> &[u8] {
        self.spec.data.expose()
    }
}

impl Blob for Config {
    fn annotations(&self) -> &Annotations {
        &self.spec.annotations
    }
    fn annotations_mut(&mut self) -> &mut Annotations {
        &mut self.spec.annotations
    }
    fn data(&self) -> &[u8] {
        &self.spec.data
    }
}

/// Equality that takes the same time wherever the inputs differ (for secret payloads).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
