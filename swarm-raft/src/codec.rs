//! bincode with one set of options everywhere (fixed-width integers, no trailing bytes) and a size
//! limit on every decode, so a corrupt or hostile length cannot make us allocate without bound.

use bincode::Options;
use serde::de::DeserializeOwned;
use serde::Serialize;

fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .reject_trailing_bytes()
}

/// Encodes a value. Serializing plain data into a `Vec` cannot fail; an empty vector is returned
/// if it somehow does, which every decoder then refuses.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    options().serialize(value).unwrap_or_default()
}

/// The length [`encode`] would produce, without encoding (`u64::MAX` if it cannot be encoded).
pub(crate) fn encoded_len<T: Serialize + ?Sized>(value: &T) -> u64 {
    options().serialized_size(value).unwrap_or(u64::MAX)
}

/// Decodes untrusted bytes, refusing to allocate more than `limit` bytes.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], limit: u64) -> Result<T, String> {
    options()
        .with_limit(limit)
        .deserialize(bytes)
        .map_err(|e| e.to_string())
}
