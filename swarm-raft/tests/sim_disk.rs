//! The simulated disk's crash model itself (swarm_raft::disk::SimDisk): synced data survives
//! every crash, unsynced data and directory entries may be lost or torn, the quota fails writes
//! with ENOSPC, injected faults and the fsync hook work. Each property is checked over many crash
//! seeds; "can be lost" properties assert that both outcomes occur among them.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use swarm_raft::disk::{CrashOptions, Disk, OpenMode, SimDisk};

const SEEDS: u64 = 200;

fn disk_with_dir() -> SimDisk {
    let d = SimDisk::new();
    d.create_dir_all(Path::new("/data/wal"), 0o700).unwrap();
    d
}

/// Creates `path` holding `bytes`, file and directory fsynced.
fn durable_file(d: &SimDisk, path: &Path, bytes: &[u8]) {
    let f = d
        .open(path, OpenMode::CreateTruncate { read: true })
        .unwrap();
    f.write_all_at(bytes, 0).unwrap();
    f.sync_all().unwrap();
    d.sync_dir(path.parent().unwrap()).unwrap();
}

#[test]
fn a_synced_write_survives_every_crash() {
    let d = disk_with_dir();
    let p = Path::new("/data/wal/a");
    durable_file(&d, p, b"hello");
    let f = d.open(p, OpenMode::ReadWrite).unwrap();
    f.write_all_at(b" world", 5).unwrap();
    f.sync_data().unwrap();
    assert!(!d.has_unsynced());
    for seed in 0..SEEDS {
        for in_order in [false, true] {
            let img = d.crash_image(seed, CrashOptions { in_order });
            assert_eq!(img.read(p).unwrap(), b"hello world", "seed {seed}");
            assert_eq!(img.mode(p).unwrap(), 0o600);
        }
    }
}

#[test]
fn an_unsynced_write_can_be_kept_lost_or_torn() {
    let d = disk_with_dir();
    let p = Path::new("/data/wal/a");
    durable_file(&d, p, b"0123");
    let f = d.open(p, OpenMode::ReadWrite).unwrap();
    f.write_all_at(b"456789", 4).unwrap();
    assert_eq!(
        d.read(p).unwrap(),
        b"0123456789",
        "reads see unsynced writes"
    );
    let (mut kept, mut lost, mut torn) = (0, 0, 0);
    for seed in 0..SEEDS {
        let got = d
            .crash_image(seed, CrashOptions::default())
            .read(p)
            .unwrap();
        assert!(
            got.starts_with(b"0123") && b"0123456789".starts_with(&got[..]),
            "seed {seed}: a crash keeps the durable bytes and a prefix of the write: {got:?}"
        );
        match got.len() {
            4 => lost += 1,
            10 => kept += 1,
            _ => torn += 1,
        }
    }
    assert!(kept > 0 && lost > 0 && torn > 0, "{kept} {lost} {torn}");
}

#[test]
fn independent_loss_can_keep_a_later_write_and_lose_an_earlier_one() {
    let d = disk_with_dir();
    let p = Path::new("/data/wal/a");
    durable_file(&d, p, b"");
    let f = d.open(p, OpenMode::ReadWrite).unwrap();
    f.write_all_at(b"AAAA", 0).unwrap();
    f.write_all_at(b"BBBB", 4).unwrap();
    let mut hole = false;
    for seed in 0..SEEDS {
        let got = d
            .crash_image(seed, CrashOptions::default())
            .read(p)
            .unwrap();
        hole |= got.len() > 4 && got[..4] == [0; 4];
        // In order, a later write never lands without the earlier one.
        let got = d
            .crash_image(seed, CrashOptions { in_order: true })
            .read(p)
            .unwrap();
        assert!(b"AAAABBBB".starts_with(&got[..]), "seed {seed}: {got:?}");
    }
    assert!(hole, "independent loss never lost the earlier write alone");
}

#[test]
fn a_rename_without_a_directory_fsync_can_be_undone() {
    let d = disk_with_dir();
    let (p, tmp) = (Path::new("/data/wal/f"), Path::new("/data/wal/f.tmp"));
    durable_file(&d, p, b"old");
    let f = d
        .open(tmp, OpenMode::CreateTruncate { read: false })
        .unwrap();
    f.write_all_at(b"new", 0).unwrap();
    f.sync_all().unwrap();
    d.rename(tmp, p).unwrap();
    assert_eq!(d.read(p).unwrap(), b"new");
    let (mut old, mut new) = (0, 0);
    for seed in 0..SEEDS {
        match &d
            .crash_image(seed, CrashOptions::default())
            .read(p)
            .unwrap()[..]
        {
            b"old" => old += 1,
            b"new" => new += 1,
            other => panic!("seed {seed}: a rename is atomic, got {other:?}"),
        }
    }
    assert!(old > 0 && new > 0, "{old} {new}");
    // Once the directory is fsynced, every crash keeps the rename.
    d.sync_dir(Path::new("/data/wal")).unwrap();
    for seed in 0..SEEDS {
        let img = d.crash_image(seed, CrashOptions::default());
        assert_eq!(img.read(p).unwrap(), b"new");
        assert!(img.read(tmp).is_err(), "the temporary name is gone");
    }
}

#[test]
fn a_created_file_without_a_directory_fsync_can_vanish_and_a_removed_one_return() {
    let d = disk_with_dir();
    let gone = Path::new("/data/wal/gone");
    durable_file(&d, gone, b"x");
    d.remove_file(gone).unwrap();
    let new = Path::new("/data/wal/new");
    let f = d
        .open(new, OpenMode::CreateTruncate { read: true })
        .unwrap();
    f.write_all_at(b"y", 0).unwrap();
    f.sync_all().unwrap();
    let (mut back, mut vanished) = (0, 0);
    for seed in 0..SEEDS {
        let img = d.crash_image(seed, CrashOptions::default());
        back += usize::from(img.read(gone).is_ok());
        vanished += usize::from(img.read(new).is_err());
    }
    assert!(back > 0 && back < SEEDS as usize, "{back}");
    assert!(vanished > 0 && vanished < SEEDS as usize, "{vanished}");
    let mut listed = d.list_dir(Path::new("/data/wal")).unwrap();
    listed.sort();
    assert_eq!(listed, vec![Path::new("/data/wal/new").to_path_buf()]);
}

#[test]
fn writes_past_the_quota_fail_with_enospc_after_writing_what_fits() {
    let d = disk_with_dir();
    let p = Path::new("/data/wal/a");
    durable_file(&d, p, &[1u8; 50]);
    d.set_quota(Some(100));
    let f = d.open(p, OpenMode::ReadWrite).unwrap();
    // Overwriting inside the file needs no space.
    f.write_all_at(&[2u8; 50], 0).unwrap();
    let e = f.write_all_at(&[3u8; 80], 40).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(28));
    assert_eq!(e.kind(), std::io::ErrorKind::StorageFull);
    assert_eq!(d.used_bytes(), 100);
    assert_eq!(d.read(p).unwrap().len(), 100, "what fits was written");
    d.set_quota(None);
    f.write_all_at(&[3u8; 80], 40).unwrap();
    assert_eq!(d.used_bytes(), 120);
}

#[test]
fn injected_faults_fail_the_next_writes_and_fsyncs_and_the_hook_sees_every_fsync() {
    let d = disk_with_dir();
    let p = Path::new("/data/wal/a");
    durable_file(&d, p, b"");
    let seen = Arc::new(AtomicU64::new(0));
    let s = seen.clone();
    d.set_fsync_hook(Some(Arc::new(move |path: &Path| {
        assert_eq!(path, Path::new("/data/wal/a"));
        s.fetch_add(1, Ordering::SeqCst);
    })));
    let f = d.open(p, OpenMode::ReadWrite).unwrap();
    d.fail_writes(2, 5);
    for _ in 0..2 {
        assert_eq!(f.write_all_at(b"x", 0).unwrap_err().raw_os_error(), Some(5));
    }
    f.write_all_at(b"abc", 0).unwrap();
    d.fail_fsyncs(1, 28);
    assert_eq!(f.sync_data().unwrap_err().raw_os_error(), Some(28));
    f.sync_data().unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), 2);
    // Reads still see the write whose fsync failed.
    assert_eq!(d.read(p).unwrap(), b"abc");
}

#[test]
fn a_failed_fsync_can_lose_a_write_for_good_until_it_is_rewritten() {
    // As on Linux: after a failed fsync the kernel may have dropped the dirty pages, and a later
    // successful fsync does not bring them back; only a rewrite does.
    let mut dropped = 0;
    for seed in 0..64 {
        let d = disk_with_dir();
        d.seed(seed);
        let p = Path::new("/data/wal/a");
        durable_file(&d, p, b"");
        let f = d.open(p, OpenMode::ReadWrite).unwrap();
        f.write_all_at(b"data", 0).unwrap();
        d.fail_fsyncs(1, 5);
        assert!(f.sync_data().is_err());
        f.sync_data().unwrap();
        let lost = d.durable_content(p).unwrap() != b"data";
        dropped += usize::from(lost);
        f.write_all_at(b"data", 0).unwrap();
        f.sync_data().unwrap();
        assert_eq!(d.durable_content(p).unwrap(), b"data");
    }
    assert!(dropped > 0 && dropped < 64, "{dropped}");
}

#[test]
fn modes_and_missing_directories_behave_like_the_real_filesystem() {
    let d = SimDisk::new();
    let p = Path::new("/nowhere/f");
    assert_eq!(
        d.open(p, OpenMode::CreateNew).unwrap_err().kind(),
        std::io::ErrorKind::NotFound
    );
    d.create_dir_all(Path::new("/x/y"), 0o755).unwrap();
    assert_eq!(d.mode(Path::new("/x")).unwrap(), 0o755);
    d.set_mode(Path::new("/x"), 0o700).unwrap();
    assert_eq!(d.mode(Path::new("/x")).unwrap(), 0o700);
    d.open(Path::new("/x/f"), OpenMode::CreateNew).unwrap();
    assert_eq!(
        d.open(Path::new("/x/f"), OpenMode::CreateNew)
            .unwrap_err()
            .kind(),
        std::io::ErrorKind::AlreadyExists
    );
    assert_eq!(d.mode(Path::new("/x/f")).unwrap(), 0o600);
}
