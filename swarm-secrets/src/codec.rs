//! Tiny big-endian reader and writer helpers shared by the record and key-file formats.
//!
//! Both formats are hand-written rather than serde-derived so that key material can only be turned into
//! bytes by an explicit sealing, wrapping or key-file encoding call, and so that every decode of
//! untrusted bytes is bounded by the input length (no length field is trusted for an allocation).

use crate::Error;

/// A bounds-checked cursor over untrusted bytes. Every read returns `None` when the input is too short;
/// callers turn that into their own typed error.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet consumed.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Some(out)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_be_bytes)
    }

    /// A `u32` length followed by that many bytes. The length is checked against the input, never used
    /// to allocate.
    pub(crate) fn len_prefixed(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.u32()?).ok()?;
        self.take(len)
    }
}

/// Appends a `u32` length prefix and the bytes; `TooLarge` if `bytes` is longer than `u32::MAX`.
pub(crate) fn put_len_prefixed(
    out: &mut Vec<u8>,
    what: &'static str,
    bytes: &[u8],
) -> Result<(), Error> {
    let len = u32::try_from(bytes.len()).map_err(|_| Error::TooLarge {
        what,
        len: bytes.len(),
        max: u32::MAX as usize,
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_never_reads_past_the_end() {
        let mut r = Reader::new(&[0, 0, 0, 5, 1, 2]);
        assert_eq!(r.len_prefixed(), None, "length 5 with only 2 bytes left");
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u32(), None);
        assert_eq!(r.take(usize::MAX), None);
        assert_eq!(r.u8(), Some(1));
        assert_eq!(r.remaining(), 2);
        assert_eq!(r.position(), 1);
    }

    #[test]
    fn len_prefixed_round_trips() {
        let mut out = Vec::new();
        put_len_prefixed(&mut out, "test", b"abc").unwrap();
        let mut r = Reader::new(&out);
        assert_eq!(r.len_prefixed(), Some(&b"abc"[..]));
        assert_eq!(r.remaining(), 0);
    }
}
