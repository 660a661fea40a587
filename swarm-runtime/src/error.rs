//! Errors of the [`crate::Runtime`] operations.
//!
//! One enum for every runtime call. [`RuntimeError::is_rejection`] separates "this task cannot run
//! here" (the controller reports the task `rejected`) from failures of a task that did start
//! (`failed`).

use std::time::Duration;

use swarm_core::Id;
use thiserror::Error;

/// Why a runtime call failed.
#[derive(Debug, Error)]
pub enum RuntimeError {
    /// The runtime holds no task with this id (never prepared, or removed).
    #[error("task {task} is not known to this runtime (never prepared, or already removed)")]
    NotFound {
        /// The task.
        task: Id,
    },
    /// `prepare` was called twice for the same task.
    #[error("task {task} is already prepared; remove it before preparing it again")]
    AlreadyPrepared {
        /// The task.
        task: Id,
    },
    /// `start` was called on a task that already started.
    #[error("task {task} has already been started")]
    AlreadyStarted {
        /// The task.
        task: Id,
    },
    /// `exec` on a task that is not running.
    #[error("task {task} is not running")]
    NotRunning {
        /// The task.
        task: Id,
    },
    /// The process runtime was given a spec without a command.
    #[error(
        "no command: the {runtime} runtime runs the service's command and arguments and has no \
         image entrypoint or default command to fall back on; give the service a command (docker \
         service create IMAGE COMMAND [ARGS...])"
    )]
    NoCommand {
        /// The runtime.
        runtime: &'static str,
    },
    /// The task's executable does not exist or is not executable.
    #[error("exec: {command:?}: {reason}")]
    ExecutableNotFound {
        /// The command as given.
        command: String,
        /// Docker's wording: `executable file not found in $PATH`, `no such file or directory`,
        /// `permission denied`.
        reason: String,
    },
    /// The image is not on this node (images are never pulled).
    #[error(
        "image not found: {image}: {reason}; this node does not pull images, so build or load it \
         here first"
    )]
    ImageNotFound {
        /// The image reference.
        image: String,
        /// The engine's answer.
        reason: String,
    },
    /// A `swarm.runtime.<runtime>.*` label this runtime does not know.
    #[error(
        "unknown runtime option {option:?} for the {runtime} runtime; known options: {}",
        if known.is_empty() { "none".to_string() } else { known.join(", ") }
    )]
    UnknownOption {
        /// The runtime.
        runtime: String,
        /// The label.
        option: String,
        /// The labels it knows.
        known: Vec<String>,
    },
    /// A runtime option has a value the runtime does not accept.
    #[error("runtime option {option:?} has invalid value {value:?}: {expected}")]
    BadOptionValue {
        /// The label.
        option: String,
        /// Its value.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// The spec asks for something this runtime cannot do (bad user, stop signal, directory...).
    #[error("invalid task spec: {reason}")]
    InvalidSpec {
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A secret or config file could not be written at its target.
    #[error("cannot create {kind} file {target:?}: {reason}")]
    FileTarget {
        /// `secret` or `config`.
        kind: &'static str,
        /// The target path in the task.
        target: String,
        /// Why.
        reason: String,
    },
    /// The directory meant for secret files is not on tmpfs (secrets never touch disk).
    #[error(
        "{path} is not a tmpfs: secret files are only ever written to memory-backed filesystems; \
         choose a directory on tmpfs (such as /dev/shm) or run as root so that one can be mounted"
    )]
    NotTmpfs {
        /// The directory.
        path: String,
    },
    /// The task could not be started.
    #[error("starting task {task} failed: {reason}")]
    StartFailed {
        /// The task.
        task: Id,
        /// Why (the OS or engine error).
        reason: String,
    },
    /// An exec'd command did not finish in time and was killed.
    #[error("command exceeded its timeout ({timeout:?}) and was killed")]
    ExecTimeout {
        /// The timeout.
        timeout: Duration,
    },
    /// The task did not exit within [`crate::runtime::KILL_WAIT`] of `SIGKILL`.
    #[error(
        "task {task} did not exit within {waited:?} of SIGKILL; the kernel or container engine \
         is not reaping it, check the engine's health"
    )]
    KillTimedOut {
        /// The task.
        task: Id,
        /// How long it was given after the kill.
        waited: Duration,
    },
    /// The task's exit could not be observed (the engine's wait failed and the task is gone),
    /// so its exit code is unknown.
    #[error("the exit of task {task} could not be observed: {reason}")]
    ExitUnknown {
        /// The task.
        task: Id,
        /// What failed.
        reason: String,
    },
    /// The container engine refused or failed a request.
    #[error("container engine error during {op}: {message}")]
    Engine {
        /// The operation (`create container`, `stop`, ...).
        op: &'static str,
        /// The engine's message.
        message: String,
    },
    /// An operating-system call failed.
    #[error("{op} failed: {source}")]
    Io {
        /// What was being done.
        op: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl RuntimeError {
    /// Whether the error means the task can never run on this node as specified (the controller
    /// reports it `rejected` rather than `failed`).
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            RuntimeError::NoCommand { .. }
                | RuntimeError::ExecutableNotFound { .. }
                | RuntimeError::ImageNotFound { .. }
                | RuntimeError::UnknownOption { .. }
                | RuntimeError::BadOptionValue { .. }
                | RuntimeError::InvalidSpec { .. }
                | RuntimeError::FileTarget { .. }
                | RuntimeError::NotTmpfs { .. }
        )
    }

    pub(crate) fn io(op: impl Into<String>, source: std::io::Error) -> RuntimeError {
        RuntimeError::Io {
            op: op.into(),
            source,
        }
    }

    pub(crate) fn invalid(reason: impl Into<String>) -> RuntimeError {
        RuntimeError::InvalidSpec {
            reason: reason.into(),
        }
    }
}
