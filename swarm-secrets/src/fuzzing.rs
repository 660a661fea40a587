//! Entry points for the cargo-fuzz targets in `fuzz/fuzz_targets/`, also run by the corpus replay test
//! (`tests/fuzz_corpus.rs`) so every corpus file stays a regression test.
//!
//! Each function accepts any bytes, must never panic on them, and asserts the invariants a bug would
//! break (a panic here is a finding).

use crate::{Dek, Error, RecordHeader, RecordPlace, UnlockKey};

/// The DEK the `sealed_record` target opens with; the seed corpus holds records sealed with it so the
/// fuzzer starts past the header checks.
pub const FUZZ_DEK_BYTES: [u8; 32] = [0x42; 32];

/// The place the seed corpus records were sealed for, besides the place each header names.
pub fn fuzz_place() -> RecordPlace {
    RecordPlace::LogEntry { index: 1, term: 1 }
}

/// Parses `data` as an unlock key; a key that parses must print back to text that parses to itself.
pub fn unlock_key(data: &[u8]) {
    if let Ok(key) = UnlockKey::parse_bytes(data) {
        let text = key.expose_text();
        let again = UnlockKey::parse(&text);
        assert!(
            again.as_ref() == Ok(&key),
            "an unlock key did not survive format + parse"
        );
    }
}

/// Decodes `data` as a sealed record: header peek and open with [`FUZZ_DEK_BYTES`], at a fixed place
/// and at the place the header names.
pub fn sealed_record(data: &[u8]) {
    let dek = Dek::from_bytes(FUZZ_DEK_BYTES);
    let at_fixed = dek.open(&fuzz_place(), data);
    match RecordHeader::peek(data) {
        Err(e) => {
            // Structure is checked before anything else, so open must fail the same way.
            assert_eq!(
                at_fixed.err(),
                Some(e),
                "peek and open disagree on a malformed record"
            );
        }
        Ok(header) => {
            let at_own = dek.open(&header.place, data);
            if at_own.is_ok() {
                assert_eq!(
                    header.key_id,
                    dek.id(),
                    "a record opened under a foreign key id"
                );
            }
            if header.key_id != dek.id() {
                assert_eq!(
                    at_own.err(),
                    Some(Error::UnknownKey {
                        key_id: header.key_id
                    })
                );
            }
            if header.place != fuzz_place() {
                assert!(
                    at_fixed.is_err(),
                    "a record opened at a place it was not sealed for"
                );
            }
        }
    }
}
