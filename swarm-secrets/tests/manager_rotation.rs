//! KeyManager DEK rotation: scripted scenarios and a property test over random sequences of
//! seal / open / rotate / snapshot / persist / crash-restart / KEK changes.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{rng, test_kdf};
use proptest::prelude::*;
use swarm_secrets::{
    DekPhase, Error, KeyFile, KeyId, KeyManager, NewKek, RecordHeader, RecordPlace, Startup,
    UnlockKey,
};

fn log(index: u64) -> RecordPlace {
    RecordPlace::LogEntry { index, term: 1 }
}

fn persist(mgr: &mut KeyManager, file: &KeyFile) -> KeyFile {
    mgr.handle_persisted(file.generation);
    KeyFile::decode(&file.encode().unwrap()).unwrap()
}

#[test]
fn a_rotation_retires_the_old_dek_only_after_a_covering_snapshot() {
    let mut rng = rng(1);
    let (mut mgr, file) = KeyManager::new(NewKek::Stored, &mut rng).unwrap();
    persist(&mut mgr, &file);
    let old: Vec<_> = (1..=10)
        .map(|i| mgr.seal(&log(i), b"old", &mut rng).unwrap())
        .collect();
    let old_id = mgr.status().dek.sealing_key();

    let file = mgr.begin_dek_rotation(10, &mut rng).unwrap();
    let DekPhase::Rotating {
        retiring,
        pending,
        boundary,
    } = mgr.status().dek
    else {
        panic!()
    };
    assert_eq!((retiring, boundary), (old_id, 10));
    assert_eq!(
        mgr.seal(&log(11), b"x", &mut rng).unwrap_err(),
        Error::KeyFileNotPersisted {
            generation: file.generation
        },
        "the pending DEK must be on disk before it seals anything"
    );
    persist(&mut mgr, &file);
    let new: Vec<_> = (11..=20)
        .map(|i| mgr.seal(&log(i), b"new", &mut rng).unwrap())
        .collect();
    assert!(new
        .iter()
        .all(|r| RecordHeader::peek(r).unwrap().key_id == pending));
    assert!(mgr.open(&log(3), &old[2]).is_ok() && mgr.open(&log(13), &new[2]).is_ok());

    assert_eq!(
        mgr.handle_snapshot(20, &mut rng)
            .unwrap()
            .map(|f| f.generation),
        None,
        "no snapshot sealed with the pending key yet"
    );
    mgr.seal(&RecordPlace::whole_snapshot("1-20"), b"state", &mut rng)
        .unwrap();
    assert!(
        mgr.handle_snapshot(9, &mut rng).unwrap().is_none(),
        "does not cover index 10"
    );
    let file = mgr.handle_snapshot(20, &mut rng).unwrap().expect("retires");
    assert_eq!(mgr.status().dek, DekPhase::Steady { current: pending });
    assert_eq!(
        mgr.open(&log(3), &old[2]).unwrap_err(),
        Error::UnknownKey { key_id: old_id }
    );
    assert_eq!(mgr.open(&log(13), &new[2]).unwrap().expose(), b"new");

    let disk = persist(&mut mgr, &file);
    let Startup::Unlocked(mgr) = KeyManager::restart(disk).unwrap() else {
        panic!()
    };
    assert_eq!(mgr.status().dek, DekPhase::Steady { current: pending });
    assert!(mgr.open(&log(3), &old[2]).is_err());
}

#[test]
fn a_second_rotation_waits_for_the_first() {
    let mut rng = rng(2);
    let (mut mgr, file) = KeyManager::new(NewKek::Stored, &mut rng).unwrap();
    persist(&mut mgr, &file);
    let file = mgr.begin_dek_rotation(0, &mut rng).unwrap();
    persist(&mut mgr, &file);
    let DekPhase::Rotating { pending, .. } = mgr.status().dek else {
        panic!()
    };
    assert_eq!(
        mgr.begin_dek_rotation(5, &mut rng).unwrap_err(),
        Error::DekRotationInProgress {
            pending,
            boundary: 0
        }
    );
    mgr.request_dek_rotation(&mut rng).unwrap();
    assert!(
        !mgr.needs_dek_rotation(),
        "queued behind the running rotation"
    );
    mgr.seal(&RecordPlace::whole_snapshot("s"), b"", &mut rng)
        .unwrap();
    mgr.handle_snapshot(0, &mut rng).unwrap().unwrap();
    assert!(mgr.needs_dek_rotation(), "the queued request comes due");
}

#[test]
fn the_boundary_covers_everything_this_process_sealed_with_the_old_dek() {
    let mut rng = rng(3);
    let (mut mgr, file) = KeyManager::new(NewKek::Stored, &mut rng).unwrap();
    persist(&mut mgr, &file);
    for i in 1..=15 {
        mgr.seal(&log(i), b"x", &mut rng).unwrap();
    }
    mgr.begin_dek_rotation(3, &mut rng).unwrap();
    assert!(matches!(
        mgr.status().dek,
        DekPhase::Rotating { boundary: 15, .. }
    ));
}

#[test]
fn after_a_restart_mid_rotation_a_new_snapshot_is_needed() {
    let mut rng = rng(4);
    let (mut mgr, file) = KeyManager::new(NewKek::Stored, &mut rng).unwrap();
    persist(&mut mgr, &file);
    let old = mgr.seal(&log(1), b"old", &mut rng).unwrap();
    let file = mgr.begin_dek_rotation(1, &mut rng).unwrap();
    let disk = persist(&mut mgr, &file);
    mgr.seal(&RecordPlace::whole_snapshot("before-crash"), b"", &mut rng)
        .unwrap();

    let Startup::Unlocked(mgr) = KeyManager::restart(disk).unwrap() else {
        panic!()
    };
    let mut mgr = *mgr;
    assert!(matches!(
        mgr.status().dek,
        DekPhase::Rotating { boundary: 1, .. }
    ));
    assert!(mgr.open(&log(1), &old).is_ok());
    assert!(
        mgr.handle_snapshot(1, &mut rng).unwrap().is_none(),
        "the snapshot may not have been written"
    );
    mgr.seal(&RecordPlace::whole_snapshot("after-restart"), b"", &mut rng)
        .unwrap();
    assert!(mgr.handle_snapshot(1, &mut rng).unwrap().is_some());
}

// ---- property test -------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Append,
    BeginRotation,
    RequestRotation,
    Snapshot,
    Persist,
    CrashRestart,
    RotateKek { autolock: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => Just(Op::Append),
        2 => Just(Op::BeginRotation),
        1 => Just(Op::RequestRotation),
        3 => Just(Op::Snapshot),
        4 => Just(Op::Persist),
        1 => Just(Op::CrashRestart),
        1 => any::<bool>().prop_map(|autolock| Op::RotateKek { autolock }),
    ]
}

struct Record {
    place: RecordPlace,
    bytes: Vec<u8>,
    key: KeyId,
    plaintext: Vec<u8>,
}

/// Drives a KeyManager like swarm-raft would, keeping its own account of what must hold.
struct Harness {
    rng: rand_chacha::ChaCha20Rng,
    mgr: KeyManager,
    disk: KeyFile,
    /// Unlock key each written key file generation needs (None: autolock off).
    unlock_for: BTreeMap<u64, Option<UnlockKey>>,
    /// DEK phase as of each generation of key file the manager returned.
    phase_of: BTreeMap<u64, DekPhase>,
    records: Vec<Record>,
    next_index: u64,
    /// Generation whose durability lets the current sealing key seal.
    sealing_key_generation: u64,
    snapshot_with_pending: bool,
    /// DEK ids retired by a key file that is durable: they must never open anything again.
    retired_for_good: BTreeSet<KeyId>,
    /// Retirements not yet durable, by generation.
    retired_unpersisted: BTreeMap<u64, KeyId>,
    seen_deks: BTreeSet<KeyId>,
    current_unlock: Option<UnlockKey>,
}

impl Harness {
    fn new(seed: u64) -> Self {
        let mut rng = rng(seed);
        let (mut mgr, file) = KeyManager::new(NewKek::Stored, &mut rng).unwrap();
        let disk = persist(&mut mgr, &file);
        let phase = mgr.status().dek;
        Self {
            rng,
            mgr,
            disk,
            unlock_for: BTreeMap::from([(1, None)]),
            phase_of: BTreeMap::from([(1, phase)]),
            records: Vec::new(),
            next_index: 1,
            sealing_key_generation: 1,
            snapshot_with_pending: false,
            retired_for_good: BTreeSet::new(),
            retired_unpersisted: BTreeMap::new(),
            seen_deks: BTreeSet::from([phase.sealing_key()]),
            current_unlock: None,
        }
    }

    fn record_file(&mut self, file: &KeyFile) {
        self.unlock_for
            .insert(file.generation, self.current_unlock.clone());
        self.phase_of.insert(file.generation, self.mgr.status().dek);
    }

    fn live_deks(&self) -> BTreeSet<KeyId> {
        match self.mgr.status().dek {
            DekPhase::Steady { current } => BTreeSet::from([current]),
            DekPhase::Rotating {
                retiring, pending, ..
            } => BTreeSet::from([retiring, pending]),
        }
    }

    fn seal(&mut self, place: RecordPlace) -> bool {
        let plaintext = format!("{place}").into_bytes();
        let status = self.mgr.status();
        match self.mgr.seal(&place, &plaintext, &mut self.rng) {
            Ok(bytes) => {
                assert!(status.persisted_generation >= self.sealing_key_generation);
                let key = RecordHeader::peek(&bytes).unwrap().key_id;
                assert_eq!(key, status.dek.sealing_key(), "sealed with the sealing key");
                self.records.push(Record {
                    place,
                    bytes,
                    key,
                    plaintext,
                });
                true
            }
            Err(Error::KeyFileNotPersisted { generation }) => {
                assert_eq!(generation, self.sealing_key_generation);
                assert!(status.persisted_generation < generation);
                false
            }
            Err(e) => panic!("unexpected seal error {e:?}"),
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Append => {
                if self.seal(log(self.next_index)) {
                    self.next_index += 1;
                }
            }
            Op::BeginRotation => {
                let before = self.mgr.status().dek;
                match self
                    .mgr
                    .begin_dek_rotation(self.next_index - 1, &mut self.rng)
                {
                    Ok(file) => {
                        let DekPhase::Rotating { pending, .. } = self.mgr.status().dek else {
                            panic!()
                        };
                        assert!(matches!(before, DekPhase::Steady { .. }));
                        assert!(
                            self.seen_deks.insert(pending),
                            "a pending DEK is always fresh"
                        );
                        self.sealing_key_generation = file.generation;
                        self.snapshot_with_pending = false;
                        self.record_file(&file);
                    }
                    Err(Error::DekRotationInProgress { .. }) => {
                        assert!(matches!(before, DekPhase::Rotating { .. }));
                    }
                    Err(e) => panic!("unexpected {e:?}"),
                }
            }
            Op::RequestRotation => {
                let file = self.mgr.request_dek_rotation(&mut self.rng).unwrap();
                self.record_file(&file);
            }
            Op::Snapshot => {
                let covered = self.next_index - 1;
                let before = self.mgr.status().dek;
                let place =
                    RecordPlace::whole_snapshot(format!("snap-{covered}-{}", self.records.len()));
                if !self.seal(place) {
                    return;
                }
                if matches!(before, DekPhase::Rotating { .. }) {
                    self.snapshot_with_pending = true;
                }
                let expect_retire = match before {
                    DekPhase::Rotating { boundary, .. } => {
                        self.snapshot_with_pending && covered >= boundary
                    }
                    DekPhase::Steady { .. } => false,
                };
                let result = self.mgr.handle_snapshot(covered, &mut self.rng).unwrap();
                assert_eq!(
                    result.is_some(),
                    expect_retire,
                    "retirement rule, before = {before:?}"
                );
                if let (
                    Some(file),
                    DekPhase::Rotating {
                        retiring, pending, ..
                    },
                ) = (result, before)
                {
                    // Safety: nothing the retired DEK sealed is still needed.
                    for r in self.records.iter().filter(|r| r.key == retiring) {
                        if let RecordPlace::LogEntry { index, .. } = r.place {
                            assert!(
                                index <= covered,
                                "retired a DEK that sealed entry {index} > {covered}"
                            );
                        }
                    }
                    assert_eq!(self.mgr.status().dek, DekPhase::Steady { current: pending });
                    self.snapshot_with_pending = false;
                    self.retired_unpersisted.insert(file.generation, retiring);
                    self.record_file(&file);
                }
            }
            Op::Persist => {
                let file = self.mgr.key_file().clone();
                self.disk = persist(&mut self.mgr, &file);
                let durable: Vec<u64> = self
                    .retired_unpersisted
                    .range(..=file.generation)
                    .map(|(g, _)| *g)
                    .collect();
                for g in durable {
                    if let Some(id) = self.retired_unpersisted.remove(&g) {
                        self.retired_for_good.insert(id);
                    }
                }
                assert!(!self.mgr.status().kek_switching);
            }
            Op::CrashRestart => {
                let generation = self.disk.generation;
                let needs = self.unlock_for[&generation].clone();
                self.mgr = match (KeyManager::restart(self.disk.clone()).unwrap(), &needs) {
                    (Startup::Unlocked(mgr), None) => *mgr,
                    (Startup::Locked(locked), Some(key)) => {
                        if let Some(newer) = self.current_unlock.as_ref().filter(|k| *k != key) {
                            assert_eq!(
                                locked.unlock(newer).unwrap_err(),
                                Error::WrongUnlockKey,
                                "old key needed once"
                            );
                        }
                        locked.unlock(key).unwrap()
                    }
                    (_, needs) => panic!(
                        "lock state does not match the file (unlock key needed: {})",
                        needs.is_some()
                    ),
                };
                self.current_unlock = needs;
                assert_eq!(
                    self.mgr.status().dek,
                    self.phase_of[&generation],
                    "restart restores the durable state"
                );
                self.sealing_key_generation = generation;
                self.snapshot_with_pending = false;
                self.retired_unpersisted.clear();
                // The log on disk may hold entries past what the key file knows; appends continue.
            }
            Op::RotateKek { autolock } => {
                let was = self.mgr.status().autolock;
                let key = autolock.then(|| UnlockKey::generate(&mut self.rng));
                let new = match &key {
                    Some(key) => NewKek::UnlockKey {
                        key,
                        kdf: test_kdf(),
                    },
                    None => NewKek::Stored,
                };
                let file = self.mgr.rotate_kek(new, &mut self.rng).unwrap();
                if !was && autolock {
                    assert!(self.mgr.status().dek_rotation_requested);
                }
                self.current_unlock = key;
                self.record_file(&file);
            }
        }
    }

    /// Every record opens iff the DEK that sealed it is still held, and retired DEKs stay retired.
    fn check(&self) {
        let live = self.live_deks();
        assert!(
            live.is_disjoint(&self.retired_for_good),
            "a durably retired DEK came back"
        );
        for r in &self.records {
            match self.mgr.open(&r.place, &r.bytes) {
                Ok(plaintext) => {
                    assert!(live.contains(&r.key));
                    assert_eq!(plaintext.expose(), r.plaintext);
                }
                Err(Error::UnknownKey { key_id }) => {
                    assert_eq!(key_id, r.key);
                    assert!(
                        !live.contains(&r.key),
                        "a record sealed with a held key did not open"
                    );
                }
                Err(e) => panic!("unexpected open error {e:?}"),
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn rotation_sequences_keep_every_record_readable_exactly_while_its_key_lives(
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let mut h = Harness::new(seed);
        for op in ops {
            h.apply(op);
            h.check();
        }
    }
}
