//! The raft state machine: the swarm-core [`SharedStore`], plus the last applied log id and
//! membership, plus the sealed snapshot file (`<dir>/snapshot.snap`, replaced atomically; SwarmKit
//! keeps no old snapshots, neither do we).
//!
//! Applying a [`crate::Proposal`] calls [`SharedStore::apply`] with `Batch { index: log index, timestamp:
//! the leader's stamp, actions }`. The store is deterministic, so a batch it refuses is refused
//! identically on every replica; the refusal is the entry's [`Applied::Rejected`] answer.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder, StorageIOError};
use rand::rngs::StdRng;
use rand::SeedableRng;
use swarm_core::{Batch, SharedStore};

use crate::disk::{Disk, OsDisk};
use crate::error::StorageFault;
use crate::files::{atomic_write_on, ensure_dir_on, read_optional_on};
use crate::keyring::Keyring;
use crate::log_store::fault_to_storage;
use crate::snapshot::{decode_file, encode_file, SnapshotFileError, SnapshotPayload};
use crate::types::{
    Applied, Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};

/// Name of the snapshot file in the snapshot directory.
pub const SNAPSHOT_FILE: &str = "snapshot.snap";

struct Inner {
    store: SharedStore,
    dir: PathBuf,
    disk: Arc<dyn Disk>,
    keys: Arc<Keyring>,
    applied: Mutex<(Option<LogId>, StoredMembership)>,
    current: Mutex<Option<SnapshotMeta>>,
    counter: AtomicU64,
    /// Set at shutdown: snapshot writes stop waiting out a full disk.
    stopping: std::sync::atomic::AtomicBool,
}

/// The state machine handed to openraft. Cloning shares it.
#[derive(Clone)]
pub struct StateMachine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

impl StateMachine {
    /// Opens the snapshot directory and restores `store` from the snapshot, if there is one.
    /// A damaged or tampered snapshot refuses the start.
    pub fn open(
        dir: &Path,
        keys: Arc<Keyring>,
        store: SharedStore,
    ) -> Result<StateMachine, StorageFault> {
        StateMachine::open_on(Arc::new(OsDisk), dir, keys, store)
    }

    /// [`StateMachine::open`] on `disk` (snapshots are written there too).
    pub fn open_on(
        disk: Arc<dyn Disk>,
        dir: &Path,
        keys: Arc<Keyring>,
        store: SharedStore,
    ) -> Result<StateMachine, StorageFault> {
        ensure_dir_on(&*disk, dir)?;
        let path = dir.join(SNAPSHOT_FILE);
        let mut applied = (None, StoredMembership::default());
        let mut current = None;
        if let Some(bytes) = read_optional_on(&*disk, &path)? {
            let payload = read_snapshot_file(&path, &bytes, &keys)?;
            applied = (
                payload.meta.last_log_id,
                payload.meta.last_membership.clone(),
            );
            current = Some(payload.meta);
            store.restore(payload.store);
        }
        Ok(StateMachine {
            inner: Arc::new(Inner {
                store,
                dir: dir.to_path_buf(),
                disk,
                keys,
                applied: Mutex::new(applied),
                current: Mutex::new(current),
                counter: AtomicU64::new(0),
                stopping: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    /// The store this state machine applies to.
    pub fn store(&self) -> &SharedStore {
        &self.inner.store
    }

    /// The last applied log id and membership.
    pub fn applied(&self) -> (Option<LogId>, StoredMembership) {
        self.inner
            .applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The metadata of the current snapshot, if any.
    pub fn current_snapshot_meta(&self) -> Option<SnapshotMeta> {
        self.inner
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn path(&self) -> PathBuf {
        self.inner.dir.join(SNAPSHOT_FILE)
    }

    /// Makes snapshot writes that wait out a disk fault give up (the node is shutting down).
    pub fn stop_retrying(&self) {
        self.inner
            .stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// [`Self::write_file`], waiting out a full disk (or a quota or I/O error) with backoff: openraft
    /// stops for good on a snapshot error, and a snapshot that is not written yet only delays the
    /// purge of the log it covers (openraft purges only after the build is reported).
    fn write_file_retrying(&self, meta: &SnapshotMeta, plain: &[u8]) -> Result<(), StorageFault> {
        let mut backoff = std::time::Duration::from_millis(10);
        loop {
            if let Some(done) = self.write_attempt(meta, plain) {
                return done;
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(std::time::Duration::from_secs(1));
        }
    }

    /// [`Self::write_file_retrying`] for a disk that runs inline ([`Disk::inline`]): on the
    /// calling task, waiting with tokio's timer instead of blocking a thread.
    async fn write_file_waiting(
        &self,
        meta: &SnapshotMeta,
        plain: &[u8],
    ) -> Result<(), StorageFault> {
        let mut backoff = std::time::Duration::from_millis(10);
        loop {
            if let Some(done) = self.write_attempt(meta, plain) {
                return done;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(std::time::Duration::from_secs(1));
        }
    }

    /// One write of the snapshot file: `Some(result)` when done, `None` to retry after a backoff
    /// (a disk fault while the node is not stopping).
    fn write_attempt(&self, meta: &SnapshotMeta, plain: &[u8]) -> Option<Result<(), StorageFault>> {
        match self.write_file(meta, plain) {
            Err(StorageFault::Io { source, path, op })
                if crate::wal::is_disk_fault(&source)
                    && !self
                        .inner
                        .stopping
                        .load(std::sync::atomic::Ordering::SeqCst) =>
            {
                tracing::error!(file = %path.display(), error = %source, op, "cannot write the snapshot; retrying");
                None
            }
            other => Some(other),
        }
    }

    /// Checks a received snapshot against its metadata (the first half of an install).
    fn check_received(
        want: &SnapshotMeta,
        bytes: Vec<u8>,
    ) -> Result<(swarm_secrets::SecretBytes, SnapshotPayload), String> {
        let plain = swarm_secrets::SecretBytes::new(bytes);
        let payload = SnapshotPayload::decode(plain.expose())?;
        if payload.meta.last_log_id != want.last_log_id
            || payload.meta.last_membership != want.last_membership
        {
            return Err("snapshot data does not match its metadata".into());
        }
        Ok((plain, payload))
    }

    /// Replaces the store with an installed snapshot's (once its file is written).
    fn finish_install(&self, want: &SnapshotMeta, payload: SnapshotPayload) {
        self.inner.store.restore(payload.store);
        *self.inner.applied.lock().unwrap_or_else(|e| e.into_inner()) =
            (want.last_log_id, want.last_membership.clone());
    }

    /// Seals and writes `plain` as the current snapshot file (blocking).
    fn write_file(&self, meta: &SnapshotMeta, plain: &[u8]) -> Result<(), StorageFault> {
        let path = self.path();
        let mut rng = StdRng::from_entropy();
        let keys = &self.inner.keys;
        let image = encode_file(&meta.snapshot_id, plain, |p, b| keys.seal(p, b, &mut rng))
            .map_err(|source| StorageFault::Keys {
                file: path.clone(),
                source,
            })?;
        atomic_write_on(&*self.inner.disk, &path, &image)?;
        *self.inner.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(meta.clone());
        Ok(())
    }
}

/// Runs blocking file work `f` on tokio's blocking pool, or right here when the disk runs
/// inline (deterministic simulation: no thread of tokio's pool may decide the schedule).
pub(crate) async fn off_thread<T: Send + 'static>(
    disk: Arc<dyn Disk>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    if disk.inline() {
        Ok(f())
    } else {
        tokio::task::spawn_blocking(f).await
    }
}

/// Opens and decodes a snapshot file, mapping every failure to a fault naming the file and offset.
pub(crate) fn read_snapshot_file(
    path: &Path,
    bytes: &[u8],
    keys: &Keyring,
) -> Result<SnapshotPayload, StorageFault> {
    let (_, plain) = decode_file(bytes, |p, b| keys.open(p, b)).map_err(|e| match e {
        SnapshotFileError::Corrupt { offset, reason } => {
            StorageFault::corrupt(path, offset, reason)
        }
        SnapshotFileError::Tampered { offset, source } => StorageFault::Tampered {
            file: path.to_path_buf(),
            offset,
            source,
        },
    })?;
    let plain = swarm_secrets::SecretBytes::new(plain);
    SnapshotPayload::decode(plain.expose())
        .map_err(|r| StorageFault::corrupt(path, 0, format!("snapshot payload: {r}")))
}

/// Builds a snapshot from a consistent view taken when openraft asked for the builder.
pub struct SnapshotBuilder {
    sm: StateMachine,
    payload: Option<SnapshotPayload>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<openraft::Snapshot<TypeConfig>, StorageError> {
        let Some(payload) = self.payload.take() else {
            return Err(StorageIOError::write_snapshot(
                None,
                openraft::AnyError::error("snapshot built twice"),
            )
            .into());
        };
        let sm = self.sm.clone();
        let meta = payload.meta.clone();
        let join = if sm.inner.disk.inline() {
            let plain = payload.encode();
            let written = sm.write_file_waiting(&payload.meta, &plain).await;
            Ok(written.map(|()| plain))
        } else {
            tokio::task::spawn_blocking(move || {
                let plain = payload.encode();
                sm.write_file_retrying(&payload.meta, &plain)
                    .map(|()| plain)
            })
            .await
        };
        let plain = match join {
            Ok(Ok(p)) => p,
            Ok(Err(fault)) => {
                return Err(fault_to_storage(
                    openraft::ErrorSubject::Snapshot(Some(meta.signature())),
                    openraft::ErrorVerb::Write,
                    fault,
                ))
            }
            Err(e) => {
                return Err(StorageIOError::write_snapshot(
                    Some(meta.signature()),
                    openraft::AnyError::error(e),
                )
                .into())
            }
        };
        Ok(openraft::Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(plain)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok(self.applied())
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut out = Vec::new();
        for entry in entries {
            let id = entry.log_id;
            let answer = match entry.payload {
                EntryPayload::Blank => Applied::Nothing,
                EntryPayload::Membership(m) => {
                    self.inner
                        .applied
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .1 = StoredMembership::new(Some(id), m);
                    Applied::Nothing
                }
                EntryPayload::Normal(p) => {
                    let batch = Batch {
                        index: id.index,
                        timestamp: p.timestamp,
                        actions: p.actions,
                    };
                    match self.inner.store.apply(batch) {
                        Ok(()) => Applied::Committed { index: id.index },
                        Err(e) => Applied::Rejected(e),
                    }
                }
            };
            self.inner
                .applied
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .0 = Some(id);
            out.push(answer);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        let (last_log_id, last_membership) = self.applied();
        let n = self.inner.counter.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match last_log_id {
            Some(l) => format!(
                "{}-{}-{}-{n}",
                l.leader_id.term, l.leader_id.node_id, l.index
            ),
            None => format!("0-0-0-{n}"),
        };
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
            snapshot_id,
        };
        let store = self.inner.store.snapshot();
        SnapshotBuilder {
            sm: self.clone(),
            payload: Some(SnapshotPayload { meta, store }),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let sm = self.clone();
        let want = meta.clone();
        let join = if sm.inner.disk.inline() {
            let install = async {
                let (plain, payload) = StateMachine::check_received(&want, snapshot.into_inner())?;
                sm.write_file_waiting(&want, plain.expose())
                    .await
                    .map_err(|e| e.to_string())?;
                sm.finish_install(&want, payload);
                Ok::<(), String>(())
            };
            Ok(install.await)
        } else {
            tokio::task::spawn_blocking(move || -> Result<(), String> {
                let (plain, payload) = StateMachine::check_received(&want, snapshot.into_inner())?;
                sm.write_file_retrying(&want, plain.expose())
                    .map_err(|e| e.to_string())?;
                sm.finish_install(&want, payload);
                Ok(())
            })
            .await
        };
        match join {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(StorageIOError::write_snapshot(
                Some(meta.signature()),
                openraft::AnyError::error(reason),
            )
            .into()),
            Err(e) => Err(StorageIOError::write_snapshot(
                Some(meta.signature()),
                openraft::AnyError::error(e),
            )
            .into()),
        }
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<openraft::Snapshot<TypeConfig>>, StorageError> {
        let Some(meta) = self.current_snapshot_meta() else {
            return Ok(None);
        };
        let sm = self.clone();
        let sig = meta.signature();
        let join = off_thread(
            self.inner.disk.clone(),
            move || -> Result<Vec<u8>, StorageFault> {
                let path = sm.path();
                let bytes = read_optional_on(&*sm.inner.disk, &path)?
                    .ok_or_else(|| StorageFault::corrupt(&path, 0, "snapshot file disappeared"))?;
                let (_, plain) =
                    decode_file(&bytes, |p, b| sm.inner.keys.open(p, b)).map_err(|e| match e {
                        SnapshotFileError::Corrupt { offset, reason } => {
                            StorageFault::corrupt(&path, offset, reason)
                        }
                        SnapshotFileError::Tampered { offset, source } => StorageFault::Tampered {
                            file: path.clone(),
                            offset,
                            source,
                        },
                    })?;
                Ok(plain)
            },
        )
        .await;
        match join {
            Ok(Ok(plain)) => Ok(Some(openraft::Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(plain)),
            })),
            Ok(Err(fault)) => Err(fault_to_storage(
                openraft::ErrorSubject::Snapshot(Some(sig)),
                openraft::ErrorVerb::Read,
                fault,
            )),
            Err(e) => {
                Err(StorageIOError::read_snapshot(Some(sig), openraft::AnyError::error(e)).into())
            }
        }
    }
}
