//! Replays the fuzz corpora `fuzz/corpus/unlock_key/` and `fuzz/corpus/sealed_record/` through the
//! same functions the cargo-fuzz targets call (`swarm_secrets::fuzzing`), so every input that ever
//! found a bug stays a regression test under plain `cargo test`.
//!
//! A missing or empty corpus directory fails: the replay would otherwise pass while checking nothing.

use std::fs;
use std::path::PathBuf;

use swarm_secrets::fuzzing::{fuzz_place, sealed_record, unlock_key, FUZZ_DEK_BYTES};
use swarm_secrets::{Dek, UnlockKey};

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let entries = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus directory {} is missing: {e}", dir.display()));
    let mut files: Vec<(String, Vec<u8>)> = entries
        .map(|entry| entry.expect("readable corpus entry").path())
        .filter(|path| path.is_file())
        .map(|path| {
            let bytes =
                fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            (
                path.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                bytes,
            )
        })
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "corpus directory {} is empty",
        dir.display()
    );
    files
}

#[test]
fn unlock_key_corpus_replays() {
    for (name, bytes) in corpus("unlock_key") {
        unlock_key(&bytes);
        if name.starts_with("valid") {
            assert!(
                UnlockKey::parse_bytes(&bytes).is_ok(),
                "seed {name} should parse"
            );
        }
    }
}

#[test]
fn sealed_record_corpus_replays() {
    let dek = Dek::from_bytes(FUZZ_DEK_BYTES);
    for (name, bytes) in corpus("sealed_record") {
        sealed_record(&bytes);
        if name == "log_1_1" {
            // The seeds are real records, so the fuzzer starts past the header checks.
            assert_eq!(
                dek.open(&fuzz_place(), &bytes).unwrap().expose(),
                b"raft entry"
            );
        }
    }
}
