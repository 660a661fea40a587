//! Sealing records and rotating keys with swarm-secrets' [`KeyManager`], the way swarm-raft uses
//! it for its log, with the "disk" kept in memory (the crate does no I/O: every transition
//! returns the next [`KeyFile`] for the caller to write).
//!
//! Run: `cargo run -p swarm-secrets --example seal_and_rotate`
//!
//! 1. A fresh key hierarchy (autolock off); nothing seals until its key file is reported durable.
//! 2. Log entries 1-3 sealed; a record opens only at the place it was sealed for.
//! 3. DEK rotation: entries 4-5 are sealed with the pending DEK while 1-3 still open; a snapshot
//!    sealed with the new DEK that covers the boundary retires the old DEK, after which 1-3 no
//!    longer open (the snapshot replaced them).
//! 4. Autolock on (KEK rotation to an unlock key): after a "restart" from the stored file the keys
//!    are locked, a wrong unlock key is refused, the right one opens the records again.
//!
//! Exits non-zero (with the failed step) if any of these properties does not hold.

use swarm_secrets::rand_core::OsRng;
use swarm_secrets::{
    Error, KdfParams, KeyFile, KeyManager, NewKek, RecordHeader, RecordPlace, Startup, UnlockKey,
};

/// What a manager keeps on disk: the last key file written (atomically, in real life).
struct Disk(Vec<u8>);

impl Disk {
    /// "Writes" `file`, then tells the manager it is durable (the write-ahead rule).
    fn persist(&mut self, keys: &mut KeyManager, file: KeyFile) -> Result<(), Error> {
        self.0 = file.encode()?;
        keys.handle_persisted(file.generation);
        Ok(())
    }
}

fn entry(index: u64) -> RecordPlace {
    RecordPlace::LogEntry { index, term: 1 }
}

fn check(ok: bool, what: &str) -> Result<(), Box<dyn std::error::Error>> {
    if ok {
        println!("ok: {what}");
        Ok(())
    } else {
        Err(format!("failed: {what}").into())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = OsRng;

    // 1. A fresh hierarchy: a random KEK stored in the file (autolock off) and a DEK.
    let (mut keys, file) = KeyManager::new(NewKek::Stored, &mut rng)?;
    check(
        matches!(
            keys.seal(&entry(1), b"too early", &mut rng),
            Err(Error::KeyFileNotPersisted { .. })
        ),
        "a new key seals nothing before its key file is durable",
    )?;
    let mut disk = Disk(Vec::new());
    disk.persist(&mut keys, file)?;

    // 2. Seal three log entries; each opens only where it was sealed.
    let mut log: Vec<(RecordPlace, Vec<u8>)> = Vec::new();
    for i in 1..=3 {
        let body = format!("entry {i}");
        log.push((entry(i), keys.seal(&entry(i), body.as_bytes(), &mut rng)?));
    }
    check(
        keys.open(&log[0].0, &log[0].1)?.expose() == b"entry 1",
        "entry 1 opens at index 1",
    )?;
    check(
        keys.open(&entry(2), &log[0].1).is_err(),
        "entry 1 moved to index 2 does not open",
    )?;
    let old_dek = RecordHeader::peek(&log[0].1)?.key_id;

    // 3. DEK rotation. The boundary is the last index sealed with the old DEK.
    let file = keys.begin_dek_rotation(3, &mut rng)?;
    disk.persist(&mut keys, file)?;
    for i in 4..=5 {
        let body = format!("entry {i}");
        log.push((entry(i), keys.seal(&entry(i), body.as_bytes(), &mut rng)?));
    }
    let new_dek = RecordHeader::peek(&log[3].1)?.key_id;
    check(
        old_dek != new_dek,
        "entries 4-5 are sealed with the new DEK",
    )?;
    check(
        log.iter().all(|(p, r)| keys.open(p, r).is_ok()),
        "during the rotation, old and new entries open",
    )?;
    // A snapshot covering index 5, sealed with the new DEK, makes entries 1-5 unnecessary.
    let snap = RecordPlace::whole_snapshot("1-5-snap");
    let sealed_snapshot = keys.seal(&snap, b"state after entry 5", &mut rng)?;
    let file = keys
        .handle_snapshot(5, &mut rng)?
        .ok_or("the snapshot did not complete the rotation")?;
    disk.persist(&mut keys, file)?;
    check(
        keys.open(&log[0].0, &log[0].1).is_err(),
        "after the snapshot the old DEK is retired: entry 1 no longer opens",
    )?;
    check(
        keys.open(&log[4].0, &log[4].1).is_ok(),
        "entries sealed with the new DEK still open",
    )?;

    // 4. Autolock on: the KEK becomes argon2id(unlock key); only its salt and cost are stored.
    // (A small argon2 cost keeps the example quick; a manager uses KdfParams::RECOMMENDED.)
    let unlock = UnlockKey::generate(&mut rng);
    let kdf = KdfParams::new(8 * 1024, 1, 1)?;
    let file = keys.rotate_kek(NewKek::UnlockKey { key: &unlock, kdf }, &mut rng)?;
    disk.persist(&mut keys, file)?;
    drop(keys);

    // Restart from what is on disk.
    let Startup::Locked(locked) = KeyManager::restart(KeyFile::decode(&disk.0)?)? else {
        return Err("an autolocked key file restarted unlocked".into());
    };
    check(
        matches!(
            locked.unlock(&UnlockKey::generate(&mut rng)),
            Err(Error::WrongUnlockKey)
        ),
        "a wrong unlock key is refused",
    )?;
    let keys = locked.unlock(&unlock)?;
    check(
        keys.open(&snap, &sealed_snapshot)?.expose() == b"state after entry 5",
        "the right unlock key opens the snapshot again",
    )?;
    check(keys.status().autolock, "the keys report autolock on")?;
    println!("the unlock key prints as {unlock:?}: Debug never shows key material");
    Ok(())
}
