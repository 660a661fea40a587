//! A ready-made process-runtime supervisor executable for embedders that do not want to add a
//! supervisor mode to their own binary: `swarm-supervisor <socket>`. Point
//! `ProcessOptions::supervisor` at it with no extra arguments. It is what `swarm-node supervise`
//! does, and what this crate's tests use.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(socket) = std::env::args_os().nth(1) else {
        eprintln!("usage: swarm-supervisor <socket>");
        return ExitCode::from(2);
    };
    match swarm_runtime::process::supervise(std::path::Path::new(&socket)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("swarm-supervisor: {e}");
            ExitCode::FAILURE
        }
    }
}
