//! [`RecordPlace`]: where a sealed record belongs, bound into its authenticated header.
//!
//! A record sealed for log entry 7 of term 2 does not open as log entry 8, as a snapshot, or as
//! entry 7 of term 3 (an entry truncated away by a new leader and replayed later). The place is
//! encoded canonically (one byte string per place, one place per byte string) and stored in clear in
//! the record header, so a mismatch can be told apart from tampering: see
//! [`Error::WrongPlace`](crate::Error::WrongPlace).
//!
//! Canonical encoding (all integers big-endian, strings as `u32` length + bytes, UTF-8 where noted):
//!
//! | tag | place | fields |
//! |-----|-------|--------|
//! | 1 | `LogEntry` | index `u64`, term `u64` |
//! | 2 | `Snapshot` | chunk `u32`, last `u8` (0 or 1), id (UTF-8) |
//! | 3 | `WrappedKey` | purpose tag `u8` (1 raft DEK, 2 pending raft DEK, 3 TLS private key, 4 named + name UTF-8) |
//! | 4 | `Other` | domain (UTF-8), id (bytes) |

use std::fmt;

use crate::codec::{put_len_prefixed, Reader};
use crate::Error;

/// The place a sealed record belongs to. Bound into the record's authenticated data.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RecordPlace {
    /// A raft log entry. The term is bound too, so an entry overwritten after a leader change cannot
    /// be replayed at its old index.
    LogEntry {
        /// Raft log index.
        index: u64,
        /// Raft term of the entry.
        term: u64,
    },
    /// One chunk of a snapshot. `last` marks the final chunk, so dropping trailing chunks is detected
    /// when the reader finds no chunk sealed as last.
    Snapshot {
        /// Snapshot id (openraft's snapshot id string).
        id: String,
        /// Chunk number, from 0.
        chunk: u32,
        /// Whether this is the final chunk.
        last: bool,
    },
    /// A key or secret wrapped by a KEK.
    WrappedKey {
        /// What the wrapped bytes are.
        purpose: KeyPurpose,
    },
    /// Any other record an embedder seals, in its own domain.
    Other {
        /// A name for the embedder's record family, e.g. `"myapp/state"`.
        domain: String,
        /// The record's id within the domain.
        id: Vec<u8>,
    },
}

impl RecordPlace {
    /// A snapshot sealed as one single record (chunk 0, last).
    pub fn whole_snapshot(id: impl Into<String>) -> Self {
        Self::Snapshot {
            id: id.into(),
            chunk: 0,
            last: true,
        }
    }

    /// Appends the canonical encoding; `TooLarge` if a field is longer than `u32::MAX` bytes.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        match self {
            Self::LogEntry { index, term } => {
                out.push(1);
                out.extend_from_slice(&index.to_be_bytes());
                out.extend_from_slice(&term.to_be_bytes());
            }
            Self::Snapshot { id, chunk, last } => {
                out.push(2);
                out.extend_from_slice(&chunk.to_be_bytes());
                out.push(u8::from(*last));
                put_len_prefixed(out, "snapshot id", id.as_bytes())?;
            }
            Self::WrappedKey { purpose } => {
                out.push(3);
                purpose.encode_into(out)?;
            }
            Self::Other { domain, id } => {
                out.push(4);
                put_len_prefixed(out, "record domain", domain.as_bytes())?;
                put_len_prefixed(out, "record id", id)?;
            }
        }
        Ok(())
    }

    /// Decodes one canonical place. `Err` carries the reason for a corrupt-input error.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, &'static str> {
        const SHORT: &str = "record place is truncated";
        match r.u8().ok_or(SHORT)? {
            1 => Ok(Self::LogEntry {
                index: r.u64().ok_or(SHORT)?,
                term: r.u64().ok_or(SHORT)?,
            }),
            2 => {
                let chunk = r.u32().ok_or(SHORT)?;
                let last = decode_bool(r.u8().ok_or(SHORT)?)?;
                let id = decode_str(r.len_prefixed().ok_or(SHORT)?)?;
                Ok(Self::Snapshot { id, chunk, last })
            }
            3 => Ok(Self::WrappedKey {
                purpose: KeyPurpose::decode(r)?,
            }),
            4 => {
                let domain = decode_str(r.len_prefixed().ok_or(SHORT)?)?;
                let id = r.len_prefixed().ok_or(SHORT)?.to_vec();
                Ok(Self::Other { domain, id })
            }
            _ => Err("unknown record place tag"),
        }
    }
}

impl fmt::Display for RecordPlace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LogEntry { index, term } => write!(f, "log entry {index} (term {term})"),
            Self::Snapshot { id, chunk, last } => {
                write!(
                    f,
                    "snapshot `{id}` chunk {chunk}{}",
                    if *last { " (last)" } else { "" }
                )
            }
            Self::WrappedKey { purpose } => write!(f, "wrapped key `{purpose}`"),
            Self::Other { domain, id } => {
                write!(f, "`{domain}` record ")?;
                for b in id.iter().take(16) {
                    write!(f, "{b:02x}")?;
                }
                if id.len() > 16 {
                    f.write_str("...")?;
                }
                Ok(())
            }
        }
    }
}

/// What a KEK-wrapped secret is. Bound into the wrapped record, so a wrapped DEK cannot be passed off
/// as a TLS key or the pending DEK swapped with the current one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyPurpose {
    /// The manager's current raft DEK (reserved for the key hierarchy).
    RaftDek,
    /// The manager's pending raft DEK during a rotation (reserved for the key hierarchy).
    RaftDekPending,
    /// The node's TLS private key.
    TlsPrivateKey,
    /// Any other secret, by name.
    Named(String),
}

impl KeyPurpose {
    /// Whether the purpose belongs to the key hierarchy itself (not usable for stored secrets).
    pub fn is_reserved(&self) -> bool {
        matches!(self, Self::RaftDek | Self::RaftDekPending)
    }

    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        match self {
            Self::RaftDek => out.push(1),
            Self::RaftDekPending => out.push(2),
            Self::TlsPrivateKey => out.push(3),
            Self::Named(name) => {
                out.push(4);
                put_len_prefixed(out, "key purpose name", name.as_bytes())?;
            }
        }
        Ok(())
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, &'static str> {
        match r.u8().ok_or("key purpose is truncated")? {
            1 => Ok(Self::RaftDek),
            2 => Ok(Self::RaftDekPending),
            3 => Ok(Self::TlsPrivateKey),
            4 => Ok(Self::Named(decode_str(
                r.len_prefixed().ok_or("key purpose is truncated")?,
            )?)),
            _ => Err("unknown key purpose tag"),
        }
    }
}

impl fmt::Display for KeyPurpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RaftDek => f.write_str("raft-dek"),
            Self::RaftDekPending => f.write_str("raft-dek-pending"),
            Self::TlsPrivateKey => f.write_str("tls-private-key"),
            Self::Named(name) => write!(f, "named:{name}"),
        }
    }
}

fn decode_bool(b: u8) -> Result<bool, &'static str> {
    match b {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err("boolean field is neither 0 nor 1"),
    }
}

fn decode_str(bytes: &[u8]) -> Result<String, &'static str> {
    String::from_utf8(bytes.to_vec()).map_err(|_| "text field is not UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(place: &RecordPlace) -> Vec<u8> {
        let mut out = Vec::new();
        place.encode_into(&mut out).unwrap();
        let mut r = Reader::new(&out);
        assert_eq!(&RecordPlace::decode(&mut r).unwrap(), place);
        assert_eq!(r.remaining(), 0);
        out
    }

    #[test]
    fn every_place_round_trips_and_encodings_differ() {
        let places = [
            RecordPlace::LogEntry { index: 7, term: 2 },
            RecordPlace::LogEntry { index: 7, term: 3 },
            RecordPlace::whole_snapshot("1-7-0"),
            RecordPlace::Snapshot {
                id: "1-7-0".into(),
                chunk: 0,
                last: false,
            },
            RecordPlace::WrappedKey {
                purpose: KeyPurpose::RaftDek,
            },
            RecordPlace::WrappedKey {
                purpose: KeyPurpose::RaftDekPending,
            },
            RecordPlace::WrappedKey {
                purpose: KeyPurpose::TlsPrivateKey,
            },
            RecordPlace::WrappedKey {
                purpose: KeyPurpose::Named("x".into()),
            },
            RecordPlace::Other {
                domain: "d".into(),
                id: vec![1, 2],
            },
            RecordPlace::Other {
                domain: "d\0".into(),
                id: vec![2],
            },
        ];
        let encodings: Vec<_> = places.iter().map(round_trip).collect();
        for (i, a) in encodings.iter().enumerate() {
            for b in &encodings[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn log_entry_encoding_is_fixed() {
        assert_eq!(
            round_trip(&RecordPlace::LogEntry { index: 1, term: 2 }),
            [1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2]
        );
    }

    #[test]
    fn non_canonical_inputs_are_rejected() {
        // bool byte 2
        let bad = [2, 0, 0, 0, 0, 2, 0, 0, 0, 0];
        assert!(RecordPlace::decode(&mut Reader::new(&bad)).is_err());
        // invalid UTF-8 id
        let bad = [2, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0xff];
        assert!(RecordPlace::decode(&mut Reader::new(&bad)).is_err());
        assert!(RecordPlace::decode(&mut Reader::new(&[9])).is_err());
        assert!(RecordPlace::decode(&mut Reader::new(&[])).is_err());
    }

    #[test]
    fn display_is_readable() {
        assert_eq!(
            RecordPlace::LogEntry { index: 7, term: 2 }.to_string(),
            "log entry 7 (term 2)"
        );
        assert_eq!(
            RecordPlace::whole_snapshot("s").to_string(),
            "snapshot `s` chunk 0 (last)"
        );
        let other = RecordPlace::Other {
            domain: "d".into(),
            id: vec![0xab; 17],
        };
        assert!(other.to_string().ends_with("ab..."));
    }
}
