//! The swarm state model (in progress).
#![warn(missing_docs, unreachable_pub)]

pub mod constraint;
pub mod duration;
pub mod placement;
