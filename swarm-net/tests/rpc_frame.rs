//! RPC frames as data: property tests of the codec, and the `rpc_frames` fuzz corpus replayed
//! through the same check the fuzz target runs.
//!
//! A missing or empty corpus directory fails: the replay would otherwise pass while checking nothing.

use std::fs;
use std::path::PathBuf;

use proptest::prelude::*;
use swarm_net::rpc::frame::{self, FrameError, FrameKind};
use swarm_net::rpc::{Code, Status};

const KIND: FrameKind = FrameKind {
    name: "prop",
    limit: 2048,
};

#[test]
fn fuzz_corpus_replays() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/rpc_frames");
    let mut n = 0;
    for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        swarm_net::fuzzing::rpc_frames(&fs::read(&path).unwrap());
        n += 1;
    }
    assert!(n > 0, "corpus {} is empty", dir.display());
}

fn status() -> impl Strategy<Value = Status> {
    (0usize..3, ".{0,40}").prop_map(|(c, m)| {
        let code = [Code::Internal, Code::NotFound, Code::Unavailable][c];
        Status::new(code, m)
    })
}

proptest! {
    /// Encode then decode gives the value back and consumes exactly the frame; values over the limit
    /// are refused when encoding.
    #[test]
    fn round_trip(payload in proptest::collection::vec(any::<u8>(), 0..3000), err in status(), use_err in any::<bool>()) {
        let value: Result<Vec<u8>, Status> = if use_err { Err(err) } else { Ok(payload) };
        match frame::encode(KIND, &value) {
            Ok(bytes) => {
                prop_assert!(bytes.len() <= KIND.limit as usize + frame::PREFIX_LEN);
                let (back, used) = frame::decode::<Result<Vec<u8>, Status>>(KIND, &bytes).unwrap().unwrap();
                prop_assert_eq!(back, value);
                prop_assert_eq!(used, bytes.len());
            }
            Err(FrameError::TooLarge { .. }) => {
                let len = bincode::serialized_size(&value).unwrap();
                prop_assert!(len > u64::from(KIND.limit));
            }
            Err(e) => prop_assert!(false, "unexpected {}", e),
        }
    }

    /// Reading a stream in arbitrary chunks gives the same frames as decoding the whole buffer, and
    /// arbitrary bytes never panic.
    #[test]
    fn stream_reading_matches_slice_decoding(
        items in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 0..8),
        junk in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut bytes = Vec::new();
        for item in &items {
            bytes.extend(frame::encode(KIND, item).unwrap());
        }
        bytes.extend(&junk);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let read = rt.block_on(async {
            let mut reader = &bytes[..];
            let mut out = Vec::new();
            while let Ok(Some(v)) = frame::read::<Vec<u8>, _>(&mut reader, KIND).await {
                out.push(v);
            }
            out
        });
        prop_assert!(read.len() >= items.len());
        prop_assert_eq!(&read[..items.len()], &items[..]);
        swarm_net::fuzzing::rpc_frames(&junk);
    }
}
