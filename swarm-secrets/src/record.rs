//! The sealed record format (version 1): XChaCha20-Poly1305 with a fresh 24-byte random nonce per
//! record and a header, authenticated as associated data, that names the key and the record's place.
//!
//! ```text
//! offset  size  field
//! 0       2     magic "SW" (0x53 0x57)
//! 2       1     format version = 1
//! 3       4     key id (u32 BE; which DEK or KEK sealed it, see crate::keys)
//! 7       n     place, canonical encoding (see crate::place)
//! 7+n     24    nonce (random, from the caller's CSPRNG)
//! 31+n    m     ciphertext (m = plaintext length)
//! 31+n+m  16    Poly1305 tag
//! ```
//!
//! Associated data = every byte before the ciphertext (magic, version, key id, place, nonce). So any
//! change to the header is caught by the tag, a record cannot be opened at another place (index, term,
//! snapshot, key slot), and a future version 2 can change everything after the version byte.
//!
//! Open order, each failure a distinct [`Error`]: structure (`CorruptRecord`), version
//! (`UnknownVersion`), key id (`UnknownKey`), place: if the caller's place differs from the header's, the
//! record is authenticated against the header's own place, and only if that succeeds is the answer
//! `WrongPlace` (otherwise `TamperedRecord`); finally the tag (`TamperedRecord`). Decryption happens
//! only after the tag verified, into a zeroizing buffer, so no partial plaintext ever escapes.
//!
//! With a 192-bit random nonce, the chance of a nonce collision stays below 2^-64 up to 2^64 records
//! per key, so no counter state needs to survive restarts.

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::XNonce;
use rand_core::CryptoRngCore;

use crate::codec::Reader;
use crate::keys::{KeyId, KeyMaterial};
use crate::place::RecordPlace;
use crate::{Error, SecretBytes};

/// First two bytes of every sealed record.
pub const RECORD_MAGIC: [u8; 2] = *b"SW";
/// The record format version this build writes and reads.
pub const RECORD_VERSION: u8 = 1;
/// Nonce length (XChaCha20).
pub const NONCE_LEN: usize = 24;
/// Authentication tag length (Poly1305).
pub const TAG_LEN: usize = 16;
/// Largest plaintext one record can carry (XChaCha20's 32-bit block counter: 2^32 blocks of 64 bytes).
pub const MAX_PLAINTEXT_LEN: u64 = 1 << 38;

/// Bytes a record adds to its plaintext, for a given place.
pub fn record_overhead(place: &RecordPlace) -> usize {
    let mut encoded = Vec::new();
    let place_len = place
        .encode_into(&mut encoded)
        .map_or(0, |()| encoded.len());
    RECORD_MAGIC.len() + 1 + 4 + place_len + NONCE_LEN + TAG_LEN
}

/// The clear header of a sealed record, read without decrypting. Nothing in it is authenticated until
/// the record is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    /// Format version (always [`RECORD_VERSION`] when parsing succeeds).
    pub version: u8,
    /// Id of the key that sealed the record.
    pub key_id: KeyId,
    /// The place the record claims to belong to.
    pub place: RecordPlace,
}

impl RecordHeader {
    /// Parses the header of a sealed record: cheap, no key needed, no decryption. Fails on the same
    /// structural problems [`crate::Dek::open`] would report first.
    pub fn peek(record: &[u8]) -> Result<Self, Error> {
        Parsed::parse(record).map(|p| p.header)
    }
}

/// A structurally valid record split into its parts.
struct Parsed<'a> {
    header: RecordHeader,
    place_bytes: &'a [u8],
    aad: &'a [u8],
    nonce: &'a [u8],
    ciphertext: &'a [u8],
    tag: &'a [u8],
}

impl<'a> Parsed<'a> {
    fn parse(record: &'a [u8]) -> Result<Self, Error> {
        let corrupt = |reason| Error::CorruptRecord { reason };
        let mut r = Reader::new(record);
        let magic: [u8; 2] = r.array().ok_or(corrupt("shorter than a record header"))?;
        if magic != RECORD_MAGIC {
            return Err(corrupt("does not start with the sealed-record magic"));
        }
        let version = r.u8().ok_or(corrupt("shorter than a record header"))?;
        if version != RECORD_VERSION {
            return Err(Error::UnknownVersion {
                what: "sealed record",
                found: version,
                supported: RECORD_VERSION,
            });
        }
        let key_id = KeyId::from_u32(r.u32().ok_or(corrupt("shorter than a record header"))?);
        let place_start = r.position();
        let place = RecordPlace::decode(&mut r).map_err(corrupt)?;
        let place_bytes = &record[place_start..r.position()];
        let nonce = r
            .take(NONCE_LEN)
            .ok_or(corrupt("record ends inside the nonce"))?;
        let aad = &record[..r.position()];
        let body_len = r
            .remaining()
            .checked_sub(TAG_LEN)
            .ok_or(corrupt("record ends inside the tag"))?;
        let ciphertext = r
            .take(body_len)
            .ok_or(corrupt("record ends inside the ciphertext"))?;
        let tag = r
            .take(TAG_LEN)
            .ok_or(corrupt("record ends inside the tag"))?;
        Ok(Self {
            header: RecordHeader {
                version,
                key_id,
                place,
            },
            place_bytes,
            aad,
            nonce,
            ciphertext,
            tag,
        })
    }

    /// Verifies the tag and decrypts into a zeroizing buffer; `TamperedRecord` on failure.
    fn decrypt(&self, key: &KeyMaterial) -> Result<SecretBytes, Error> {
        let mut out = SecretBytes::copy_from(self.ciphertext);
        key.cipher()
            .decrypt_in_place_detached(
                XNonce::from_slice(self.nonce),
                self.aad,
                out.as_mut_slice(),
                self.tag.into(),
            )
            .map_err(|_| Error::TamperedRecord)?;
        Ok(out)
    }
}

/// Seals `plaintext` for `place` under `key` (see the module docs for the layout).
pub(crate) fn seal(
    key: &KeyMaterial,
    place: &RecordPlace,
    plaintext: &[u8],
    rng: &mut (impl CryptoRngCore + ?Sized),
) -> Result<Vec<u8>, Error> {
    let too_large = Error::TooLarge {
        what: "plaintext",
        len: plaintext.len(),
        max: usize::try_from(MAX_PLAINTEXT_LEN).unwrap_or(usize::MAX),
    };
    if u64::try_from(plaintext.len()).map_or(true, |len| len > MAX_PLAINTEXT_LEN) {
        return Err(too_large);
    }
    let mut out = Vec::with_capacity(64 + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&RECORD_MAGIC);
    out.push(RECORD_VERSION);
    out.extend_from_slice(&key.id().to_be_bytes());
    place.encode_into(&mut out)?;
    let mut nonce = XNonce::default();
    rng.fill_bytes(&mut nonce);
    out.extend_from_slice(&nonce);
    let aad_len = out.len();
    out.extend_from_slice(plaintext);
    let (aad, body) = out.split_at_mut(aad_len);
    let tag = key
        .cipher()
        .encrypt_in_place_detached(&nonce, aad, body)
        .map_err(|_| too_large)?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Opens `record` for `place` with whichever key `lookup` returns for the header's key id.
pub(crate) fn open<'k>(
    lookup: impl FnOnce(KeyId) -> Option<&'k KeyMaterial>,
    place: &RecordPlace,
    record: &[u8],
) -> Result<SecretBytes, Error> {
    let parsed = Parsed::parse(record)?;
    let key_id = parsed.header.key_id;
    let key = lookup(key_id).ok_or(Error::UnknownKey { key_id })?;
    let mut expected = Vec::with_capacity(parsed.place_bytes.len());
    place.encode_into(&mut expected)?;
    if expected != parsed.place_bytes {
        // Only call it "another place" if the record really is authentic for the place it names;
        // the plaintext decrypted for that check is dropped (and zeroized) at once.
        return match parsed.decrypt(key) {
            Ok(_) => Err(Error::WrongPlace {
                sealed_for: Box::new(parsed.header.place),
                opened_as: Box::new(place.clone()),
            }),
            Err(e) => Err(e),
        };
    }
    parsed.decrypt(key)
}

#[cfg(test)]
mod tests {
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    use super::*;
    use crate::Dek;

    #[test]
    fn header_peek_reads_key_and_place() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let dek = Dek::generate(&mut rng);
        let place = RecordPlace::LogEntry { index: 3, term: 1 };
        let sealed = dek.seal(&place, b"x", &mut rng).unwrap();
        let header = RecordHeader::peek(&sealed).unwrap();
        assert_eq!(
            header,
            RecordHeader {
                version: 1,
                key_id: dek.id(),
                place: place.clone()
            }
        );
        assert_eq!(sealed.len(), 1 + record_overhead(&place));
    }

    #[test]
    fn structural_errors_are_typed() {
        assert!(matches!(
            RecordHeader::peek(b""),
            Err(Error::CorruptRecord { .. })
        ));
        assert!(matches!(
            RecordHeader::peek(b"XX\x01"),
            Err(Error::CorruptRecord { .. })
        ));
        assert_eq!(
            RecordHeader::peek(b"SW\x02rest"),
            Err(Error::UnknownVersion {
                what: "sealed record",
                found: 2,
                supported: 1
            })
        );
    }
}
