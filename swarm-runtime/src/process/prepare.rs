//! Working out how to run a task (`prepare`): options, user, environment, program lookup, mounts,
//! host ports and staged files; and the child setup for the task and for execs into it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use swarm_core::objects::service::PortConfig;

use super::mounts::{self, MountPlan, PointKind, TaskMount};
use super::ports;
use super::spawn::{self, MountOp, Setup};
use super::{user, ProcessRuntime, DEFAULT_PATH, OPTIONS};
use crate::error::RuntimeError;
use crate::files::{is_root, Staged, SECRETS_DIR};
use crate::runtime::{runtime_options, TaskConfig};
use crate::signal::parse_signal;

/// What `prepare` worked out, used by `start` and `exec`. Serialisable: a supervised task's
/// supervisor keeps it for the runtime that adopts the task after a restart.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Prepared {
    pub(super) program: PathBuf,
    pub(super) args: Vec<String>,
    pub(super) env: Vec<(String, String)>,
    pub(super) path_var: String,
    pub(super) dir: Option<String>,
    pub(super) ids: Option<(u32, u32, Vec<u32>)>,
    pub(super) hostname: Option<String>,
    pub(super) namespaces: bool,
    /// The spec's mounts, in spec order.
    pub(super) mounts: Vec<TaskMount>,
    pub(super) stop_signal: i32,
    pub(super) grace: Duration,
    pub(super) staged: Staged,
    /// Mount points created on the host for this task (released when it exits).
    pub(super) mountpoints: Vec<PathBuf>,
    /// Anonymous volume directories (removed with the task).
    pub(super) anonymous_volumes: Vec<PathBuf>,
    /// Host-mode ports, published port = target port (held until the task exits).
    pub(super) host_ports: Vec<PortConfig>,
}

impl Prepared {
    /// Deletes the task's anonymous volumes (named ones outlive it).
    pub(super) fn remove_volumes(&self) {
        for dir in &self.anonymous_volumes {
            if let Err(e) = std::fs::remove_dir_all(dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    let dir = dir.display();
                    tracing::warn!(%dir, error = %e, "could not remove an anonymous volume");
                }
            }
        }
    }
}

fn lookup_env<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

impl ProcessRuntime {
    pub(super) fn build(&self, config: &TaskConfig) -> Result<Prepared, RuntimeError> {
        let spec = &config.container;
        let opts = runtime_options(&spec.labels, "process", OPTIONS)?;
        let namespaces = match opts.get("namespaces").map(String::as_str) {
            None => self.inner.namespaces,
            Some("true") if is_root() => true,
            Some("true") => {
                return Err(RuntimeError::invalid(
                    "swarm.runtime.process.namespaces=true needs an agent running as root",
                ))
            }
            Some("false") => false,
            Some(v) => {
                return Err(RuntimeError::BadOptionValue {
                    option: "swarm.runtime.process.namespaces".into(),
                    value: v.to_string(),
                    expected: "true or false",
                })
            }
        };
        // With no image entrypoint to prepend, the argv is the command followed by the arguments;
        // `docker service create IMAGE sleep 1000` sends only arguments, which then are the command,
        // as they would be for an image without an ENTRYPOINT.
        let argv: Vec<&String> = spec.command.iter().chain(&spec.args).collect();
        let Some((cmd0, cmd_rest)) = argv.split_first() else {
            return Err(RuntimeError::NoCommand { runtime: "process" });
        };
        let stop_signal = parse_signal(&spec.stop_signal)?;
        if spec.read_only {
            return Err(RuntimeError::invalid(
                "read-only root filesystems are not supported by the process runtime",
            ));
        }
        let want_user = !spec.user.is_empty() || !spec.groups.is_empty();
        let resolved = user::resolve(&spec.user, &spec.groups)?;
        let my_uid = rustix::process::getuid().as_raw();
        let ids = if is_root() {
            Some((resolved.uid, resolved.gid, resolved.groups.clone()))
        } else if want_user && resolved.uid != my_uid {
            return Err(RuntimeError::invalid(format!(
                "running as user {:?} needs an agent running as root",
                spec.user
            )));
        } else {
            None
        };
        let hostname = (!spec.hostname.is_empty()).then(|| spec.hostname.clone());
        let mut env = vec![
            ("PATH".to_string(), DEFAULT_PATH.to_string()),
            ("HOME".to_string(), resolved.home.clone()),
        ];
        if let Some(h) = &hostname {
            env.push(("HOSTNAME".to_string(), h.clone()));
        }
        for e in &spec.env {
            let (k, v) = e.split_once('=').unwrap_or((e.as_str(), ""));
            if k.is_empty() {
                return Err(RuntimeError::invalid(format!(
                    "environment entry {e:?} has no variable name"
                )));
            }
            env.retain(|(ek, _)| ek != k);
            env.push((k.to_string(), v.to_string()));
        }
        let path_var = lookup_env(&env, "PATH").unwrap_or(DEFAULT_PATH).to_string();
        let program = spawn::find_program(cmd0, &path_var)?;
        let dir = (!spec.dir.is_empty()).then(|| spec.dir.clone());
        if let Some(d) = &dir {
            if !std::path::Path::new(d).is_dir() {
                return Err(RuntimeError::invalid(format!(
                    "working directory {d:?} does not exist on this node"
                )));
            }
        }
        let plan = mounts::plan(
            &spec.mounts,
            &config.task_id,
            self.inner.volumes_dir.as_deref(),
            namespaces,
        )?;
        let host_ports = ports::host_ports(&config.ports)?;
        // Everything above only looked; from here on things are created, and a failure undoes
        // them all so that a rejected task leaves nothing behind.
        let chown = is_root();
        let staged = self.inner.stage.stage(config, chown)?;
        let mut prep = Prepared {
            program,
            args: cmd_rest.iter().map(|a| (*a).clone()).collect(),
            env,
            path_var,
            dir,
            ids,
            hostname,
            namespaces,
            mounts: Vec::new(),
            stop_signal,
            grace: spec.effective_stop_grace_period(),
            staged,
            mountpoints: Vec::new(),
            anonymous_volumes: Vec::new(),
            host_ports: Vec::new(),
        };
        if let Err(e) = self.acquire(config, &mut prep, plan, host_ports) {
            self.inner.release(&config.task_id, &prep);
            prep.remove_volumes();
            return Err(e);
        }
        if !namespaces {
            prep.env.push((
                "SWARM_SECRETS_DIR".into(),
                prep.staged.secrets_dir.display().to_string(),
            ));
            prep.env.push((
                "SWARM_CONFIGS_DIR".into(),
                prep.staged.files_dir.display().to_string(),
            ));
        }
        Ok(prep)
    }

    /// Holds the host ports, creates the volume directories and the mount points. Records each
    /// thing in `prep` as soon as it exists, so that the caller can undo a partial success.
    fn acquire(
        &self,
        config: &TaskConfig,
        prep: &mut Prepared,
        plan: MountPlan,
        host_ports: Vec<PortConfig>,
    ) -> Result<(), RuntimeError> {
        {
            let mut table = self.inner.ports();
            table.reserve(&config.task_id, &host_ports)?;
            table.reserve_ingress_targets(&config.task_id, &config.ports)?;
        }
        prep.host_ports = host_ports;
        for dir in &plan.named {
            mounts::create_volume_dir(dir)?;
        }
        for dir in plan.anonymous {
            mounts::create_volume_dir(&dir)?;
            prep.anonymous_volumes.push(dir);
        }
        prep.mounts = plan.mounts;
        if !prep.namespaces {
            return Ok(());
        }
        let mut mp = self.inner.mountpoints();
        for f in prep.staged.files.iter().filter(|f| !f.in_secrets_dir) {
            let kind = if f.target.starts_with(SECRETS_DIR) {
                "secret"
            } else {
                "config"
            };
            let held = mp
                .acquire(Path::new(&f.target), PointKind::File)
                .map_err(|reason| RuntimeError::FileTarget {
                    kind,
                    target: f.target.clone(),
                    reason,
                })?;
            prep.mountpoints.extend(held);
        }
        for m in &prep.mounts {
            let held = mp
                .acquire(Path::new(m.target()), m.point_kind())
                .map_err(|reason| {
                    RuntimeError::invalid(format!("mount on {:?}: {reason}", m.target()))
                })?;
            prep.mountpoints.extend(held);
        }
        Ok(())
    }

    /// The child setup for the task itself (`join` = None) or for an exec into it.
    pub(super) fn setup(
        &self,
        prep: &Prepared,
        join_pid: Option<u32>,
    ) -> Result<Setup, RuntimeError> {
        let mut s = Setup::default();
        if prep.namespaces {
            match join_pid {
                Some(pid) => {
                    use rustix::thread::LinkNameSpaceType;
                    s.join
                        .push((spawn::open_ns(pid, "mnt")?, LinkNameSpaceType::Mount));
                    s.join.push((
                        spawn::open_ns(pid, "uts")?,
                        LinkNameSpaceType::HostNameAndNISDomainName,
                    ));
                }
                None => {
                    s.unshare = true;
                    s.mounts = self.namespace_mounts(prep)?;
                    s.hostname = prep
                        .hostname
                        .as_ref()
                        .map(|h| spawn::cstring(h, "hostname"))
                        .transpose()?;
                }
            }
        }
        s.ids = prep.ids.clone();
        s.dir = prep
            .dir
            .as_ref()
            .map(|d| spawn::cstring(d, "working directory"))
            .transpose()?;
        Ok(s)
    }

    fn namespace_mounts(&self, prep: &Prepared) -> Result<Vec<MountOp>, RuntimeError> {
        let mut out = vec![spawn::bind(&prep.staged.secrets_dir, SECRETS_DIR, true)?];
        for f in prep.staged.files.iter().filter(|f| !f.in_secrets_dir) {
            out.push(spawn::bind(&f.host, &f.target, true)?);
        }
        for m in &prep.mounts {
            out.push(match m {
                TaskMount::Bind {
                    source,
                    target,
                    read_only,
                } => spawn::bind(source, target, *read_only)?,
                TaskMount::Tmpfs {
                    target,
                    data,
                    read_only,
                } => spawn::tmpfs(target, data, *read_only)?,
            });
        }
        // Hide every task's staged files (including ours: they are bound above).
        let root = self.inner.stage.root().display().to_string();
        out.push(spawn::tmpfs(&root, "mode=0,size=4k", false)?);
        if self.inner.supervisor.is_some() {
            // A supervised task is the init of its own PID namespace (see `supervisor`).
            out.push(spawn::procfs());
        }
        Ok(out)
    }
}
