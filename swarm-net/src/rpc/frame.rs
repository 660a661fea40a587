//! Frames: a big-endian `u32` length followed by that many bytes of bincode.
//!
//! Every frame is read against a [`FrameKind`] that names what is expected next and the most bytes it
//! may take. The length prefix is checked against that limit **before** any buffer is allocated, so a
//! peer that announces a 4 GiB frame costs four bytes of reading, not 4 GiB of memory; bincode is then
//! limited to the announced length, so a length field inside the payload cannot allocate more either.
//! Trailing bytes inside a frame are an error: one frame carries exactly one value.

use bincode::Options;
use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes in the length prefix.
pub const PREFIX_LEN: usize = 4;

/// What a frame is expected to hold, and its size limit (payload bytes, prefix excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameKind {
    /// Name used in error messages (for example `"request head"` or a method's request).
    pub name: &'static str,
    /// The largest payload accepted or sent, in bytes.
    pub limit: u32,
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix (or the encoded value when sending) is over the kind's limit; nothing was
    /// allocated for it.
    #[error("{kind} frame of {len} bytes exceeds its limit of {limit} bytes")]
    TooLarge {
        /// The frame kind's name.
        kind: &'static str,
        /// The announced (or encoded) payload length.
        len: u64,
        /// The kind's limit.
        limit: u32,
    },
    /// The stream ended part-way through a frame.
    #[error("{kind} frame truncated: the stream ended {missing} bytes early")]
    Truncated {
        /// The frame kind's name.
        kind: &'static str,
        /// How many bytes were still expected (prefix or payload).
        missing: usize,
    },
    /// The payload is not a valid encoding of the expected value.
    #[error("malformed {kind} frame: {source}")]
    Decode {
        /// The frame kind's name.
        kind: &'static str,
        /// What bincode objected to.
        source: bincode::Error,
    },
    /// The value could not be encoded (a serializer error, not a size problem).
    #[error("{kind} frame could not be encoded: {source}")]
    Encode {
        /// The frame kind's name.
        kind: &'static str,
        /// What bincode objected to.
        source: bincode::Error,
    },
    /// The underlying stream failed.
    #[error("stream failed while reading or writing a {kind} frame: {source}")]
    Io {
        /// The frame kind's name.
        kind: &'static str,
        /// The stream's error (for QUIC streams it wraps quinn's read or write error).
        source: std::io::Error,
    },
}

/// The one bincode configuration used on the wire: fixed-width integers, at most `limit` bytes read,
/// no trailing bytes.
fn options(limit: u64) -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_limit(limit)
}

/// Encodes `value` as one frame (prefix included), refusing it if the payload exceeds `kind.limit`.
pub fn encode<T: Serialize>(kind: FrameKind, value: &T) -> Result<Vec<u8>, FrameError> {
    let too_large = |len| FrameError::TooLarge {
        kind: kind.name,
        len,
        limit: kind.limit,
    };
    // Sized with the limit so an oversized value fails here without being encoded into memory.
    let len = match options(u64::from(kind.limit)).serialized_size(value) {
        Ok(len) => len,
        Err(e) if matches!(*e, bincode::ErrorKind::SizeLimit) => {
            return Err(too_large(u64::from(kind.limit) + 1))
        }
        Err(source) => {
            return Err(FrameError::Encode {
                kind: kind.name,
                source,
            })
        }
    };
    let len32 = u32::try_from(len).map_err(|_| too_large(len))?;
    let mut out = Vec::with_capacity(PREFIX_LEN + len32 as usize);
    out.extend_from_slice(&len32.to_be_bytes());
    options(len)
        .serialize_into(&mut out, value)
        .map_err(|source| FrameError::Encode {
            kind: kind.name,
            source,
        })?;
    Ok(out)
}

/// Checks a length prefix against the kind's limit; returns the payload length.
pub fn check_prefix(kind: FrameKind, prefix: [u8; PREFIX_LEN]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix);
    if len > kind.limit {
        return Err(FrameError::TooLarge {
            kind: kind.name,
            len: u64::from(len),
            limit: kind.limit,
        });
    }
    Ok(len as usize)
}

/// Decodes one frame's payload (prefix already removed); the whole payload must be consumed.
pub fn decode_payload<T: DeserializeOwned>(
    kind: FrameKind,
    payload: &[u8],
) -> Result<T, FrameError> {
    options(payload.len() as u64)
        .deserialize(payload)
        .map_err(|source| FrameError::Decode {
            kind: kind.name,
            source,
        })
}

/// Decodes the first frame of `buf`. Returns `Ok(None)` when `buf` holds only part of a frame (read
/// more and call again), or the value and the number of bytes it took.
pub fn decode<T: DeserializeOwned>(
    kind: FrameKind,
    buf: &[u8],
) -> Result<Option<(T, usize)>, FrameError> {
    let Some(prefix) = buf.get(..PREFIX_LEN) else {
        return Ok(None);
    };
    let mut p = [0u8; PREFIX_LEN];
    p.copy_from_slice(prefix);
    let len = check_prefix(kind, p)?;
    let Some(payload) = buf.get(PREFIX_LEN..PREFIX_LEN + len) else {
        return Ok(None);
    };
    Ok(Some((decode_payload(kind, payload)?, PREFIX_LEN + len)))
}

/// Reads one frame. `Ok(None)` means the stream ended cleanly before the frame began (the peer
/// finished sending); an end inside the frame is [`FrameError::Truncated`].
pub async fn read<T, R>(reader: &mut R, kind: FrameKind) -> Result<Option<T>, FrameError>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin,
{
    let io = |source| FrameError::Io {
        kind: kind.name,
        source,
    };
    let mut prefix = [0u8; PREFIX_LEN];
    let mut got = 0;
    while got < PREFIX_LEN {
        let n = reader.read(&mut prefix[got..]).await.map_err(io)?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(FrameError::Truncated {
                kind: kind.name,
                missing: PREFIX_LEN - got,
            });
        }
        got += n;
    }
    let len = check_prefix(kind, prefix)?;
    let mut payload = vec![0u8; len];
    let mut got = 0;
    while got < len {
        let n = reader.read(&mut payload[got..]).await.map_err(io)?;
        if n == 0 {
            return Err(FrameError::Truncated {
                kind: kind.name,
                missing: len - got,
            });
        }
        got += n;
    }
    decode_payload(kind, &payload).map(Some)
}

/// Encodes and writes one frame.
pub async fn write<T, W>(writer: &mut W, kind: FrameKind, value: &T) -> Result<(), FrameError>
where
    T: Serialize,
    W: AsyncWrite + Unpin,
{
    let bytes = encode(kind, value)?;
    writer
        .write_all(&bytes)
        .await
        .map_err(|source| FrameError::Io {
            kind: kind.name,
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: FrameKind = FrameKind {
        name: "test",
        limit: 16,
    };

    #[test]
    fn round_trip_and_exact_consumption() {
        let bytes = encode(SMALL, &(7u32, "abc".to_string())).unwrap();
        assert_eq!(&bytes[..4], &(4u32 + 8 + 3).to_be_bytes());
        let (v, used): ((u32, String), usize) = decode(SMALL, &bytes).unwrap().unwrap();
        assert_eq!(v, (7, "abc".to_string()));
        assert_eq!(used, bytes.len());
    }

    /// Each malformed shape, through one helper: (bytes, expected outcome).
    #[test]
    fn malformed_frames() {
        fn check(bytes: &[u8], want: &str) {
            let got = match decode::<(u32, String)>(SMALL, bytes) {
                Ok(None) => "incomplete".to_string(),
                Ok(Some(_)) => "ok".to_string(),
                Err(FrameError::TooLarge { len, .. }) => format!("too large {len}"),
                Err(FrameError::Decode { .. }) => "decode".to_string(),
                Err(e) => format!("other {e}"),
            };
            assert_eq!(got, want, "input {bytes:?}");
        }
        check(&[], "incomplete");
        check(&[0, 0, 0], "incomplete");
        check(&[0, 0, 0, 15], "incomplete");
        check(&[0, 0, 0, 17], "too large 17");
        check(&[0xff, 0xff, 0xff, 0xff], "too large 4294967295");
        // u32 + a string whose length says 2^60 bytes: refused by the limit, not allocated.
        let mut huge = vec![0, 0, 0, 12, 1, 0, 0, 0];
        huge.extend_from_slice(&(1u64 << 60).to_le_bytes());
        check(&huge, "decode");
        // Valid value followed by a trailing byte inside the frame.
        let mut trailing = encode(SMALL, &(1u32, String::new())).unwrap();
        trailing.push(9);
        trailing[3] += 1;
        check(&trailing, "decode");
        // Invalid UTF-8 in the string.
        check(
            &[0, 0, 0, 13, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xff],
            "decode",
        );
        check(&[0, 0, 0, 0], "decode");
    }

    #[test]
    fn oversized_value_is_refused_when_sending() {
        let err = encode(SMALL, &vec![0u8; 100]).unwrap_err();
        assert!(
            matches!(err, FrameError::TooLarge { limit: 16, .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn stream_reads_frames_and_reports_clean_and_truncated_ends() {
        let mut bytes = encode(SMALL, &1u64).unwrap();
        bytes.extend(encode(SMALL, &2u64).unwrap());
        let mut r = &bytes[..];
        assert_eq!(read::<u64, _>(&mut r, SMALL).await.unwrap(), Some(1));
        assert_eq!(read::<u64, _>(&mut r, SMALL).await.unwrap(), Some(2));
        assert_eq!(read::<u64, _>(&mut r, SMALL).await.unwrap(), None);
        let cut = &bytes[..6];
        let mut r = cut;
        let err = read::<u64, _>(&mut r, SMALL).await.unwrap_err();
        assert!(
            matches!(err, FrameError::Truncated { missing: 6, .. }),
            "{err}"
        );
    }

    /// A prefix announcing 4 GiB is refused after reading four bytes: the reader below fails the test
    /// if anything asks it for more.
    #[tokio::test]
    async fn oversized_prefix_is_refused_before_reading_the_payload() {
        struct OnlyFour(usize);
        impl AsyncRead for OnlyFour {
            fn poll_read(
                mut self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                assert!(self.0 < 4, "payload of an oversized frame was read");
                let n = (4 - self.0).min(buf.remaining());
                buf.put_slice(&[0xff; 4][..n]);
                self.0 += n;
                std::task::Poll::Ready(Ok(()))
            }
        }
        let err = read::<Vec<u8>, _>(&mut OnlyFour(0), SMALL)
            .await
            .unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { .. }), "{err}");
    }
}
