//! Decoding a serialized list of StoreActions from untrusted bytes must never panic, whatever
//! decodes must re-encode to the same bytes, and the size the proposal split counts
//! (`encoded_size`) must be the length of that encoding.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(actions) = swarm_core::action::decode_actions(data) {
        let again = swarm_core::action::encode_actions(&actions);
        assert_eq!(
            swarm_core::action::encoded_size(&actions),
            Some(again.len() as u64)
        );
        assert_eq!(
            swarm_core::action::decode_actions(&again).ok(),
            Some(actions)
        );
    }
});
