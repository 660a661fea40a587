//! Scheduling and orchestration for swarm (not built yet).
//!
//! This pure crate (no I/O, no clock) will take a store snapshot, store events and `now`, and return
//! `StoreAction`s: the scheduler's filter pipeline and spread preferences, the replicated, global and job
//! orchestrators, the restart supervisor, the task reaper and the rolling updater with rollback.
#![warn(missing_docs, unreachable_pub)]
