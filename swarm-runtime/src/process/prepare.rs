//! Working out how to run a task (`prepare`): options, user, environment, program lookup, mounts
//! and staged files; and the child setup for the task and for execs into it.

use std::path::PathBuf;
use std::time::Duration;

use swarm_core::objects::service::MountKind;

use super::spawn::{self, MountOp, Setup};
use super::{user, ProcessRuntime, DEFAULT_PATH, OPTIONS};
use crate::error::RuntimeError;
use crate::files::{is_root, Staged, SECRETS_DIR};
use crate::runtime::{runtime_options, TaskConfig};
use crate::signal::parse_signal;

/// What `prepare` worked out, used by `start` and `exec`.
#[derive(Debug)]
pub(super) struct Prepared {
    pub(super) program: PathBuf,
    pub(super) args: Vec<String>,
    pub(super) env: Vec<(String, String)>,
    pub(super) path_var: String,
    pub(super) dir: Option<String>,
    pub(super) ids: Option<(u32, u32, Vec<u32>)>,
    pub(super) hostname: Option<String>,
    pub(super) namespaces: bool,
    pub(super) mounts: Vec<(PathBuf, String, bool)>,
    pub(super) tmpfs_mounts: Vec<(String, String)>,
    pub(super) stop_signal: i32,
    pub(super) grace: Duration,
    pub(super) staged: Staged,
    pub(super) mountpoints: Vec<PathBuf>,
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
        // SAFETY: getuid has no preconditions.
        let my_uid = unsafe { libc::getuid() };
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
        let mut mounts = Vec::new();
        let mut tmpfs_mounts = Vec::new();
        for m in &spec.mounts {
            if !namespaces {
                return Err(RuntimeError::invalid(format!(
                    "mount on {:?} needs private mount namespaces (an agent running as root)",
                    m.target
                )));
            }
            match m.kind {
                MountKind::Bind => {
                    mounts.push((PathBuf::from(&m.source), m.target.clone(), m.read_only))
                }
                MountKind::Tmpfs => {
                    let o = m.tmpfs.clone().unwrap_or_default();
                    let mode = if o.mode == 0 { 0o1777 } else { o.mode };
                    let mut data = format!("mode={mode:o}");
                    if o.size_bytes > 0 {
                        data.push_str(&format!(",size={}", o.size_bytes));
                    }
                    tmpfs_mounts.push((m.target.clone(), data));
                }
                MountKind::Volume => {
                    return Err(RuntimeError::invalid(format!(
                    "volume mount on {:?}: the process runtime has no volumes; use a bind mount",
                    m.target
                )))
                }
            }
        }
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
            mounts,
            tmpfs_mounts,
            stop_signal,
            grace: spec.effective_stop_grace_period(),
            staged,
            mountpoints: Vec::new(),
        };
        if namespaces {
            for f in prep.staged.files.iter().filter(|f| !f.in_secrets_dir) {
                let kind = if f.target.starts_with(SECRETS_DIR) {
                    "secret"
                } else {
                    "config"
                };
                if let Err(e) = self.inner.acquire_mountpoint(&f.target, kind) {
                    self.inner.release_mountpoints(&prep.mountpoints);
                    self.inner.stage.unstage(&config.task_id);
                    return Err(e);
                }
                prep.mountpoints.push(PathBuf::from(&f.target));
            }
        } else {
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
                    s.join
                        .push((spawn::open_ns(pid, "mnt")?, libc::CLONE_NEWNS));
                    s.join
                        .push((spawn::open_ns(pid, "uts")?, libc::CLONE_NEWUTS));
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
        for (src, target, ro) in &prep.mounts {
            out.push(spawn::bind(src, target, *ro)?);
        }
        for (target, data) in &prep.tmpfs_mounts {
            out.push(spawn::tmpfs(target, data)?);
        }
        // Hide every task's staged files (including ours: they are bound above).
        let root = self.inner.stage.root().display().to_string();
        out.push(spawn::tmpfs(&root, "mode=0,size=4k")?);
        Ok(out)
    }
}
