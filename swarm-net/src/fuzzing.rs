//! Checks run by the fuzz targets in `fuzz/` and replayed over their corpora by this crate's tests,
//! so a crash found by the fuzzer becomes an ordinary failing test.

use crate::token::JoinToken;

/// Any bytes give a join token or a typed error, never a panic; every accepted token prints back to
/// the same text (surrounding whitespace aside) and parses to the same token.
pub fn join_token(data: &[u8]) {
    if let Ok(token) = JoinToken::parse_bytes(data) {
        let text = token.expose_text();
        assert_eq!(
            text.as_bytes(),
            data.trim_ascii(),
            "one token, one spelling"
        );
        let again = JoinToken::parse(&text).expect("a printed token parses");
        assert!(again == token, "print + parse keeps the token");
    }
}
