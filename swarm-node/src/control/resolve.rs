//! Finding the object a caller named, as Docker's daemon does: a full id, then a name (services,
//! secrets, configs and networks case-insensitively; nodes by hostname or node name; tasks by
//! `<service>.<slot>.<id>`), then a unique id prefix.

use std::sync::Arc;

use swarm_core::{Id, Node, ObjectKind, Store, StoreObject, Task};

use super::{Control, ControlError};

/// The object of type `T` that `input` names in `store`.
pub(crate) fn resolve<T: StoreObject>(store: &Store, input: &str) -> Result<Arc<T>, ControlError> {
    let kind = T::KIND.as_str();
    if input.is_empty() {
        return Err(ControlError::not_found(kind, input));
    }
    if let Ok(id) = Id::parse(input) {
        if let Some(o) = store.get::<T>(&id) {
            return Ok(o.clone());
        }
    }
    if let Some(o) = by_name::<T>(store, input)? {
        return Ok(o);
    }
    let mut matches = store.find_by_id_prefix::<T>(input);
    match (matches.next(), matches.next()) {
        (None, _) => Err(ControlError::not_found(kind, input)),
        (Some(o), None) => Ok(o.clone()),
        (Some(_), Some(_)) => Err(ControlError::Ambiguous {
            kind,
            input: input.to_string(),
            count: 2 + matches.count(),
        }),
    }
}

fn by_name<T: StoreObject>(store: &Store, input: &str) -> Result<Option<Arc<T>>, ControlError> {
    if T::KIND.has_unique_names() {
        return Ok(store.get_by_name::<T>(input).cloned());
    }
    let found = match T::KIND {
        ObjectKind::Node => {
            let mut it = store.iter::<Node>().filter(|n| {
                n.hostname().eq_ignore_ascii_case(input)
                    || (!n.spec.annotations.name.is_empty()
                        && n.spec.annotations.name.eq_ignore_ascii_case(input))
            });
            match (it.next(), it.next()) {
                (Some(n), None) => Some(n.clone().into_object()),
                (None, _) => None,
                (Some(_), Some(_)) => {
                    return Err(ControlError::Ambiguous {
                        kind: "node",
                        input: input.to_string(),
                        count: 2 + it.count(),
                    })
                }
            }
        }
        ObjectKind::Task => task_by_name(store, input).map(|t| t.into_object()),
        _ => None,
    };
    Ok(found.as_ref().and_then(T::from_object).cloned())
}

/// A task by its full name `<service>.<slot or node id>.<task id>`.
fn task_by_name(store: &Store, name: &str) -> Option<Arc<Task>> {
    let (_, id) = name.rsplit_once('.')?;
    let task = store.get::<Task>(&Id::parse(id).ok()?)?;
    (task.name() == name).then(|| task.clone())
}

impl Control {
    /// The object of type `T` that `input` (id, name or id prefix) names.
    pub fn get<T: StoreObject>(&self, input: &str) -> Result<Arc<T>, ControlError> {
        self.store().view(|s| resolve::<T>(s, input))
    }
}
