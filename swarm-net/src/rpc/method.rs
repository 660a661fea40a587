//! Method descriptors and the authorization table.
//!
//! swarm-net knows no service: an embedder (swarm-node) declares each method as a `const`
//! [`Unary`] or [`ServerStreaming`] carrying a [`MethodDescriptor`]: its name, who may call it
//! ([`Access`]) and the size limit of each message. The server and the client only ever read
//! descriptors, so the rule "the CA methods work without a client certificate" is the CA methods'
//! descriptors saying [`Access::Anonymous`], not a list of names in this crate.

use std::marker::PhantomData;

use swarm_core::Id;

use crate::identity::{NodeIdentity, Role};
use crate::rpc::status::{Code, Status};

/// Who may call a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Anyone who completes the TLS handshake, with or without a client certificate: only for the
    /// methods a joining node needs before it has a certificate (get root CA, issue node
    /// certificate, certificate status).
    Anonymous,
    /// A worker or a manager of this cluster (dispatcher methods).
    Node,
    /// A manager of this cluster only (raft, membership, unlock key).
    Manager,
}

/// Whether a call returns one response or a stream of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallKind {
    /// One request, one response.
    Unary,
    /// One request, any number of responses, then the end (or an error).
    ServerStreaming,
    /// One typed header, an accept (or a refusal), then raw bytes both ways ([`Duplex`]).
    Duplex,
}

/// Everything the transport knows about a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MethodDescriptor {
    /// Unique name on the wire, for example `"raft.append_entries"`; at most
    /// [`MAX_METHOD_NAME`] bytes.
    pub name: &'static str,
    /// Unary or server streaming.
    pub kind: CallKind,
    /// Who may call it.
    pub access: Access,
    /// Largest encoded request accepted, in bytes.
    pub max_request: u32,
    /// Largest encoded response (each stream item for streams; the accept frame for duplex
    /// calls) accepted, in bytes.
    pub max_response: u32,
}

/// Longest method name accepted on the wire.
pub const MAX_METHOD_NAME: usize = 256;

/// A unary method with request `Req` and response `Resp` (encoded with bincode).
pub struct Unary<Req, Resp> {
    desc: MethodDescriptor,
    _types: PhantomData<fn(Req) -> Resp>,
}

/// A server-streaming method with request `Req` and stream items `Item`.
pub struct ServerStreaming<Req, Item> {
    desc: MethodDescriptor,
    _types: PhantomData<fn(Req) -> Item>,
}

/// A bidirectional byte-stream method opened with a typed header `Req` (encoded with bincode):
/// once the server accepts, both sides exchange raw bytes until each finishes (or resets) its
/// half. See [`crate::rpc::duplex`].
pub struct Duplex<Req> {
    desc: MethodDescriptor,
    _types: PhantomData<fn(Req)>,
}

impl<Req> Duplex<Req> {
    /// Declares a duplex method; `max_header` limits the encoded header.
    pub const fn new(name: &'static str, access: Access, max_header: u32) -> Self {
        Duplex {
            desc: MethodDescriptor {
                name,
                kind: CallKind::Duplex,
                access,
                max_request: max_header,
                max_response: 0,
            },
            _types: PhantomData,
        }
    }

    /// The method's descriptor.
    pub const fn descriptor(&self) -> &MethodDescriptor {
        &self.desc
    }
}

impl<Req, Resp> Unary<Req, Resp> {
    /// Declares a unary method.
    pub const fn new(
        name: &'static str,
        access: Access,
        max_request: u32,
        max_response: u32,
    ) -> Self {
        Unary {
            desc: MethodDescriptor {
                name,
                kind: CallKind::Unary,
                access,
                max_request,
                max_response,
            },
            _types: PhantomData,
        }
    }

    /// The method's descriptor.
    pub const fn descriptor(&self) -> &MethodDescriptor {
        &self.desc
    }
}

impl<Req, Item> ServerStreaming<Req, Item> {
    /// Declares a server-streaming method; `max_item` limits each streamed item.
    pub const fn new(name: &'static str, access: Access, max_request: u32, max_item: u32) -> Self {
        ServerStreaming {
            desc: MethodDescriptor {
                name,
                kind: CallKind::ServerStreaming,
                access,
                max_request,
                max_response: max_item,
            },
            _types: PhantomData,
        }
    }

    /// The method's descriptor.
    pub const fn descriptor(&self) -> &MethodDescriptor {
        &self.desc
    }
}

/// Decides whether `peer` (None: no client certificate) may call a method with `access` on a server
/// of cluster `cluster` (None: the server has no identity yet, which only happens in tests).
///
/// The certificate has already been verified against the cluster roots by the TLS layer; checking
/// the cluster id again keeps a certificate of another cluster under a shared root from passing.
pub fn authorize(
    access: Access,
    peer: Option<&NodeIdentity>,
    cluster: Option<Id>,
) -> Result<(), Status> {
    if access == Access::Anonymous {
        return Ok(());
    }
    let Some(peer) = peer else {
        return Err(Status::new(
            Code::Unauthenticated,
            "this method requires a node certificate of this cluster",
        ));
    };
    if let Some(cluster) = cluster {
        if peer.cluster_id != cluster {
            return Err(Status::new(
                Code::Unauthenticated,
                format!(
                    "certificate is for cluster {}, not this cluster",
                    peer.cluster_id
                ),
            ));
        }
    }
    match (access, peer.role) {
        (Access::Manager, Role::Worker) => Err(Status::new(
            Code::PermissionDenied,
            "this method is for managers; the caller's certificate is a worker's",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> Id {
        Id::parse(
            &char::from(b'a' + n)
                .to_string()
                .repeat(swarm_core::id::ID_LEN),
        )
        .unwrap()
    }

    /// The whole table: every access level against no certificate, a worker, a manager and a
    /// manager of another cluster.
    #[test]
    fn authorization_table() {
        let worker = NodeIdentity {
            node_id: id(1),
            role: Role::Worker,
            cluster_id: id(9),
        };
        let manager = NodeIdentity {
            role: Role::Manager,
            ..worker
        };
        let foreign = NodeIdentity {
            cluster_id: id(8),
            ..manager
        };
        let peers = [None, Some(&worker), Some(&manager), Some(&foreign)];
        let table = [
            (Access::Anonymous, ["ok", "ok", "ok", "ok"]),
            (Access::Node, ["unauth", "ok", "ok", "unauth"]),
            (Access::Manager, ["unauth", "denied", "ok", "unauth"]),
        ];
        for (access, want) in table {
            for (peer, want) in peers.iter().zip(want) {
                let got = match authorize(access, *peer, Some(id(9))) {
                    Ok(()) => "ok",
                    Err(s) if s.code == Code::Unauthenticated => "unauth",
                    Err(s) if s.code == Code::PermissionDenied => "denied",
                    Err(s) => panic!("unexpected {s}"),
                };
                assert_eq!(got, want, "{access:?} / {peer:?}");
            }
        }
    }
}
