//! Sealing and opening records: round trips, tampering, moved and replayed records, wrong keys.

mod common;

use proptest::prelude::*;
use swarm_secrets::{Dek, Error, Kek, KeyPurpose, RecordHeader, RecordPlace};

fn log(index: u64, term: u64) -> RecordPlace {
    RecordPlace::LogEntry { index, term }
}

#[test]
fn round_trips_for_every_kind_of_place_and_size() {
    let mut rng = common::rng(1);
    let dek = Dek::generate(&mut rng);
    let places = [
        log(0, 0),
        log(u64::MAX, u64::MAX),
        RecordPlace::whole_snapshot("3-1200-4"),
        RecordPlace::Snapshot {
            id: "s".into(),
            chunk: 9,
            last: false,
        },
        RecordPlace::WrappedKey {
            purpose: KeyPurpose::Named("x".into()),
        },
        RecordPlace::Other {
            domain: "embedder/state".into(),
            id: b"key".to_vec(),
        },
    ];
    for place in &places {
        for len in [0, 1, 15, 16, 17, 1024, 65 * 1024] {
            let plaintext: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let sealed = dek.seal(place, &plaintext, &mut rng).unwrap();
            assert_eq!(
                sealed.len(),
                len + swarm_secrets::record::record_overhead(place)
            );
            assert_eq!(
                dek.open(place, &sealed).unwrap().expose(),
                plaintext,
                "{place} {len}"
            );
        }
    }
}

#[test]
fn every_nonce_is_fresh() {
    let mut rng = common::rng(2);
    let dek = Dek::generate(&mut rng);
    let a = dek.seal(&log(1, 1), b"same", &mut rng).unwrap();
    let b = dek.seal(&log(1, 1), b"same", &mut rng).unwrap();
    assert_ne!(
        a, b,
        "two seals of the same plaintext must differ (fresh nonce)"
    );
}

/// Flipping any single bit anywhere (magic, version, key id, place, nonce, ciphertext, tag) is
/// rejected with a typed error, for a log entry, a snapshot and a wrapped key.
#[test]
fn every_single_bit_flip_is_rejected() {
    let mut rng = common::rng(3);
    let dek = Dek::generate(&mut rng);
    let cases = [
        (log(42, 7), b"a raft entry payload".to_vec()),
        (RecordPlace::whole_snapshot("7-42-1"), vec![0xaa; 40]),
        (
            RecordPlace::Other {
                domain: "d".into(),
                id: vec![1, 2, 3],
            },
            vec![],
        ),
    ];
    for (place, plaintext) in cases {
        let sealed = dek.seal(&place, &plaintext, &mut rng).unwrap();
        for bit in 0..sealed.len() * 8 {
            let mut flipped = sealed.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let err = dek
                .open(&place, &flipped)
                .expect_err("a flipped record opened");
            assert!(
                matches!(
                    err,
                    Error::CorruptRecord { .. }
                        | Error::UnknownVersion { .. }
                        | Error::UnknownKey { .. }
                        | Error::TamperedRecord
                ),
                "bit {bit} of {place}: unexpected {err:?}"
            );
        }
    }
}

#[test]
fn flips_in_payload_and_tag_are_reported_as_tampering() {
    let mut rng = common::rng(4);
    let dek = Dek::generate(&mut rng);
    let place = log(5, 1);
    let sealed = dek.seal(&place, b"payload", &mut rng).unwrap();
    let body_start = sealed.len() - 7 - 16 - 24; // nonce, ciphertext, tag
    for i in body_start..sealed.len() {
        let mut flipped = sealed.clone();
        flipped[i] ^= 0x80;
        assert_eq!(
            dek.open(&place, &flipped).unwrap_err(),
            Error::TamperedRecord,
            "byte {i}"
        );
    }
}

#[test]
fn every_truncation_and_extension_is_rejected() {
    let mut rng = common::rng(5);
    let dek = Dek::generate(&mut rng);
    let place = log(9, 2);
    let sealed = dek.seal(&place, b"entry", &mut rng).unwrap();
    for len in 0..sealed.len() {
        let err = dek.open(&place, &sealed[..len]).unwrap_err();
        assert!(
            matches!(err, Error::CorruptRecord { .. } | Error::TamperedRecord),
            "len {len}: {err:?}"
        );
    }
    let mut longer = sealed.clone();
    longer.push(0);
    assert_eq!(
        dek.open(&place, &longer).unwrap_err(),
        Error::TamperedRecord
    );
}

/// A record copied to another index, another term (an entry truncated by a new leader and replayed),
/// another snapshot chunk or another key slot opens to nothing, with an error naming both places.
#[test]
fn a_record_moved_to_another_place_is_rejected() {
    let mut rng = common::rng(6);
    let dek = Dek::generate(&mut rng);
    let moves = [
        (log(10, 3), log(11, 3)),
        (log(10, 3), log(10, 4)),
        (log(10, 3), RecordPlace::whole_snapshot("10")),
        (
            RecordPlace::Snapshot {
                id: "s".into(),
                chunk: 0,
                last: false,
            },
            RecordPlace::Snapshot {
                id: "s".into(),
                chunk: 1,
                last: false,
            },
        ),
        (
            RecordPlace::Snapshot {
                id: "s".into(),
                chunk: 3,
                last: false,
            },
            RecordPlace::Snapshot {
                id: "s".into(),
                chunk: 3,
                last: true,
            },
        ),
        (
            RecordPlace::WrappedKey {
                purpose: KeyPurpose::RaftDekPending,
            },
            RecordPlace::WrappedKey {
                purpose: KeyPurpose::RaftDek,
            },
        ),
    ];
    for (sealed_for, opened_as) in moves {
        let sealed = dek.seal(&sealed_for, b"x", &mut rng).unwrap();
        assert_eq!(
            dek.open(&opened_as, &sealed).unwrap_err(),
            Error::WrongPlace {
                sealed_for: Box::new(sealed_for),
                opened_as: Box::new(opened_as)
            }
        );
    }
}

/// Rewriting the clear place in the header to match the new index does not help: the header is
/// authenticated, so the forgery is reported as tampering.
#[test]
fn rewriting_the_header_place_is_tampering() {
    let mut rng = common::rng(7);
    let dek = Dek::generate(&mut rng);
    let sealed = dek.seal(&log(10, 3), b"x", &mut rng).unwrap();
    let mut forged = sealed.clone();
    let index_at = 2 + 1 + 4 + 1; // magic, version, key id, place tag
    forged[index_at..index_at + 8].copy_from_slice(&11u64.to_be_bytes());
    assert_eq!(RecordHeader::peek(&forged).unwrap().place, log(11, 3));
    assert_eq!(
        dek.open(&log(11, 3), &forged).unwrap_err(),
        Error::TamperedRecord
    );
}

#[test]
fn another_key_is_rejected() {
    let mut rng = common::rng(8);
    let dek = Dek::generate(&mut rng);
    let other = Dek::generate(&mut rng);
    let sealed = dek.seal(&log(1, 1), b"x", &mut rng).unwrap();
    assert_eq!(
        other.open(&log(1, 1), &sealed).unwrap_err(),
        Error::UnknownKey { key_id: dek.id() }
    );

    let kek = Kek::generate(&mut rng);
    let wrapped = kek
        .wrap(&KeyPurpose::TlsPrivateKey, b"tls", &mut rng)
        .unwrap();
    let other_kek = Kek::generate(&mut rng);
    assert_eq!(
        other_kek
            .unwrap(&KeyPurpose::TlsPrivateKey, &wrapped)
            .unwrap_err(),
        Error::UnknownKey { key_id: kek.id() }
    );
    assert!(matches!(
        kek.unwrap(&KeyPurpose::Named("tls".into()), &wrapped)
            .unwrap_err(),
        Error::WrongPlace { .. }
    ));
}

#[test]
fn a_different_key_with_a_forged_id_is_tampering() {
    let mut rng = common::rng(9);
    let dek = Dek::generate(&mut rng);
    let other = Dek::generate(&mut rng);
    let mut sealed = other.seal(&log(1, 1), b"x", &mut rng).unwrap();
    sealed[3..7].copy_from_slice(&dek.id().get().to_be_bytes());
    assert_eq!(
        dek.open(&log(1, 1), &sealed).unwrap_err(),
        Error::TamperedRecord
    );
}

#[test]
fn error_messages_say_what_happened() {
    let mut rng = common::rng(10);
    let dek = Dek::generate(&mut rng);
    let sealed = dek.seal(&log(10, 3), b"x", &mut rng).unwrap();
    let msg = dek.open(&log(11, 3), &sealed).unwrap_err().to_string();
    assert!(
        msg.contains("log entry 10 (term 3)") && msg.contains("log entry 11 (term 3)"),
        "{msg}"
    );
    let msg = dek
        .open(&log(10, 3), &sealed[..20])
        .unwrap_err()
        .to_string();
    assert!(msg.starts_with("corrupt sealed record"), "{msg}");
}

fn any_place() -> impl Strategy<Value = RecordPlace> {
    prop_oneof![
        (any::<u64>(), any::<u64>())
            .prop_map(|(index, term)| RecordPlace::LogEntry { index, term }),
        (".{0,12}", any::<u32>(), any::<bool>())
            .prop_map(|(id, chunk, last)| RecordPlace::Snapshot { id, chunk, last }),
        ".{0,8}".prop_map(|n| RecordPlace::WrappedKey {
            purpose: KeyPurpose::Named(n)
        }),
        (".{0,8}", proptest::collection::vec(any::<u8>(), 0..8))
            .prop_map(|(domain, id)| RecordPlace::Other { domain, id }),
    ]
}

proptest! {
    #[test]
    fn any_place_and_plaintext_round_trip_and_only_there(
        seed in any::<u64>(),
        place in any_place(),
        other in any_place(),
        plaintext in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut rng = common::rng(seed);
        let dek = Dek::generate(&mut rng);
        let sealed = dek.seal(&place, &plaintext, &mut rng).unwrap();
        let opened = dek.open(&place, &sealed).unwrap();
        prop_assert_eq!(opened.expose(), &plaintext[..]);
        prop_assert_eq!(RecordHeader::peek(&sealed).unwrap().place, place.clone());
        if other != place {
            let is_wrong_place = matches!(dek.open(&other, &sealed), Err(Error::WrongPlace { .. }));
            prop_assert!(is_wrong_place);
        }
    }

    /// Any byte string is a typed error (or, by a 2^-128 fluke, a valid record), never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        swarm_secrets::fuzzing::sealed_record(&bytes);
        let mut with_header = b"SW\x01".to_vec();
        with_header.extend_from_slice(&bytes);
        swarm_secrets::fuzzing::sealed_record(&with_header);
    }
}
