//! Start-up checks that the data directory still holds everything it had: nothing is repaired or
//! created here, a failed check refuses the start with [`StorageFault::Missing`] naming what is
//! gone (the key file, the committed-index file, the snapshot behind the purge point, committed
//! log entries). The WAL itself refuses damaged records ([`crate::wal::frame`]).

use std::path::Path;

use crate::disk::{exists, Disk};
use crate::error::StorageFault;
use crate::files::{tighten_on, RaftStateFile, RAFT_STATE_FILE};
use crate::state_machine::StateMachine;
use crate::wal::{OpenReport, Wal};

/// Refuses a data directory whose key file is gone while raft state exists, and tightens the
/// modes of existing files. Returns whether the directory held raft state.
pub(crate) fn check_before_open(disk: &dyn Disk, dir: &Path) -> Result<bool, StorageFault> {
    let wal_dir = dir.join("wal");
    let has_segments = disk
        .list_dir(&wal_dir)
        .map(|paths| {
            paths
                .iter()
                .any(|p| p.extension().is_some_and(|x| x == "wal"))
        })
        .unwrap_or(false);
    let snapshot = dir.join("snap").join(crate::state_machine::SNAPSHOT_FILE);
    let had_state =
        has_segments || exists(disk, &dir.join(RAFT_STATE_FILE)) || exists(disk, &snapshot);
    let keys = dir.join(crate::keyring::KEY_FILE);
    if had_state && !exists(disk, &keys) {
        return Err(StorageFault::Missing {
            path: keys,
            what:
                "key file missing, but the directory holds a raft log or state sealed with its keys"
                    .into(),
        });
    }
    for f in [keys, dir.join(RAFT_STATE_FILE), snapshot] {
        tighten_on(disk, &f, 0o600)?;
    }
    Ok(had_state)
}

/// Refuses to start when the directory lost state it had: the committed-index file, the snapshot
/// the log was purged behind, or committed entries (the log ends before the committed index).
pub(crate) fn check_nothing_lost(
    dir: &Path,
    wal: &Wal,
    report: &OpenReport,
    state: &RaftStateFile,
    sm: &StateMachine,
) -> Result<(), StorageFault> {
    let applied = sm.applied().0.map(|l| l.index);
    if let Some(p) = state.last_purged {
        if applied < Some(p.index) {
            return Err(StorageFault::Missing {
                path: dir.join("snap").join(crate::state_machine::SNAPSHOT_FILE),
                what: format!(
                    "snapshot missing: the log was purged up to index {} but the snapshot covers {}",
                    p.index,
                    applied.map_or("nothing".to_string(), |a| format!("up to index {a}"))
                ),
            });
        }
    }
    let last = wal.log_state().1.map(|l| l.index);
    let have = last.max(applied);
    if let Some(c) = report.committed {
        if have < Some(c.index) {
            return Err(StorageFault::Missing {
                path: wal.dir().to_path_buf(),
                what: format!(
                    "log ends at {} but index {} was committed: committed entries are missing{}",
                    have.map_or("the start (it is empty)".to_string(), |h| format!(
                        "index {h}"
                    )),
                    c.index,
                    report
                        .truncated_tail
                        .as_ref()
                        .map(|(f, o, _)| format!(
                            " (a torn tail was cut from {} at byte {o})",
                            f.display()
                        ))
                        .unwrap_or_default()
                ),
            });
        }
    }
    Ok(())
}
