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

/// Any bytes, read as a sequence of RPC frames (a request head's shape, then responses), give values
/// or a typed error, never a panic nor an allocation past the frame limit; every accepted frame
/// re-encodes to exactly its bytes (the encoding is canonical, so a frame has one spelling).
pub fn rpc_frames(data: &[u8]) {
    use crate::rpc::frame::{decode, encode, FrameKind};
    use crate::rpc::Status;

    const HEAD: FrameKind = FrameKind {
        name: "fuzz head",
        limit: 288,
    };
    const REPLY: FrameKind = FrameKind {
        name: "fuzz reply",
        limit: 4096,
    };
    let mut rest = data;
    let Ok(Some((head, used))) = decode::<(String, Option<u64>)>(HEAD, rest) else {
        return;
    };
    assert_eq!(encode(HEAD, &head).ok().as_deref(), Some(&rest[..used]));
    rest = &rest[used..];
    while let Ok(Some((reply, used))) = decode::<Result<Vec<u8>, Status>>(REPLY, rest) {
        assert!(
            used <= REPLY.limit as usize + 4,
            "frame longer than its limit"
        );
        assert_eq!(encode(REPLY, &reply).ok().as_deref(), Some(&rest[..used]));
        rest = &rest[used..];
    }
}
