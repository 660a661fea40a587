//! [`KeyManager`]: the per-manager key hierarchy as a small explicit state machine (DEK rotation,
//! KEK rotation, autolock), with no I/O: it returns [`KeyFile`]s for the caller to write.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rand_core::CryptoRngCore;

use crate::kdf::Salt;
use crate::key_file::{KeyFile, PendingDek, StoredKek, WrappedSecret};
use crate::keys::{Dek, Kek, KeyId, KeyMaterial};
use crate::place::{KeyPurpose, RecordPlace};
use crate::record;
use crate::startup::{LockedKeys, NewKek, Startup};
use crate::status::{DekPhase, KeyStatus};
use crate::{Error, SecretBytes};

/// The state that goes to disk, kept together so a transition can build the next one and commit it
/// only once the new key file was built.
#[derive(Clone)]
struct Durable {
    kek: Kek,
    stored_kek: StoredKek,
    current: Dek,
    pending: Option<(Dek, u64)>,
    dek_rotation_requested: bool,
    /// Sorted by purpose, no reserved purposes.
    secrets: Vec<(KeyPurpose, SecretBytes)>,
}

impl Durable {
    fn to_file(
        &self,
        generation: u64,
        rng: &mut (impl CryptoRngCore + ?Sized),
    ) -> Result<KeyFile, Error> {
        let dek_pending = match &self.pending {
            Some((dek, boundary)) => Some(PendingDek {
                wrapped: self.kek.wrap_dek(&KeyPurpose::RaftDekPending, dek, rng)?,
                boundary: *boundary,
            }),
            None => None,
        };
        let secrets = self
            .secrets
            .iter()
            .map(|(purpose, secret)| {
                let wrapped = self.kek.wrap(purpose, secret.expose(), rng)?;
                Ok(WrappedSecret {
                    purpose: purpose.clone(),
                    wrapped,
                })
            })
            .collect::<Result<_, Error>>()?;
        Ok(KeyFile {
            generation,
            kek: self.stored_kek.clone(),
            kek_id: self.kek.id(),
            dek_current: self
                .kek
                .wrap_dek(&KeyPurpose::RaftDek, &self.current, rng)?,
            dek_pending,
            dek_rotation_requested: self.dek_rotation_requested,
            secrets,
        })
    }

    fn from_file(file: &KeyFile, kek: Kek) -> Result<Self, Error> {
        let foreign = |e| match e {
            Error::UnknownKey { .. } => Error::MalformedKeyFile {
                reason: "a key in it was wrapped by another KEK",
            },
            other => other,
        };
        let current = kek
            .unwrap_dek(&KeyPurpose::RaftDek, &file.dek_current)
            .map_err(foreign)?;
        let pending = match &file.dek_pending {
            Some(p) => Some((
                kek.unwrap_dek(&KeyPurpose::RaftDekPending, &p.wrapped)
                    .map_err(foreign)?,
                p.boundary,
            )),
            None => None,
        };
        let mut secrets: Vec<(KeyPurpose, SecretBytes)> = Vec::with_capacity(file.secrets.len());
        for s in &file.secrets {
            if s.purpose.is_reserved() || secrets.last().is_some_and(|(prev, _)| *prev >= s.purpose)
            {
                return Err(Error::MalformedKeyFile {
                    reason: "stored secrets are unsorted, duplicated or use a reserved purpose",
                });
            }
            secrets.push((
                s.purpose.clone(),
                kek.unwrap(&s.purpose, &s.wrapped).map_err(foreign)?,
            ));
        }
        Ok(Self {
            kek,
            stored_kek: file.kek.clone(),
            current,
            pending,
            dek_rotation_requested: file.dek_rotation_requested,
            secrets,
        })
    }

    fn sealing_key(&self) -> &Dek {
        self.pending.as_ref().map_or(&self.current, |(dek, _)| dek)
    }
}

/// One manager's key hierarchy: DEKs that seal the raft log and snapshots, a KEK that wraps them and
/// the node's secrets, autolock, and every rotation, as a state machine without I/O.
///
/// # States and what is on disk
///
/// Two independent axes are persisted in the [`KeyFile`]:
///
/// | KEK axis | on disk | restart ([`KeyManager::restart`]) |
/// |---|---|---|
/// | **Autolock off** | `kek: Plain(KEK)`; DEKs and secrets wrapped with it | [`Startup::Unlocked`] at once |
/// | **Autolock on** | `kek: UnlockKey { kdf, salt }` and `kek_id`; the KEK = argon2id(unlock key, salt) is never stored | [`Startup::Locked`]; [`LockedKeys::unlock`] gives a manager or [`Error::WrongUnlockKey`] |
///
/// | DEK axis | on disk | seals with | opens with | restart |
/// |---|---|---|---|---|
/// | **Steady** | `dek_current` | current | current | Steady |
/// | **Rotating** | `dek_current`, `dek_pending { boundary }` | pending | current and pending | Rotating; retiring needs a snapshot sealed after the restart |
///
/// `dek_rotation_requested` (persisted) records a rotation asked for but not yet begun.
///
/// # Transitions (inputs)
///
/// * [`rotate_kek`](Self::rotate_kek): re-wraps everything with a new KEK. Off → on also sets
///   `dek_rotation_requested`, because the DEK sat on disk next to its stored KEK (SwarmKit does the
///   same). On → on is an unlock-key rotation; on → off stores a fresh KEK.
/// * [`request_dek_rotation`](Self::request_dek_rotation): sets `dek_rotation_requested`.
/// * [`begin_dek_rotation`](Self::begin_dek_rotation)`(last_written_index)`: Steady → Rotating with
///   a fresh pending DEK and `boundary` = the highest log index sealed with the old DEK (the larger of
///   the caller's value and what this process saw). Refused while Rotating.
/// * [`handle_snapshot`](Self::handle_snapshot)`(covered_index)`: Rotating → Steady (pending becomes
///   current, the old DEK is forgotten) when a snapshot was sealed with the pending key by this process
///   and `covered_index >= boundary`: then no record sealed with the old DEK is needed any more.
/// * [`set_secret`](Self::set_secret) / [`remove_secret`](Self::remove_secret): change the wrapped
///   secrets (the TLS private key).
///
/// # Persistence (outputs)
///
/// Every transition returns the complete next [`KeyFile`] (its `generation` one higher). The caller
/// writes it atomically and then calls [`handle_persisted`](Self::handle_persisted)`(generation)`.
/// The type enforces the write-ahead rule:
///
/// * A new sealing key (a fresh manager, a begun rotation) seals nothing until the file holding it is
///   reported durable: [`seal`](Self::seal) returns [`Error::KeyFileNotPersisted`].
/// * During a KEK switch, i.e. until the re-wrapped file is reported durable, the previous KEK still
///   opens ([`unwrap`](Self::unwrap)); the disk still holds the old file, so a crash in this window
///   restarts with the previous unlock key. A manager that was down during an unlock-key rotation
///   likewise needs the old key once; swarm-node then calls `rotate_kek` with the cluster's current key.
/// * A retired DEK is forgotten in memory at once; if the node crashes before the new file is written,
///   the old file brings it back, which is harmless.
///
/// # Calling contract
///
/// 1. Start: [`KeyFile::decode`] then [`KeyManager::restart`]; while [`Startup::Locked`], refuse to
///    serve with [`LockedKeys::MESSAGE`]. A new manager: [`KeyManager::new`], write the file,
///    `handle_persisted`.
/// 2. Data path: [`seal`](Self::seal) / [`open`](Self::open) every WAL record with
///    [`RecordPlace::LogEntry`] and every snapshot chunk with [`RecordPlace::Snapshot`].
/// 3. When [`needs_dek_rotation`](Self::needs_dek_rotation): `begin_dek_rotation(last index
///    written)`, persist, `handle_persisted`, then trigger a snapshot.
/// 4. After a snapshot is durable and no log record at or below its index will be read again (purged,
///    or re-sealed): `handle_snapshot(index)`; persist the file it may return.
/// 5. Autolock or unlock-key change committed in raft: `rotate_kek`, persist, `handle_persisted`.
///
/// `seal`, `open`, `wrap` and `unwrap` take `&self` and may run concurrently; transitions take
/// `&mut self`.
pub struct KeyManager {
    durable: Durable,
    /// KEKs that may still be on disk, each with the generation that replaced it.
    previous_keks: Vec<(Kek, u64)>,
    generation: u64,
    persisted_generation: u64,
    /// Generation of the file that introduced the current sealing key.
    sealing_key_generation: u64,
    file: KeyFile,
    /// Highest log index sealed with the current sealing key by this process.
    highest_sealed_index: AtomicU64,
    /// A snapshot was sealed with the pending DEK by this process.
    snapshot_sealed_with_pending: AtomicBool,
}

impl std::fmt::Debug for KeyManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyManager")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl KeyManager {
    /// A manager with a fresh DEK (Steady) and the given KEK. Write the returned file and call
    /// `handle_persisted` before sealing.
    pub fn new(
        kek: NewKek<'_>,
        rng: &mut (impl CryptoRngCore + ?Sized),
    ) -> Result<(Self, KeyFile), Error> {
        let (kek, stored_kek) = make_kek(kek, rng)?;
        let durable = Durable {
            kek,
            stored_kek,
            current: Dek::generate(rng),
            pending: None,
            dek_rotation_requested: false,
            secrets: Vec::new(),
        };
        let file = durable.to_file(1, rng)?;
        let manager = Self::assemble(durable, file.clone(), 0);
        Ok((manager, file))
    }

    /// Loads a key file (see the state table for what each state does on restart).
    pub fn restart(file: KeyFile) -> Result<Startup, Error> {
        match &file.kek {
            StoredKek::Plain(kek) => {
                if kek.id() != file.kek_id {
                    return Err(Error::MalformedKeyFile {
                        reason: "the stored KEK does not match its key id",
                    });
                }
                let kek = kek.clone();
                Ok(Startup::Unlocked(Box::new(Self::from_file(file, kek)?)))
            }
            StoredKek::UnlockKey { kdf, salt } => {
                let (kdf, salt) = (*kdf, *salt);
                Ok(Startup::Locked(LockedKeys::new(file, kdf, salt)))
            }
        }
    }

    pub(crate) fn from_file(file: KeyFile, kek: Kek) -> Result<Self, Error> {
        let durable = Durable::from_file(&file, kek)?;
        let generation = file.generation;
        Ok(Self::assemble(durable, file, generation))
    }

    fn assemble(durable: Durable, file: KeyFile, persisted: u64) -> Self {
        Self {
            durable,
            previous_keks: Vec::new(),
            generation: file.generation,
            persisted_generation: persisted,
            sealing_key_generation: file.generation,
            file,
            highest_sealed_index: AtomicU64::new(0),
            snapshot_sealed_with_pending: AtomicBool::new(false),
        }
    }

    /// Reports that the key file of `generation` (or a later one) is durable on disk.
    pub fn handle_persisted(&mut self, generation: u64) {
        self.persisted_generation = self
            .persisted_generation
            .max(generation.min(self.generation));
        let persisted = self.persisted_generation;
        self.previous_keks
            .retain(|(_, replaced_at)| *replaced_at > persisted);
    }

    /// Re-wraps everything with a new KEK (autolock on/off, unlock-key rotation).
    pub fn rotate_kek(
        &mut self,
        new: NewKek<'_>,
        rng: &mut (impl CryptoRngCore + ?Sized),
    ) -> Result<KeyFile, Error> {
        let (kek, stored_kek) = make_kek(new, rng)?;
        let mut next = self.durable.clone();
        if !self.autolock() && matches!(stored_kek, StoredKek::UnlockKey { .. }) {
            next.dek_rotation_requested = true;
        }
        let old = std::mem::replace(&mut next.kek, kek);
        next.stored_kek = stored_kek;
        let file = self.commit(next, rng)?;
        self.previous_keks.push((old, self.generation));
        Ok(file)
    }

    /// Asks for a DEK rotation; [`needs_dek_rotation`](Self::needs_dek_rotation) then tells swarm-raft.
    pub fn request_dek_rotation(
        &mut self,
        rng: &mut (impl CryptoRngCore + ?Sized),
    ) -> Result<KeyFile, Error> {
        let mut next = self.durable.clone();
        next.dek_rotation_requested = true;
        self.commit(next, rng)
    }

    /// Starts a DEK rotation: a fresh pending DEK seals every record from now on (once its file is
    /// persisted). `last_written_index` is the highest raft log index written so far.
    pub fn begin_dek_rotation(
        &mut self,
        last_written_index: u64,
        rng: &mut (impl CryptoRngCore + ?Sized),
    ) -> Result<KeyFile, Error> {
        if let Some((pending, boundary)) = &self.durable.pending {
            return Err(Error::DekRotationInProgress {
                pending: pending.id(),
                boundary: *boundary,
            });
        }
        let dek = (0..8)
            .map(|_| Dek::generate(rng))
            .find(|dek| dek.id() != self.durable.current.id())
            .ok_or(Error::RandomnessFailure)?;
        let boundary = last_written_index.max(self.highest_sealed_index.load(Ordering::SeqCst));
        let mut next = self.durable.clone();
        next.pending = Some((dek, boundary));
        next.dek_rotation_requested = false;
        let file = self.commit(next, rng)?;
        self.sealing_key_generation = self.generation;
        self.highest_sealed_index.store(0, Ordering::SeqCst);
        self.snapshot_sealed_with_pending
            .store(false, Ordering::SeqCst);
        Ok(file)
    }

    /// Reports a durable snapshot covering log indexes up to `covered_index`, after which no log record
    /// at or below it will be read. Retires the old DEK if the rotation is complete; `Ok(None)` if
    /// nothing changed.
    pub fn handle_snapshot(
        &mut self,
        covered_index: u64,
        rng: &mut (impl CryptoRngCore + ?Sized),
    ) -> Result<Option<KeyFile>, Error> {
        let Some((_, boundary)) = &self.durable.pending else {
            return Ok(None);
        };
        if covered_index < *boundary || !self.snapshot_sealed_with_pending.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let mut next = self.durable.clone();
        if let Some((dek, _)) = next.pending.take() {
            next.current = dek;
        }
        let file = self.commit(next, rng)?;
        self.snapshot_sealed_with_pending
            .store(false, Ordering::SeqCst);
        Ok(Some(file))
    }

    /// Stores (or replaces) a secret wrapped in the key file, e.g. the TLS private key, so KEK changes
    /// re-wrap it in the same atomic write as the DEKs.
    pub fn set_secret(
        &mut self,
        purpose: KeyPurpose,
        secret: SecretBytes,
        rng: &mut (impl CryptoRngCore + ?Sized),
    ) -> Result<KeyFile, Error> {
        refuse_reserved(&purpose)?;
        let mut next = self.durable.clone();
        match next.secrets.binary_search_by(|(p, _)| p.cmp(&purpose)) {
            Ok(i) => next.secrets[i].1 = secret,
            Err(i) => next.secrets.insert(i, (purpose, secret)),
        }
        self.commit(next, rng)
    }

    /// Removes a stored secret; `Ok(None)` if there was none.
    pub fn remove_secret(
        &mut self,
        purpose: &KeyPurpose,
        rng: &mut (impl CryptoRngCore + ?Sized),
    ) -> Result<Option<KeyFile>, Error> {
        let Ok(i) = self
            .durable
            .secrets
            .binary_search_by(|(p, _)| p.cmp(purpose))
        else {
            return Ok(None);
        };
        let mut next = self.durable.clone();
        next.secrets.remove(i);
        self.commit(next, rng).map(Some)
    }

    /// A stored secret.
    pub fn secret(&self, purpose: &KeyPurpose) -> Option<&SecretBytes> {
        let secrets = &self.durable.secrets;
        secrets
            .binary_search_by(|(p, _)| p.cmp(purpose))
            .ok()
            .map(|i| &secrets[i].1)
    }

    fn commit(
        &mut self,
        next: Durable,
        rng: &mut (impl CryptoRngCore + ?Sized),
    ) -> Result<KeyFile, Error> {
        let file = next.to_file(self.generation + 1, rng)?;
        self.durable = next;
        self.generation = file.generation;
        self.file = file.clone();
        Ok(file)
    }

    /// Seals a record with the sealing DEK (pending during a rotation, else current).
    pub fn seal(
        &self,
        place: &RecordPlace,
        plaintext: &[u8],
        rng: &mut (impl CryptoRngCore + ?Sized),
    ) -> Result<Vec<u8>, Error> {
        if self.persisted_generation < self.sealing_key_generation {
            return Err(Error::KeyFileNotPersisted {
                generation: self.sealing_key_generation,
            });
        }
        let sealed = self.durable.sealing_key().seal(place, plaintext, rng)?;
        match place {
            RecordPlace::LogEntry { index, .. } => {
                self.highest_sealed_index
                    .fetch_max(*index, Ordering::SeqCst);
            }
            RecordPlace::Snapshot { .. } if self.durable.pending.is_some() => {
                self.snapshot_sealed_with_pending
                    .store(true, Ordering::SeqCst);
            }
            _ => {}
        }
        Ok(sealed)
    }

    /// Opens a record sealed with a DEK this manager still holds (current or pending).
    pub fn open(&self, place: &RecordPlace, record: &[u8]) -> Result<SecretBytes, Error> {
        let d = &self.durable;
        let keys = std::iter::once(&d.current).chain(d.pending.as_ref().map(|(dek, _)| dek));
        record::open(|id| find(keys.map(Dek::material), id), place, record)
    }

    /// Wraps a secret with the current KEK, for a caller that stores it itself. Prefer
    /// [`set_secret`](Self::set_secret) when the secret must survive KEK changes atomically.
    pub fn wrap(
        &self,
        purpose: &KeyPurpose,
        secret: &[u8],
        rng: &mut (impl CryptoRngCore + ?Sized),
    ) -> Result<Vec<u8>, Error> {
        refuse_reserved(purpose)?;
        self.durable.kek.wrap(purpose, secret, rng)
    }

    /// Unwraps a secret wrapped with the current KEK or, during a KEK switch, the previous one.
    pub fn unwrap(&self, purpose: &KeyPurpose, wrapped: &[u8]) -> Result<SecretBytes, Error> {
        refuse_reserved(purpose)?;
        let keks =
            std::iter::once(&self.durable.kek).chain(self.previous_keks.iter().map(|(k, _)| k));
        let place = RecordPlace::WrappedKey {
            purpose: purpose.clone(),
        };
        record::open(|id| find(keks.map(Kek::material), id), &place, wrapped)
    }

    /// Whether swarm-raft should call [`begin_dek_rotation`](Self::begin_dek_rotation).
    pub fn needs_dek_rotation(&self) -> bool {
        self.durable.dek_rotation_requested && self.durable.pending.is_none()
    }

    /// Whether autolock is on.
    pub fn autolock(&self) -> bool {
        matches!(self.durable.stored_kek, StoredKek::UnlockKey { .. })
    }

    /// The latest key file (the one to write if the caller lost it).
    pub fn key_file(&self) -> &KeyFile {
        &self.file
    }

    /// A summary of the state, for status output and tests.
    pub fn status(&self) -> KeyStatus {
        let d = &self.durable;
        KeyStatus {
            autolock: self.autolock(),
            kek: d.kek.id(),
            dek: match &d.pending {
                None => DekPhase::Steady {
                    current: d.current.id(),
                },
                Some((pending, boundary)) => DekPhase::Rotating {
                    retiring: d.current.id(),
                    pending: pending.id(),
                    boundary: *boundary,
                },
            },
            dek_rotation_requested: d.dek_rotation_requested,
            kek_switching: !self.previous_keks.is_empty(),
            generation: self.generation,
            persisted_generation: self.persisted_generation,
        }
    }
}

fn find<'k>(mut keys: impl Iterator<Item = &'k KeyMaterial>, id: KeyId) -> Option<&'k KeyMaterial> {
    keys.find(|k| k.id() == id)
}

fn refuse_reserved(purpose: &KeyPurpose) -> Result<(), Error> {
    if purpose.is_reserved() {
        return Err(Error::ReservedPurpose {
            purpose: purpose.clone(),
        });
    }
    Ok(())
}

fn make_kek(
    new: NewKek<'_>,
    rng: &mut (impl CryptoRngCore + ?Sized),
) -> Result<(Kek, StoredKek), Error> {
    Ok(match new {
        NewKek::Stored => {
            let kek = Kek::generate(rng);
            (kek.clone(), StoredKek::Plain(kek))
        }
        NewKek::UnlockKey { key, kdf } => {
            let salt = Salt::generate(rng);
            (
                key.stretch(&kdf, &salt)?,
                StoredKek::UnlockKey { kdf, salt },
            )
        }
    })
}
