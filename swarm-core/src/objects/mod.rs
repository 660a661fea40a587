//! The object model: one module per kind of object.

pub mod cluster;
pub mod network;
pub mod node;
pub mod secret;
pub mod service;
pub mod task;
