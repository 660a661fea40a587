//! KeyManager: autolock on/off, unlock-key (KEK) rotation, the previous key during the switch, stored
//! secrets, and the key file encoding.

mod common;

use common::{rng, test_kdf};
use swarm_secrets::{
    Error, KeyFile, KeyManager, KeyPurpose, NewKek, RecordPlace, SecretBytes, Startup, StoredKek,
    UnlockKey,
};

fn unlock(key: &UnlockKey) -> NewKek<'_> {
    NewKek::UnlockKey {
        key,
        kdf: test_kdf(),
    }
}

fn persist(mgr: &mut KeyManager, file: &KeyFile) -> KeyFile {
    let disk = KeyFile::decode(&file.encode().unwrap()).unwrap();
    mgr.handle_persisted(file.generation);
    disk
}

fn restart_unlocked(file: KeyFile) -> KeyManager {
    match KeyManager::restart(file).unwrap() {
        Startup::Unlocked(mgr) => *mgr,
        Startup::Locked(_) => panic!("expected an unlocked start"),
    }
}

fn restart_locked(file: KeyFile) -> swarm_secrets::LockedKeys {
    match KeyManager::restart(file).unwrap() {
        Startup::Locked(locked) => locked,
        Startup::Unlocked(_) => panic!("expected a locked start"),
    }
}

const ENTRY: RecordPlace = RecordPlace::LogEntry { index: 1, term: 1 };

#[test]
fn a_new_manager_seals_nothing_until_its_key_file_is_durable() {
    let mut rng = rng(1);
    let (mut mgr, file) = KeyManager::new(NewKek::Stored, &mut rng).unwrap();
    assert_eq!(file.generation, 1);
    assert_eq!(
        mgr.seal(&ENTRY, b"x", &mut rng).unwrap_err(),
        Error::KeyFileNotPersisted { generation: 1 }
    );
    persist(&mut mgr, &file);
    assert!(mgr.seal(&ENTRY, b"x", &mut rng).is_ok());
}

#[test]
fn autolock_off_restarts_unlocked_and_opens_old_records() {
    let mut rng = rng(2);
    let (mut mgr, file) = KeyManager::new(NewKek::Stored, &mut rng).unwrap();
    let disk = persist(&mut mgr, &file);
    assert!(!disk.autolock());
    let sealed = mgr.seal(&ENTRY, b"entry one", &mut rng).unwrap();
    let mgr = restart_unlocked(disk);
    assert_eq!(mgr.open(&ENTRY, &sealed).unwrap().expose(), b"entry one");
    assert!(!mgr.status().autolock);
}

#[test]
fn turning_autolock_on_locks_the_next_restart_and_requests_a_dek_rotation() {
    let mut rng = rng(3);
    let key = UnlockKey::generate(&mut rng);
    let (mut mgr, file) = KeyManager::new(NewKek::Stored, &mut rng).unwrap();
    persist(&mut mgr, &file);
    let sealed = mgr.seal(&ENTRY, b"entry", &mut rng).unwrap();
    assert!(!mgr.needs_dek_rotation());

    let file = mgr.rotate_kek(unlock(&key), &mut rng).unwrap();
    let disk = persist(&mut mgr, &file);
    assert!(
        mgr.needs_dek_rotation(),
        "the DEK sat next to a stored KEK: SwarmKit rotates it"
    );
    assert!(matches!(disk.kek, StoredKek::UnlockKey { .. }));
    let bytes = file.encode().unwrap();
    let key_text = key.expose_text();
    let raw = UnlockKey::parse(&key_text).unwrap();
    assert!(
        !bytes.windows(9).any(|w| w == b"SWMKEY-1-"),
        "the unlock key is never stored"
    );
    drop(raw);

    let locked = restart_locked(disk);
    assert_eq!(
        swarm_secrets::LockedKeys::MESSAGE,
        "swarm is encrypted and needs to be unlocked before it can be used"
    );
    let wrong = UnlockKey::generate(&mut rng);
    assert_eq!(locked.unlock(&wrong).unwrap_err(), Error::WrongUnlockKey);
    let mgr = locked.unlock(&key).unwrap();
    assert!(mgr.status().autolock);
    assert!(mgr.needs_dek_rotation(), "the request survives the restart");
    assert_eq!(mgr.open(&ENTRY, &sealed).unwrap().expose(), b"entry");
}

/// SwarmKit: unlock key rotation re-wraps on every manager; a manager that crashed (or was down)
/// before writing the re-wrapped file needs the old key once, then takes the new one.
#[test]
fn unlock_key_rotation_needs_the_old_key_once_after_a_crash_in_the_switch() {
    let mut rng = rng(4);
    let k1 = UnlockKey::generate(&mut rng);
    let k2 = UnlockKey::generate(&mut rng);
    let (mut mgr, file) = KeyManager::new(unlock(&k1), &mut rng).unwrap();
    let disk_k1 = persist(&mut mgr, &file);
    let sealed = mgr.seal(&ENTRY, b"entry", &mut rng).unwrap();

    let _unwritten = mgr.rotate_kek(unlock(&k2), &mut rng).unwrap();
    assert!(mgr.status().kek_switching);
    // Crash: the disk still holds the file wrapped with k1.
    let locked = restart_locked(disk_k1);
    assert_eq!(locked.unlock(&k2).unwrap_err(), Error::WrongUnlockKey);
    let mut mgr = locked.unlock(&k1).unwrap();
    assert_eq!(mgr.open(&ENTRY, &sealed).unwrap().expose(), b"entry");

    // swarm-node learns the cluster's current key (k2) from raft and re-wraps.
    let file = mgr.rotate_kek(unlock(&k2), &mut rng).unwrap();
    let disk_k2 = persist(&mut mgr, &file);
    assert!(!mgr.status().kek_switching);
    let locked = restart_locked(disk_k2);
    assert_eq!(locked.unlock(&k1).unwrap_err(), Error::WrongUnlockKey);
    let mgr = locked.unlock(&k2).unwrap();
    assert_eq!(mgr.open(&ENTRY, &sealed).unwrap().expose(), b"entry");
}

#[test]
fn the_previous_kek_unwraps_only_until_the_rewrapped_file_is_durable() {
    let mut rng = rng(5);
    let k1 = UnlockKey::generate(&mut rng);
    let k2 = UnlockKey::generate(&mut rng);
    let (mut mgr, file) = KeyManager::new(unlock(&k1), &mut rng).unwrap();
    persist(&mut mgr, &file);
    let purpose = KeyPurpose::Named("join-secret".into());
    let old_blob = mgr.wrap(&purpose, b"wrapped under k1", &mut rng).unwrap();
    let old_kek = mgr.status().kek;

    let file = mgr.rotate_kek(unlock(&k2), &mut rng).unwrap();
    assert_eq!(
        mgr.unwrap(&purpose, &old_blob).unwrap().expose(),
        b"wrapped under k1"
    );
    let new_blob = mgr.wrap(&purpose, b"wrapped under k2", &mut rng).unwrap();
    persist(&mut mgr, &file);
    assert_eq!(
        mgr.unwrap(&purpose, &old_blob).unwrap_err(),
        Error::UnknownKey { key_id: old_kek }
    );
    assert_eq!(
        mgr.unwrap(&purpose, &new_blob).unwrap().expose(),
        b"wrapped under k2"
    );
}

#[test]
fn stored_secrets_are_rewrapped_with_every_kek_and_survive_restarts() {
    let mut rng = rng(6);
    let key = UnlockKey::generate(&mut rng);
    let (mut mgr, file) = KeyManager::new(NewKek::Stored, &mut rng).unwrap();
    persist(&mut mgr, &file);
    let tls = SecretBytes::copy_from(b"-----BEGIN PRIVATE KEY-----");
    mgr.set_secret(KeyPurpose::TlsPrivateKey, tls, &mut rng)
        .unwrap();
    mgr.set_secret(
        KeyPurpose::Named("a".into()),
        SecretBytes::copy_from(b"1"),
        &mut rng,
    )
    .unwrap();
    mgr.set_secret(
        KeyPurpose::Named("a".into()),
        SecretBytes::copy_from(b"2"),
        &mut rng,
    )
    .unwrap();
    let file = mgr.rotate_kek(unlock(&key), &mut rng).unwrap();
    assert_eq!(file.secrets.len(), 2);
    let mgr = restart_locked(persist(&mut mgr, &file))
        .unlock(&key)
        .unwrap();
    let tls = mgr.secret(&KeyPurpose::TlsPrivateKey).unwrap();
    assert_eq!(tls.expose(), b"-----BEGIN PRIVATE KEY-----");
    assert_eq!(
        mgr.secret(&KeyPurpose::Named("a".into())).unwrap().expose(),
        b"2"
    );

    let mut mgr = mgr;
    let file = mgr
        .remove_secret(&KeyPurpose::Named("a".into()), &mut rng)
        .unwrap()
        .unwrap();
    assert_eq!(file.secrets.len(), 1);
    assert!(mgr
        .remove_secret(&KeyPurpose::Named("a".into()), &mut rng)
        .unwrap()
        .is_none());
}

#[test]
fn turning_autolock_off_stores_a_fresh_kek() {
    let mut rng = rng(7);
    let key = UnlockKey::generate(&mut rng);
    let (mut mgr, file) = KeyManager::new(unlock(&key), &mut rng).unwrap();
    persist(&mut mgr, &file);
    let sealed = mgr.seal(&ENTRY, b"entry", &mut rng).unwrap();
    let file = mgr.rotate_kek(NewKek::Stored, &mut rng).unwrap();
    let mgr = restart_unlocked(persist(&mut mgr, &file));
    assert!(!mgr.needs_dek_rotation());
    assert_eq!(mgr.open(&ENTRY, &sealed).unwrap().expose(), b"entry");
}

#[test]
fn reserved_purposes_are_refused() {
    let mut rng = rng(8);
    let (mut mgr, _) = KeyManager::new(NewKek::Stored, &mut rng).unwrap();
    for purpose in [KeyPurpose::RaftDek, KeyPurpose::RaftDekPending] {
        let refused = Error::ReservedPurpose {
            purpose: purpose.clone(),
        };
        assert_eq!(mgr.wrap(&purpose, b"x", &mut rng).unwrap_err(), refused);
        assert_eq!(mgr.unwrap(&purpose, b"x").unwrap_err(), refused);
        assert_eq!(
            mgr.set_secret(purpose, SecretBytes::default(), &mut rng)
                .unwrap_err(),
            refused
        );
    }
}

#[test]
fn nothing_secret_is_printed() {
    let mut rng = rng(9);
    let (mut mgr, file) = KeyManager::new(NewKek::Stored, &mut rng).unwrap();
    let file = {
        persist(&mut mgr, &file);
        mgr.set_secret(
            KeyPurpose::TlsPrivateKey,
            SecretBytes::copy_from(b"PRIVATE"),
            &mut rng,
        )
        .unwrap()
    };
    let bytes = file.encode().unwrap();
    let raw_kek = &bytes[18..50]; // magic 4, version 1, generation 8, flags 1, kek id 4
    let printed = format!(
        "{file:?} {mgr:?} {:?}",
        KeyManager::restart(file.clone()).unwrap()
    );
    assert!(printed.contains("[REDACTED]"));
    let kek_decimal = format!("{raw_kek:?}");
    let kek_hex = common::hex(raw_kek);
    assert!(
        !printed.contains(&kek_decimal[1..kek_decimal.len() - 1]),
        "{printed}"
    );
    assert!(
        !printed.contains(&kek_hex) && !printed.contains("PRIVATE"),
        "{printed}"
    );
}

#[test]
fn key_files_round_trip_through_bytes() {
    let mut rng = rng(10);
    let key = UnlockKey::generate(&mut rng);
    let (mut mgr, file) = KeyManager::new(unlock(&key), &mut rng).unwrap();
    persist(&mut mgr, &file);
    mgr.set_secret(
        KeyPurpose::TlsPrivateKey,
        SecretBytes::copy_from(b"tls"),
        &mut rng,
    )
    .unwrap();
    mgr.request_dek_rotation(&mut rng).unwrap();
    let file = mgr.begin_dek_rotation(0, &mut rng).unwrap();
    let bytes = file.encode().unwrap();
    let decoded = KeyFile::decode(&bytes).unwrap();
    assert_eq!(decoded.encode().unwrap(), bytes);
    assert_eq!(decoded.generation, file.generation);
    assert!(decoded.dek_pending.is_some() && !decoded.dek_rotation_requested);
}

/// Every truncation and every single-bit flip of a key file gives a typed error at decode or at
/// restart/unlock, or (for the clear metadata fields) a manager; never a panic, never a wrong key.
#[test]
fn damaged_key_files_are_typed_errors() {
    let mut rng = rng(11);
    for autolock in [false, true] {
        let key = UnlockKey::generate(&mut rng);
        let kek = if autolock {
            unlock(&key)
        } else {
            NewKek::Stored
        };
        let (mut mgr, file) = KeyManager::new(kek, &mut rng).unwrap();
        persist(&mut mgr, &file);
        let sealed = mgr.seal(&ENTRY, b"entry", &mut rng).unwrap();
        mgr.set_secret(
            KeyPurpose::TlsPrivateKey,
            SecretBytes::copy_from(b"tls"),
            &mut rng,
        )
        .unwrap();
        let file = mgr.begin_dek_rotation(1, &mut rng).unwrap();
        let bytes = file.encode().unwrap();
        for len in 0..bytes.len() {
            assert!(
                KeyFile::decode(&bytes[..len]).is_err(),
                "truncated to {len}"
            );
        }
        let mut extended = bytes.clone();
        extended.push(0);
        assert!(KeyFile::decode(&extended).is_err());
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let Ok(decoded) = KeyFile::decode(&flipped) else {
                continue;
            };
            if matches!(decoded.kek, StoredKek::UnlockKey { kdf, .. } if kdf != test_kdf()) {
                // A flipped cost parameter derives another KEK (the unlock is refused by key id); not
                // worth a costly argon2 run per bit in a debug build.
                continue;
            }
            let loaded = match KeyManager::restart(decoded) {
                Ok(Startup::Unlocked(mgr)) => Ok(*mgr),
                Ok(Startup::Locked(locked)) => locked.unlock(&key),
                Err(e) => Err(e),
            };
            if let Ok(mgr) = loaded {
                // A flip in clear metadata may load; the keys themselves must be the right ones.
                assert_eq!(
                    mgr.open(&ENTRY, &sealed).unwrap().expose(),
                    b"entry",
                    "bit {bit}"
                );
            }
        }
    }
    assert!(matches!(
        KeyFile::decode(b"SWKF\x07rest"),
        Err(Error::UnknownVersion {
            what: "key file",
            found: 7,
            supported: 1
        })
    ));
}
