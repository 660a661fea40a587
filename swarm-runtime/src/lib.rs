//! # swarm-runtime: running tasks on a node
//!
//! The [`Runtime`] trait and its adapters (local processes, the Docker Engine, an in-memory
//! simulator), the task controller lifecycle, health checks, secret and config materialisation on
//! tmpfs, service templates, and the worker [`Agent`] that turns the dispatcher's assignments into
//! running tasks and reports their status.
//!
//! # Layout
//! - [`runtime`]: the [`Runtime`] trait (with its correctness contract) and its value types.
//! - [`process`], `docker` (feature `docker`, on by default), [`sim`]: the adapters.
//! - [`files`]: secret/config targets and tmpfs staging shared by the adapters.
//! - [`template`]: `{{.Service.Name}}`-style placeholders.
//! - [`health`]: the health-check verdict state machine and probe loop.
//! - [`signal`]: stop-signal parsing.
//! - [`dispatcher`]: the [`Dispatcher`] seam the agent talks to, and [`LocalDispatcher`] (in-process).
//! - `controller` (private): one task's lifecycle, from `assigned` to a terminal state.
//! - [`agent`]: the [`Agent`]: sessions, reconciliation, batched status reports.
//! - `testing` (feature `testing`): the adapter conformance suite.
//! - [`error`]: the error enum of runtime calls, [`RuntimeError`].
//!
//! # Features
//! - `docker` (default): the Docker Engine adapter and its bollard dependency. Without it
//!   (`default-features = false`) the process and sim adapters and the agent build alone.
//! - `testing`: the adapter conformance suite and the `Dispatcher` conformance suite.
#![warn(missing_docs, unreachable_pub)]
// `unsafe` only where std or rustix offer no safe form, each site allowed by name: a child's
// set-up between fork and exec (`pre_exec`), `unshare` (rustix: unsafe for `CLONE_FILES`) and
// real-time signal numbers (rustix: unsafe for the ones libc reserves).
#![deny(unsafe_code)]

pub mod agent;
mod controller;
pub mod dispatcher;
#[cfg(feature = "docker")]
pub mod docker;
pub mod error;
pub mod files;
pub mod health;
pub mod process;
pub mod runtime;
pub mod signal;
pub mod sim;
pub mod template;
#[cfg(feature = "testing")]
pub mod testing;

pub use agent::{Agent, AgentConfig, AgentTasks};
pub use dispatcher::{DispatchError, Dispatcher, LocalDispatcher, Session};
#[cfg(feature = "docker")]
pub use docker::{DockerOptions, DockerRuntime};
pub use error::RuntimeError;
pub use health::{HealthMonitor, HealthTest};
pub use process::{ProcessOptions, ProcessRuntime};
pub use runtime::{
    Capabilities, ExecResult, ExitStatus, FileKind, LogLine, LogOptions, LogRecord, LogRecords,
    LogStream, RecoveredTask, Runtime, RuntimeState, TaskConfig, TaskFile, TaskInspect, KILL_WAIT,
};
pub use sim::SimRuntime;
pub use template::{TemplateContext, TemplateError};
