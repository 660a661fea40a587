//! Replays the fuzz corpus `fuzz/corpus/join_token/` through the same function the cargo-fuzz target
//! calls (`swarm_net::fuzzing::join_token`), so every input that ever found a bug stays a regression
//! test under plain `cargo test`. Seeds named `valid*` must parse; the others must not.
//!
//! A missing or empty corpus directory fails: the replay would otherwise pass while checking nothing.

use std::fs;
use std::path::PathBuf;

use swarm_net::JoinToken;

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
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            (name, bytes)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    files
}

#[test]
fn join_token_corpus_replays() {
    for (name, bytes) in corpus("join_token") {
        swarm_net::fuzzing::join_token(&bytes);
        assert_eq!(
            JoinToken::parse_bytes(&bytes).is_ok(),
            name.starts_with("valid"),
            "seed {name}"
        );
    }
}
