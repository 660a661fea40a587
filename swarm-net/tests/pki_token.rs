//! Join tokens: every malformed shape gets its own typed error, real Docker tokens parse and pin
//! their CA, and the cluster's token pair admits exactly its current secrets.

use proptest::prelude::*;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use swarm_core::Id;
use swarm_net::pki::testing::TestPki;
use swarm_net::pki::CertInfo;
use swarm_net::token::ca_digest;
use swarm_net::{Error, JoinToken, JoinTokens, Role, TokenFormatError};

const DOCKER_CA: &[u8] = include_bytes!("data/docker/root_ca.pem");
const DOCKER_WORKER: &str = include_str!("data/docker/worker_token.txt");
const DOCKER_MANAGER: &str = include_str!("data/docker/manager_token.txt");

const D: &str = "1w0txn6aduvfael8se72pfpymxrpky2er91gtp1q8tpsy12dhq";
const S: &str = "aiq01txh46uq6jvpe3b9e01wv";

#[test]
fn docker_tokens_parse_round_trip_and_pin_the_docker_ca() {
    let worker = JoinToken::parse(DOCKER_WORKER).unwrap();
    let manager = JoinToken::parse(DOCKER_MANAGER).unwrap();
    assert_eq!(&*worker.expose_text(), DOCKER_WORKER.trim());
    assert_eq!(&*manager.expose_text(), DOCKER_MANAGER.trim());
    assert_eq!(worker.ca_digest(), manager.ca_digest());
    assert_ne!(worker, manager);
    assert_eq!(worker.ca_digest(), &ca_digest(DOCKER_CA));
    let roots = worker.pin_bundle(DOCKER_CA).unwrap();
    assert_eq!(roots.len(), 1);
    assert!(CertInfo::parse(&roots[0]).unwrap().is_ca);
    // One byte less (the final newline) is another bundle, and is refused.
    let short = &DOCKER_CA[..DOCKER_CA.len() - 1];
    assert!(matches!(
        worker.pin_bundle(short),
        Err(Error::CaDigestMismatch { expected, .. }) if expected == D
    ));
}

#[test]
fn every_malformed_shape_has_its_own_error() {
    use TokenFormatError::*;
    let z50 = "z".repeat(50);
    let z25 = "z".repeat(25);
    let cases: Vec<(String, TokenFormatError)> = vec![
        (String::new(), MissingPrefix),
        (format!("SWMKEY-1-{D}-{S}"), MissingPrefix),
        (format!("swmtkn-1-{D}-{S}"), MissingPrefix),
        (format!("xSWMTKN-1-{D}-{S}"), MissingPrefix),
        (
            format!("SWMTKN-2-1-{D}-{S}"),
            UnsupportedVersion { found: "2".into() },
        ),
        (
            format!("SWMTKN--{D}-{S}"),
            UnsupportedVersion { found: "".into() },
        ),
        ("SWMTKN".into(), WrongPartCount { parts: 1 }),
        (format!("SWMTKN-1-{D}"), WrongPartCount { parts: 3 }),
        (format!("SWMTKN-1-{D}-{S}-x"), WrongPartCount { parts: 5 }),
        (format!("SWMTKN-1-{D}-{S}-"), WrongPartCount { parts: 5 }),
        (
            format!("SWMTKN-1-{}-{S}", &D[1..]),
            DigestLength { chars: 49 },
        ),
        (format!("SWMTKN-1-{D}0-{S}"), DigestLength { chars: 51 }),
        (format!("SWMTKN-1--{S}"), DigestLength { chars: 0 }),
        (
            format!("SWMTKN-1-{D}-{}", &S[1..]),
            SecretLength { chars: 24 },
        ),
        (format!("SWMTKN-1-{D}-{S}a"), SecretLength { chars: 26 }),
        (
            format!("SWMTKN-1-{}-{S}", D.to_uppercase()),
            BadCharacter { part: "digest" },
        ),
        (
            format!("SWMTKN-1-{}+-{S}", &D[1..]),
            BadCharacter { part: "digest" },
        ),
        (
            format!("SWMTKN-1-{D}-{} ", &S[1..]).replace(' ', "_"),
            BadCharacter { part: "secret" },
        ),
        (
            format!("SWMTKN-1-{D}-{}é", &S[2..]),
            BadCharacter { part: "secret" },
        ),
        (
            format!("SWMTKN-1-{z50}-{S}"),
            OutOfRange {
                part: "digest",
                bits: 256,
            },
        ),
        (
            format!("SWMTKN-1-{D}-{z25}"),
            OutOfRange {
                part: "secret",
                bits: 128,
            },
        ),
    ];
    for (text, want) in cases {
        assert_eq!(
            JoinToken::parse(&text).unwrap_err(),
            Error::MalformedToken(want.clone()),
            "{text:?}"
        );
        // Every error message says what to do.
        assert!(Error::MalformedToken(want)
            .to_string()
            .contains("docker swarm join-token"));
    }
    assert!(JoinToken::parse_bytes(b"SWMTKN-1-\xff\xfe-x").is_err());
}

#[test]
fn largest_values_fit_and_whitespace_around_is_ignored() {
    let max = JoinToken::from_parts([0xff; 32], [0xff; 16]);
    let text = max.expose_text();
    assert_eq!(JoinToken::parse(&text).unwrap(), max);
    let zero = JoinToken::from_parts([0; 32], [0; 16]);
    assert_eq!(
        *zero.expose_text(),
        format!("SWMTKN-1-{}-{}", "0".repeat(50), "0".repeat(25))
    );
    let padded = format!(" \t{DOCKER_WORKER}\r\n");
    assert_eq!(
        JoinToken::parse(&padded).unwrap(),
        JoinToken::parse(DOCKER_WORKER).unwrap()
    );
    assert!(JoinToken::parse(&format!("SWMTKN-1-{D} -{S}")).is_err());
}

#[test]
fn debug_hides_the_secret() {
    let token = JoinToken::parse(DOCKER_WORKER).unwrap();
    let shown = format!("{token:?}");
    assert!(!shown.contains(S), "{shown}");
    assert!(shown.contains(D) && shown.contains("REDACTED"), "{shown}");
}

#[test]
fn token_pair_admits_current_secrets_only() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let pki = TestPki::new(5, swarm_core::Timestamp::from_secs(1_800_000_000));
    let bundle = pki.ca().bundle_pem();
    let mut tokens = JoinTokens::generate(bundle.as_bytes(), &mut rng);
    let worker = tokens.token(Role::Worker).clone();
    let manager = tokens.token(Role::Manager).clone();
    assert_eq!(tokens.role_of(&worker), Ok(Role::Worker));
    assert_eq!(tokens.role_of(&manager), Ok(Role::Manager));
    assert_eq!(
        worker.pin_bundle(bundle.as_bytes()).unwrap(),
        vec![pki.root_der()]
    );

    // Another cluster's token, and the same secret pinned to another CA, are refused.
    let other = JoinTokens::generate(b"another bundle", &mut rng);
    assert_eq!(
        tokens.role_of(other.token(Role::Worker)),
        Err(Error::InvalidToken)
    );
    let mut secret = [0u8; 16];
    secret.copy_from_slice(&parse_secret(&worker));
    let wrong_ca = JoinToken::from_parts(ca_digest(b"another bundle"), secret);
    assert_eq!(tokens.role_of(&wrong_ca), Err(Error::InvalidToken));

    // Rotating the worker token retires the old one and leaves the manager token alone.
    tokens.rotate(Role::Worker, &mut rng);
    assert_eq!(tokens.role_of(&worker), Err(Error::InvalidToken));
    assert_eq!(tokens.role_of(&manager), Ok(Role::Manager));
    let new_worker = tokens.token(Role::Worker).clone();
    assert_eq!(new_worker.ca_digest(), worker.ca_digest());
    assert_eq!(tokens.role_of(&new_worker), Ok(Role::Worker));
    tokens.rotate(Role::Manager, &mut rng);
    assert_eq!(tokens.role_of(&manager), Err(Error::InvalidToken));
}

/// The secret's 16 bytes, decoded through `Id` (the same base36 alphabet and width) as an oracle.
fn parse_secret(token: &JoinToken) -> [u8; 16] {
    let text = token.expose_text();
    let secret = text.rsplit('-').next().unwrap();
    let mut n: u128 = 0;
    for c in secret.bytes() {
        n = n * 36 + u128::from(char::from(c).to_digit(36).unwrap());
    }
    n.to_be_bytes()
}

proptest! {
    #[test]
    fn any_parts_round_trip(digest in any::<[u8; 32]>(), secret in any::<[u8; 16]>()) {
        let token = JoinToken::from_parts(digest, secret);
        let text = token.expose_text();
        prop_assert_eq!(text.len(), 9 + 50 + 1 + 25);
        // Independent base36 oracle for the secret part: swarm-core's id encoding of a u128.
        let want = Id::from_u128(u128::from_be_bytes(secret));
        let suffix = format!("-{want}");
        prop_assert!(text.ends_with(&suffix));
        let back = JoinToken::parse(&text).unwrap();
        prop_assert_eq!(back.ca_digest(), &digest);
        prop_assert_eq!(parse_secret(&back), secret);
    }

    #[test]
    fn any_bytes_give_a_token_or_an_error(data in proptest::collection::vec(any::<u8>(), 0..120)) {
        swarm_net::fuzzing::join_token(&data);
    }

    #[test]
    fn near_miss_texts_never_panic(prefix in "SWMTKN-1-[0-9a-z-]{0,90}") {
        swarm_net::fuzzing::join_token(prefix.as_bytes());
    }
}
