//! Secrets and configs, one generic implementation over [`Blob`]: create, labels-only update,
//! remove (refused while a service uses them).

use std::collections::BTreeMap;

use swarm_core::objects::secret::{ConfigSpec, SecretSpec};
use swarm_core::validate::{validate_config_spec, validate_secret_spec, SpecError};
use swarm_core::{Annotations, Config, Id, Meta, Object, Secret, StoreObject, Version};

use super::resolve::resolve;
use super::{Control, ControlError};

const ONLY_LABELS: &str = "only updates to Labels are allowed";

impl Control {
    /// `docker secret create` / `docker config create`: validates the spec (a name; 1 byte to
    /// < 500 KiB for a secret, < 1000 KiB for a config) and stores the object.
    pub async fn create_blob<T: Blob>(&self, spec: T::Spec) -> Result<Id, ControlError> {
        T::validate(&spec)?;
        let id = self.new_id();
        self.commit(|tx| {
            tx.create(T::new(id, spec))?;
            Ok(id)
        })
        .await
    }

    /// `docker secret update` / `docker config update`: only the labels may change. `name` and
    /// `data` are the request's: a different name or different data (compared in constant time)
    /// is refused with Docker's message; the same data, or none, is fine (`docker stack deploy`
    /// sends configs back with their data).
    pub async fn update_blob<T: Blob>(
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

    /// `docker secret rm` / `docker config rm`: refused (by the store) while a service
    /// references the object.
    pub async fn remove_blob<T: Blob>(&self, input: &str) -> Result<(), ControlError> {
        self.commit(|tx| {
            let cur = resolve::<T>(tx.committed(), input)?;
            tx.remove(T::KIND, &cur.id())?;
            Ok(())
        })
        .await
    }
}

/// What secrets and configs have in common, so one implementation serves both: a spec checked
/// by its own rule, a name, labels, and a payload that never changes after creation.
pub trait Blob: StoreObject + Into<Object> + Clone {
    /// The kind's spec, as the control API takes it.
    type Spec: Send;
    /// Checks a spec before it is stored (Docker's rules and wording, from swarm-core).
    fn validate(spec: &Self::Spec) -> Result<(), SpecError>;
    /// The object to store for a new `id`.
    fn new(id: Id, spec: Self::Spec) -> Self;
    /// Name and labels.
    fn annotations(&self) -> &Annotations;
    /// Name and labels, to change the labels.
    fn annotations_mut(&mut self) -> &mut Annotations;
    /// The payload.
    fn data(&self) -> &[u8];
}

impl Blob for Secret {
    type Spec = SecretSpec;
    fn validate(spec: &SecretSpec) -> Result<(), SpecError> {
        validate_secret_spec(spec)
    }
    fn new(id: Id, spec: SecretSpec) -> Secret {
        Secret {
            id,
            meta: Meta::default(),
            spec,
        }
    }
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
    type Spec = ConfigSpec;
    fn validate(spec: &ConfigSpec) -> Result<(), SpecError> {
        validate_config_spec(spec)
    }
    fn new(id: Id, spec: ConfigSpec) -> Config {
        Config {
            id,
            meta: Meta::default(),
            spec,
        }
    }
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
