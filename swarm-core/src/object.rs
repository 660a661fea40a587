//! [`Object`]: any stored object, and the [`StoreObject`] trait that ties each kind to its table.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::id::Id;
use crate::meta::Meta;
use crate::objects::cluster::Cluster;
use crate::objects::network::Network;
use crate::objects::node::Node;
use crate::objects::secret::{Config, Secret};
use crate::objects::service::Service;
use crate::objects::task::Task;

/// The kinds of stored objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ObjectKind {
    /// [`Cluster`].
    Cluster,
    /// [`Node`].
    Node,
    /// [`Service`].
    Service,
    /// [`Task`].
    Task,
    /// [`Secret`].
    Secret,
    /// [`Config`].
    Config,
    /// [`Network`].
    Network,
}

impl ObjectKind {
    /// Every kind, in store order.
    pub const ALL: [ObjectKind; 7] = [
        ObjectKind::Cluster,
        ObjectKind::Node,
        ObjectKind::Service,
        ObjectKind::Task,
        ObjectKind::Secret,
        ObjectKind::Config,
        ObjectKind::Network,
    ];

    /// Lowercase name used in messages (`service`, `secret`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Cluster => "cluster",
            ObjectKind::Node => "node",
            ObjectKind::Service => "service",
            ObjectKind::Task => "task",
            ObjectKind::Secret => "secret",
            ObjectKind::Config => "config",
            ObjectKind::Network => "network",
        }
    }

    /// Whether names of this kind are unique (case-insensitively), as in SwarmKit.
    pub fn has_unique_names(self) -> bool {
        !matches!(self, ObjectKind::Node | ObjectKind::Task)
    }

    pub(crate) fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Any stored object, shared. Cloning is a reference-count increment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Object {
    /// A cluster.
    Cluster(Arc<Cluster>),
    /// A node.
    Node(Arc<Node>),
    /// A service.
    Service(Arc<Service>),
    /// A task.
    Task(Arc<Task>),
    /// A secret.
    Secret(Arc<Secret>),
    /// A config.
    Config(Arc<Config>),
    /// A network.
    Network(Arc<Network>),
}

macro_rules! each_object {
    ($obj:expr, $o:ident => $body:expr) => {
        match $obj {
            Object::Cluster($o) => $body,
            Object::Node($o) => $body,
            Object::Service($o) => $body,
            Object::Task($o) => $body,
            Object::Secret($o) => $body,
            Object::Config($o) => $body,
            Object::Network($o) => $body,
        }
    };
}

impl Object {
    /// The object's kind.
    pub fn kind(&self) -> ObjectKind {
        each_object!(self, o => kind_of(&**o))
    }

    /// The object's id.
    pub fn id(&self) -> Id {
        each_object!(self, o => o.id())
    }

    /// The object's bookkeeping.
    pub fn meta(&self) -> &Meta {
        each_object!(self, o => o.meta())
    }

    /// The object's name as indexed (may be empty for nodes).
    pub fn name(&self) -> &str {
        each_object!(self, o => o.index_name())
    }

    /// A reference to this object (kind + id).
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef {
            kind: self.kind(),
            id: self.id(),
        }
    }

    /// The object with its meta replaced (copy-on-write: clones the object only if shared).
    pub(crate) fn with_meta(self, meta: Meta) -> Object {
        each_object!(self, o => {
            let mut o = o;
            *Arc::make_mut(&mut o).meta_mut() = meta;
            o.into_object()
        })
    }
}

fn kind_of<T: StoreObject>(_: &T) -> ObjectKind {
    T::KIND
}

/// Identifies an object: kind plus id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectRef {
    /// Kind.
    pub kind: ObjectKind,
    /// Id.
    pub id: Id,
}

/// Implemented by every stored type; lets the store and its callers work generically.
pub trait StoreObject: Clone + Send + Sync + 'static + crate::store::tables::Tabled {
    /// The kind.
    const KIND: ObjectKind;
    /// Object id.
    fn id(&self) -> Id;
    /// Bookkeeping.
    fn meta(&self) -> &Meta;
    /// Mutable bookkeeping (the store sets it on apply).
    fn meta_mut(&mut self) -> &mut Meta;
    /// Name as indexed: the object's name; for tasks, their service's name (task names are derived,
    /// see [`crate::Task::name`]).
    fn index_name(&self) -> &str;
    /// Wraps a shared object into [`Object`].
    fn into_object(self: Arc<Self>) -> Object;
    /// Borrows the inner `Arc` if `obj` is of this kind.
    fn from_object(obj: &Object) -> Option<&Arc<Self>>;
}

macro_rules! store_object {
    ($ty:ident, $kind:ident, |$s:ident| $name:expr) => {
        impl StoreObject for $ty {
            const KIND: ObjectKind = ObjectKind::$kind;
            fn id(&self) -> Id {
                self.id
            }
            fn meta(&self) -> &Meta {
                &self.meta
            }
            fn meta_mut(&mut self) -> &mut Meta {
                &mut self.meta
            }
            fn index_name(&self) -> &str {
                let $s = self;
                $name
            }
            fn into_object(self: Arc<Self>) -> Object {
                Object::$kind(self)
            }
            fn from_object(obj: &Object) -> Option<&Arc<Self>> {
                match obj {
                    Object::$kind(o) => Some(o),
                    _ => None,
                }
            }
        }

        impl From<$ty> for Object {
            fn from(v: $ty) -> Object {
                Object::$kind(Arc::new(v))
            }
        }
    };
}

store_object!(Cluster, Cluster, |s| &s.spec.annotations.name);
store_object!(Node, Node, |s| &s.spec.annotations.name);
store_object!(Service, Service, |s| &s.spec.annotations.name);
store_object!(Task, Task, |s| &s.service_annotations.name);
store_object!(Secret, Secret, |s| &s.spec.annotations.name);
store_object!(Config, Config, |s| &s.spec.annotations.name);
store_object!(Network, Network, |s| &s.spec.annotations.name);
