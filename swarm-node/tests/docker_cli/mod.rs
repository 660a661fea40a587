//! The real `docker` CLI pointed at a test server's socket, for the `api_*` CLI tests: each
//! command runs with `DOCKER_HOST=unix://<socket>` and a fresh `DOCKER_CONFIG`, so it can only
//! reach that server, and is bounded by a timeout.
#![allow(dead_code)]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

/// What a command printed and how it exited.
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// The `docker` binary on PATH, if any.
pub fn docker_binary() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("docker"))
        .find(|p| p.is_file())
}

/// Runs `docker args` against the server at `sock` with `config` as its config directory,
/// feeding `stdin` if given.
pub async fn docker(sock: &Path, config: &Path, args: &[&str], stdin: Option<&[u8]>) -> Out {
    let bin = docker_binary().expect("docker binary");
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(args)
        .env("DOCKER_HOST", format!("unix://{}", sock.display()))
        .env("DOCKER_CONFIG", config)
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_API_VERSION")
        .env_remove("DOCKER_TLS_VERIFY")
        .env("DOCKER_CLI_HINTS", "false")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn docker");
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(data).await.expect("stdin");
        drop(pipe);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("docker {args:?} did not finish in 60 s"))
        .expect("docker output");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
