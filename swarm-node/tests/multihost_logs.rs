//! `docker service logs` and `docker service ps` errors gathered from every host: three
//! `swarm-node run --runtime process` daemons in network namespaces (`multihost_support/`), a
//! leader (host0), a follower manager (host1) and a worker (host2), driven by the docker CLI.
//!
//! What it proves, and why the setup proves it:
//! - A task failing on the worker (a command that does not exist; a command exiting 3) shows its
//!   ERROR text in `docker service ps --no-trunc` through the follower manager: the error crossed
//!   from the worker's agent to the leader (status updates) and into every manager's store.
//! - `docker service logs` through the follower shows the lines of every replica, one per host
//!   (spread puts one replica on each node): the follower holds neither the worker's dispatcher
//!   session nor the leader's tasks, so the lines of host0 and host2 can only have come from those
//!   hosts over `net::logs`. Each line names its task and node (`--no-trunc` prefixes
//!   `service.slot.taskid@hostname`, built by the CLI from the details the API sent), checked
//!   against `service ps`. stdout and stderr arrive on their own streams; `--tail 1` keeps one
//!   line per task; `--timestamps` prefixes the time; `--since` keeps the lines written after it;
//!   `docker service logs TASK` reads one task.
//! - `--follow` through the follower sees a line each replica writes after the follow started (the
//!   replicas wait for a file the test creates once the follow has shown their first lines).
//! - Killing the worker's daemon (SIGKILL) during a follow ends the follow with an error naming the
//!   lost node (Docker's "error from daemon in stream"), instead of hanging; once that node is
//!   down, a plain `service logs` prints every line it can read, then says the down node's part
//!   is missing.

mod multihost_support;

use std::process::Stdio;

use multihost_support::{docker_cli, Cluster, Host, Runtime, TIMEOUT};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// `docker args` against `h`, streamed: the child with its stdout piped.
fn docker_stream(h: &Host, args: &[&str]) -> tokio::process::Child {
    Command::new(docker_cli().expect("docker CLI"))
        .args(args)
        .env("DOCKER_HOST", format!("unix://{}", h.socket().display()))
        .env("DOCKER_CONFIG", h.dir().join("docker-config"))
        .env("DOCKER_CLI_HINTS", "false")
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_API_VERSION")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("docker runs")
}

/// Reads `lines` until `pred` holds for what was read so far (bounded by [`TIMEOUT`]).
async fn read_until(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    seen: &mut Vec<String>,
    what: &str,
    pred: impl Fn(&[String]) -> bool,
) {
    let r = tokio::time::timeout(TIMEOUT, async {
        while !pred(seen) {
            match lines.next_line().await {
                Ok(Some(l)) => seen.push(l),
                _ => return false,
            }
        }
        true
    })
    .await;
    assert!(
        matches!(r, Ok(true)),
        "waiting for {what} in the follow; read so far:\n{}",
        seen.join("\n")
    );
}

/// The `name.id@node` prefixes `service logs --no-trunc` gives the running tasks of `service`.
async fn prefixes(h: &Host, service: &str) -> Vec<String> {
    let out = h
        .ok(&[
            "service",
            "ps",
            service,
            "--no-trunc",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Name}}.{{.ID}}@{{.Node}}",
        ])
        .await;
    out.lines().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_task_errors_gather_from_every_host_through_a_follower() {
    let Some(mut c) = Cluster::new(3, Runtime::Process) else {
        return;
    };
    c.start_all().await;
    c.form(1, 1).await;
    let h0 = c.host(0);
    let h1 = c.host(1);
    h1.wait_for(
        "3 ready nodes seen by the follower",
        &["node", "ls", "--format", "{{.Hostname}} {{.Status}}"],
        |out| out.lines().filter(|l| l.ends_with(" Ready")).count() == 3,
    )
    .await;

    // Task errors from the worker, through the follower.
    for (name, cmd, want) in [
        (
            "missing",
            vec!["/nonexistent/swarm-logs-test-cmd"],
            "swarm-logs-test-cmd",
        ),
        ("exits", vec!["sh", "-c", "exit 3"], "non-zero exit (3)"),
    ] {
        let mut args = vec![
            "service",
            "create",
            "--detach",
            "--name",
            name,
            "--restart-condition",
            "none",
            "--constraint",
            "node.role==worker",
            "busybox",
        ];
        args.extend(cmd);
        h0.ok(&args).await;
        let out = h1
            .wait_for(
                &format!("the worker's error for {name}"),
                &[
                    "service",
                    "ps",
                    name,
                    "--no-trunc",
                    "--format",
                    "{{.Node}}|{{.CurrentState}}|{{.Error}}",
                ],
                |out| {
                    out.lines()
                        .any(|l| l.starts_with("host2|") && l.contains(want))
                },
            )
            .await;
        assert!(
            out.contains("Failed") || out.contains("Rejected"),
            "{name}: {out}"
        );
        h0.ok(&["service", "rm", name]).await;
    }

    // A service with one replica per host; each writes a line to stdout and one to stderr, then
    // waits for the trigger file and writes a last line.
    let scratch = tempfile::tempdir().expect("a scratch dir");
    let trigger = scratch.path().join("go");
    let script = format!(
        "echo hello-out; echo hello-err >&2; while [ ! -e {} ]; do sleep 0.2; done; echo later-line; exec sleep 3600",
        trigger.display()
    );
    h0.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "talk",
        "--replicas",
        "3",
        "busybox",
        "sh",
        "-c",
        &script,
    ])
    .await;
    h1.wait_replicas("talk", "3/3").await;
    let want = prefixes(h1, "talk").await;
    assert_eq!(want.len(), 3, "{want:?}");
    let nodes: std::collections::BTreeSet<&str> = want
        .iter()
        .filter_map(|p| p.rsplit_once('@').map(|(_, n)| n))
        .collect();
    assert_eq!(nodes.len(), 3, "one replica per host: {want:?}");

    // Every replica's lines through the follower, each named by its task and node.
    let o = h1.docker(&["service", "logs", "--no-trunc", "talk"]).await;
    assert_eq!(o.code, 0, "{}\n{}", o.stdout, o.stderr);
    for p in &want {
        let out_line = o
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{p} ")) || l.starts_with(&format!("{p}|")));
        let out_line = out_line.unwrap_or_else(|| panic!("no stdout line of {p}:\n{}", o.stdout));
        assert!(out_line.ends_with("| hello-out"), "{out_line}");
        assert!(
            o.stderr
                .lines()
                .any(|l| l.starts_with(p.as_str()) && l.ends_with("| hello-err")),
            "no stderr line of {p}:\n{}",
            o.stderr
        );
    }
    assert_eq!(o.stdout.lines().count(), 3, "{}", o.stdout);

    // --tail 1: one line of each task (whichever of its two it wrote last); --timestamps: the
    // time first.
    let o = h1
        .docker(&["service", "logs", "--no-trunc", "--tail", "1", "talk"])
        .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let tails: Vec<&str> = o.stdout.lines().chain(o.stderr.lines()).collect();
    assert_eq!(tails.len(), 3, "{tails:?}");
    for p in &want {
        assert_eq!(
            tails.iter().filter(|l| l.starts_with(p.as_str())).count(),
            1,
            "{p}: {tails:?}"
        );
    }
    let o = h1
        .docker(&["service", "logs", "--timestamps", "--no-task-ids", "talk"])
        .await;
    // The CLI puts the time first: `TIME talk.1@host0    | hello-out`.
    assert_eq!(o.stdout.lines().count(), 3, "{}", o.stdout);
    for l in o.stdout.lines() {
        let (time, rest) = l.split_once(' ').unwrap_or_else(|| panic!("a time: {l}"));
        assert!(time.len() > 20 && time.ends_with('Z'), "{l}");
        assert!(
            rest.starts_with("talk.") && rest.ends_with("| hello-out"),
            "{l}"
        );
    }

    // One task, the worker's, by its id.
    let worker_task = want
        .iter()
        .find(|p| p.ends_with("@host2"))
        .and_then(|p| p.rsplit_once('@'))
        .and_then(|(name, _)| name.rsplit_once('.'))
        .map(|(_, id)| id.to_string())
        .expect("the worker's task");
    let o = h1.docker(&["service", "logs", &worker_task]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.stdout.lines().count(), 1, "{}", o.stdout);
    assert!(o.stdout.contains("hello-out"), "{}", o.stdout);

    // --follow through the follower sees the lines written after it started.
    let mut follow = docker_stream(h1, &["service", "logs", "--no-trunc", "--follow", "talk"]);
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    read_until(&mut lines, &mut seen, "every replica's first line", |s| {
        s.iter().filter(|l| l.ends_with("| hello-out")).count() == 3
    })
    .await;
    // Every first line was written before this moment, every later line after it.
    let before_trigger = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970");
    std::fs::write(&trigger, b"").expect("the trigger file");
    read_until(&mut lines, &mut seen, "every replica's later line", |s| {
        s.iter().filter(|l| l.ends_with("| later-line")).count() == 3
    })
    .await;
    for p in &want {
        assert!(
            seen.iter()
                .any(|l| l.starts_with(p.as_str()) && l.ends_with("| later-line")),
            "no later line of {p}:\n{}",
            seen.join("\n")
        );
    }
    let _ = follow.kill().await;

    // --since (the CLI sends a Unix time): only the lines written after it, from every host.
    let since = format!(
        "{}.{:09}",
        before_trigger.as_secs(),
        before_trigger.subsec_nanos()
    );
    let o = h1
        .docker(&["service", "logs", "--no-trunc", "--since", &since, "talk"])
        .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.stderr.trim(), "", "{}", o.stderr);
    let later: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(later.len(), 3, "{later:?}");
    for p in &want {
        assert!(
            later
                .iter()
                .any(|l| l.starts_with(p.as_str()) && l.ends_with("| later-line")),
            "{p}: {later:?}"
        );
    }

    // A worker lost during a follow ends it with an error naming the node.
    let worker_id = c.host(2).node_id().await;
    let mut follow = docker_stream(h1, &["service", "logs", "--follow", "talk"]);
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    read_until(&mut lines, &mut seen, "the lines so far", |s| {
        s.iter().filter(|l| l.ends_with("| later-line")).count() == 3
    })
    .await;
    c.host_mut(2).kill().await;
    let out = tokio::time::timeout(TIMEOUT, follow.wait_with_output())
        .await
        .expect("the follow ends once the worker is lost")
        .expect("the follow's output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("Error grabbing logs") && stderr.contains(&worker_id),
        "{stderr}"
    );

    // Once the worker is down, a plain `service logs` gives every line it can read and then
    // says which part it could not (the task on the down node), as Docker does.
    let h1 = c.host(1);
    h1.wait_for(
        "the worker marked down",
        &["node", "ls", "--format", "{{.Hostname}} {{.Status}}"],
        |out| out.lines().any(|l| l == "host2 Down"),
    )
    .await;
    let o = h1.docker(&["service", "logs", "--no-trunc", "talk"]).await;
    assert_ne!(o.code, 0, "{}", o.stdout);
    for p in want.iter().filter(|p| !p.ends_with("@host2")) {
        assert!(
            o.stdout
                .lines()
                .any(|l| l.starts_with(p.as_str()) && l.ends_with("| hello-out")),
            "{p}: {}",
            o.stdout
        );
    }
    assert!(
        o.stderr.contains("Error grabbing logs")
            && o.stderr.contains("incomplete log stream")
            && o.stderr
                .contains(&format!("node {worker_id} is not available")),
        "{}",
        o.stderr
    );
    drop(scratch);
}
