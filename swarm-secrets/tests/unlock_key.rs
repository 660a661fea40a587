//! Unlock key text: parsing, formatting, every malformed shape, redaction.

mod common;

use proptest::prelude::*;
use swarm_secrets::{Error, UnlockKey, UnlockKeyFormatError as F};

const KEY_0_TO_31: &str = "SWMKEY-1-AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

fn key_0_to_31() -> UnlockKey {
    UnlockKey::from_bytes(std::array::from_fn(|i| i as u8))
}

#[test]
fn formats_and_parses_the_known_key() {
    assert_eq!(&*key_0_to_31().expose_text(), KEY_0_TO_31);
    assert_eq!(UnlockKey::parse(KEY_0_TO_31).unwrap(), key_0_to_31());
    assert_eq!(KEY_0_TO_31.parse::<UnlockKey>().unwrap(), key_0_to_31());
}

/// Each malformed input maps to the one error that describes it (tests as data).
#[test]
fn malformed_keys_are_told_apart() {
    let body = &KEY_0_TO_31["SWMKEY-1-".len()..];
    let cases: Vec<(String, F)> = vec![
        (String::new(), F::MissingPrefix),
        ("SWMKEY-1".into(), F::MissingPrefix),
        (format!("swmkey-1-{body}"), F::MissingPrefix),
        (format!("SWMKEY-2-{body}"), F::MissingPrefix),
        (format!("SWMTKN-1-{body}"), F::MissingPrefix),
        (body.to_string(), F::MissingPrefix),
        ("SWMKEY-1-".into(), F::WrongLength { chars: 0 }),
        (
            format!("SWMKEY-1-{}", &body[..42]),
            F::WrongLength { chars: 42 },
        ),
        (format!("SWMKEY-1-{body}A"), F::WrongLength { chars: 44 }),
        (
            format!("SWMKEY-1-{body}{body}"),
            F::WrongLength { chars: 86 },
        ),
        (format!("SWMKEY-1-{body}="), F::BadEncoding),
        (format!("SWMKEY-1-{}-", &body[..42]), F::BadEncoding),
        (format!("SWMKEY-1-{}_", &body[..42]), F::BadEncoding),
        (
            format!("SWMKEY-1-{} ", &body[..20]) + &body[21..],
            F::BadEncoding,
        ),
        (format!("SWMKEY-1-{}é", &body[..41]), F::BadEncoding),
        // The last character carries 2 unused bits; they must be zero ("8" = 111100, "9" = 111101).
        (format!("SWMKEY-1-{}9", &body[..42]), F::BadEncoding),
    ];
    for (text, expected) in cases {
        assert_eq!(
            UnlockKey::parse(&text).unwrap_err(),
            Error::MalformedUnlockKey(expected.clone()),
            "input {text:?}"
        );
    }
    assert_eq!(
        UnlockKey::parse_bytes(b"SWMKEY-1-\xff\xfe").unwrap_err(),
        Error::MalformedUnlockKey(F::BadEncoding)
    );
}

#[test]
fn surrounding_whitespace_is_ignored() {
    let pasted = format!("  {KEY_0_TO_31}\r\n");
    assert_eq!(UnlockKey::parse(&pasted).unwrap(), key_0_to_31());
}

#[test]
fn error_messages_explain_the_fix() {
    let msg = UnlockKey::parse("hello").unwrap_err().to_string();
    assert!(
        msg.starts_with("malformed unlock key: it must start with `SWMKEY-1-`"),
        "{msg}"
    );
    let msg = UnlockKey::parse("SWMKEY-1-abc").unwrap_err().to_string();
    assert!(
        msg.contains("has 3 characters but an unlock key has 43"),
        "{msg}"
    );
}

#[test]
fn keys_are_redacted_everywhere() {
    let key = key_0_to_31();
    assert_eq!(format!("{key}"), "[REDACTED]");
    assert_eq!(format!("{key:?}"), "[REDACTED]");
    assert_eq!(format!("{:?}", Some(&key)), "Some([REDACTED])");
}

#[test]
fn generated_keys_differ_and_round_trip() {
    let mut rng = common::rng(1);
    let a = UnlockKey::generate(&mut rng);
    let b = UnlockKey::generate(&mut rng);
    assert_ne!(a, b);
    assert_eq!(UnlockKey::parse(&a.expose_text()).unwrap(), a);
    assert_eq!(a.expose_text().len(), 9 + 43);
}

proptest! {
    #[test]
    fn every_key_round_trips(bytes in any::<[u8; 32]>()) {
        let key = UnlockKey::from_bytes(bytes);
        prop_assert_eq!(UnlockKey::parse(&key.expose_text()).unwrap(), key);
    }

    #[test]
    fn arbitrary_text_is_a_key_or_a_typed_error(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        swarm_secrets::fuzzing::unlock_key(&bytes);
        let mut prefixed = b"SWMKEY-1-".to_vec();
        prefixed.extend_from_slice(&bytes);
        swarm_secrets::fuzzing::unlock_key(&prefixed);
        if let Err(e) = UnlockKey::parse_bytes(&prefixed) {
            prop_assert!(matches!(e, Error::MalformedUnlockKey(_)));
        }
    }
}
