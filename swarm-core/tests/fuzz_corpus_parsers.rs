//! Replays the fuzz corpora of the parser targets (`fuzz/corpus/{duration,constraint,placement}`)
//! through the same checks the fuzz targets make, so every input that ever found a bug stays a
//! regression test under plain `cargo test`, without cargo-fuzz or a nightly toolchain.
//!
//! A missing or empty corpus directory fails the test: it means the corpus was moved or lost, and
//! the replay would otherwise pass while checking nothing.

use std::fs;
use std::path::PathBuf;

use swarm_core::constraint::{ip_matches, Constraint};
use swarm_core::duration::{format_duration, parse_duration};
use swarm_core::placement::SpreadPreference;

/// Reads every file of `fuzz/corpus/<target>/`, failing if there is none.
fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let entries = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus directory {} is missing: {e}", dir.display()));
    let mut files: Vec<(PathBuf, Vec<u8>)> = entries
        .map(|entry| entry.expect("readable corpus entry").path())
        .filter(|path| path.is_file())
        .map(|path| {
            let bytes =
                fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            (path, bytes)
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
fn duration_corpus() {
    for (path, bytes) in corpus("duration") {
        let Ok(s) = std::str::from_utf8(&bytes) else {
            continue;
        };
        if let Ok(d) = parse_duration(s) {
            let again = parse_duration(&format_duration(d));
            assert_eq!(again, Ok(d), "{}: {s:?}", path.display());
        }
    }
}

#[test]
fn constraint_corpus() {
    for (path, bytes) in corpus("constraint") {
        let Ok(s) = std::str::from_utf8(&bytes) else {
            continue;
        };
        if let Ok(c) = Constraint::parse(s) {
            let again = Constraint::parse(&c.to_string());
            assert_eq!(again, Ok(c.clone()), "{}: {s:?}", path.display());
            let _ = c.matches(Some(s));
            let _ = c.matches(None);
        }
        let _ = ip_matches(s, std::net::Ipv4Addr::new(10, 0, 0, 1).into());
        let _ = ip_matches(s, std::net::Ipv6Addr::LOCALHOST.into());
    }
}

#[test]
fn placement_corpus() {
    for (path, bytes) in corpus("placement") {
        let Ok(s) = std::str::from_utf8(&bytes) else {
            continue;
        };
        let parsed = [
            SpreadPreference::parse(s),
            SpreadPreference::parse_descriptor(s),
        ];
        for p in parsed.into_iter().flatten() {
            let again = SpreadPreference::parse_descriptor(&p.descriptor());
            assert_eq!(again, Ok(p), "{}: {s:?}", path.display());
        }
    }
}
