//! Runtime adapters and the worker agent for swarm (not built yet).
//!
//! This crate will define the `Runtime` trait and its adapters (local processes, Docker Engine, an
//! in-memory simulator), the task controller lifecycle, health checks, secret and config materialisation
//! on tmpfs, and the worker `Agent` that turns assignments into running tasks and reports their status.
#![warn(missing_docs, unreachable_pub)]
