//! Replays the fuzz corpus `fuzz/corpus/request_body/` through the function the cargo-fuzz target
//! calls (`swarm_node::fuzzing::request_body`), so every input that ever found a bug stays a
//! regression test under plain `cargo test`: no panic, and every decoded body survives serialize +
//! decode.
//!
//! A missing or empty corpus directory fails: the replay would otherwise pass while checking
//! nothing. So does a corpus where the well-formed seeds stop decoding as what they are.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use swarm_node::fuzzing::request_body;

fn corpus(target: &str) -> BTreeMap<String, Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let entries = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus directory {} is missing: {e}", dir.display()));
    let files: BTreeMap<String, Vec<u8>> = entries
        .map(|entry| entry.expect("readable corpus entry").path())
        .filter(|path| path.is_file())
        .map(|path| {
            let bytes =
                fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            (name.into_owned(), bytes)
        })
        .collect();
    assert!(
        !files.is_empty(),
        "corpus directory {} is empty",
        dir.display()
    );
    files
}

#[test]
fn request_body_corpus() {
    let files = corpus("request_body");
    let mut accepted = BTreeMap::new();
    for (name, bytes) in &files {
        accepted.insert(name.as_str(), request_body(bytes));
    }
    // The well-formed seeds decode, convert and validate as the type they were written for (and
    // the refused ones do not), so the replay exercises the whole path, not only the JSON parser.
    let expect: [(&str, &str, bool); 14] = [
        ("service_full", "ServiceSpec", true),
        ("service_lowercase_job", "ServiceSpec", true),
        ("service_huge_replicas", "ServiceSpec", false),
        ("service_negative_replicas", "ServiceSpec", false),
        ("service_bad_mounts", "ServiceSpec", false),
        ("secret", "SecretSpec", true),
        ("secret_bad_base64", "SecretSpec", false),
        ("config", "ConfigSpec", true),
        ("network", "NetworkCreateRequest", true),
        ("node_spec", "NodeSpec", true),
        ("swarm_init", "SwarmInitRequest", true),
        ("swarm_join", "SwarmJoinRequest", true),
        ("swarm_join_bad_addr", "SwarmJoinRequest", false),
        ("unlock", "SwarmUnlockRequest", true),
    ];
    for (file, kind, ok) in expect {
        let got = accepted
            .get(file)
            .unwrap_or_else(|| panic!("seed {file} is missing from the corpus"));
        assert_eq!(
            got.contains(&kind),
            ok,
            "{file} as {kind}: accepted as {got:?}"
        );
    }
    for bad in ["empty", "deep_nesting", "invalid_utf8", "wrong_types"] {
        let got = accepted.get(bad).map(Vec::as_slice).unwrap_or_default();
        assert!(
            !got.contains(&"ServiceSpec"),
            "{bad} was accepted as {got:?}"
        );
    }
}
