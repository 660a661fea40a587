//! The on-disk format of one WAL segment, as pure functions over bytes (fuzzed by
//! `fuzz/fuzz_targets/wal_segment.rs`).
//!
//! ```text
//! segment header (32 bytes, little-endian):
//!   0   8  magic "SWRMWAL\0"
//!   8   4  format version = 5 (4 is still read, see below)
//!   12  8  first_index: log index of the first record this segment may hold
//!   20  8  prev_index: index of the last entry before this segment when it was created
//!          (u64::MAX = none); lets open detect a missing segment file
//!   28  4  CRC32C of bytes 0..28
//! then frames, back to back:
//!   0   4  len: length of the body
//!   4   4  CRC32C of (len bytes ++ body)
//!   8   4  CRC32C of bytes 0..8 (the frame header: length and body checksum)
//!   12  len body: index u64 | term u64 | leader node u64 | sealed record (swarm-secrets,
//!          RecordPlace::LogEntry { index, term }, plaintext = bincode of the openraft entry)
//! ```
//!
//! Index, term and leader are in clear (SEMANTICS.md allows it) so a log can be reopened and
//! indexed without decrypting every record; the checksums catch torn and rotted bytes; the seal
//! catches tampering, moved and replayed records when an entry is read.
//!
//! # Preallocated space (format 5)
//! A format-5 segment may hold zeros after its last frame: the writer extends the file with
//! written zeros ahead of its write position, so that a commit's fsync overwrites blocks that are
//! already allocated instead of growing the file (which costs a journal commit on ext4). A crash
//! may then leave, after the last durable frame, the remains of unsynced writes: a frame whose
//! sectors only partly reached the disk (zero sectors inside it, or its header zero and later
//! sectors present), followed by zeros. So in format 5:
//! * valid frames followed only by zeros end the segment cleanly ([`ScanEnd::Preallocated`]);
//! * a frame that does not verify (header or body checksum, length) is a torn tail when no frame
//!   that verifies starts anywhere after it: everything after it can only be zeros or bytes of
//!   writes that never became durable (an fsync covers every earlier write, so a durable frame is
//!   never followed by a non-durable one and then a durable one);
//! * a frame that does not verify followed by one that does is corruption: the later frame was
//!   durable, so the damaged one was too. (An unsynced batch whose middle sectors were lost while
//!   later ones landed also reads this way: the open is refused rather than guessing.)
//! * a frame that verifies but has the wrong index is corruption, as before.
//!
//! A damaged *last* frame is therefore cut like a torn write; what protects committed entries is
//! the `committed` file ([`super::committed`]), which refuses the open when the log ends before it.
//!
//! # Torn tail or corruption (format 4, no preallocation)
//! Only one thing is a torn tail: the file ends inside the last frame (fewer than 12 header bytes
//! left, or a header that checks out and announces more body bytes than the file holds), or
//! everything after the last valid frame is zero (an append whose size reached the disk before
//! its data). Everything else is corruption and refuses the open: a header whose checksum fails
//! (so a flipped length byte is never mistaken for a torn write, wherever it is), a complete
//! frame whose body checksum fails, even the last one, or a record out of index order. The
//! header checksum is what makes the length trustworthy before it is used.

/// Segment file magic.
pub const SEGMENT_MAGIC: [u8; 8] = *b"SWRMWAL\0";
/// Segment format version (2: frames carry a header checksum over the length; version 1 segments,
/// whose torn-tail detection trusted an unchecked length, are refused by name. 3: entries hold
/// swarm-core objects of snapshot format 2, whose bincode layout differs; version 2 segments are
/// refused by name. 4: entries hold swarm-core objects of snapshot format 3 (node certificates,
/// root CA key and rotation); version 3 segments are refused by name. 5: the same frames, but the
/// file may hold preallocated zeros after them, and a damaged frame followed by nothing that
/// verifies is a torn write (see the module docs); version 4 segments are still read, with their
/// stricter rule, and are never preallocated). 6: the frames of 5, whose entries hold store
/// objects of snapshot format 4 (network IPAM, service virtual IPs). This module still scans the
/// framing of 4 and 5, but their entries cannot be decoded any more: opening a WAL refuses them by
/// name ([`STORE_FORMAT_3_VERSIONS`]).
pub const SEGMENT_VERSION: u32 = 6;
/// The strict-torn-tail framing (format 4), still scanned by this module.
pub const SEGMENT_VERSION_4: u32 = 4;
/// Segment formats whose entries hold store objects of snapshot format 3: the WAL refuses them by
/// name when it opens.
pub const STORE_FORMAT_3_VERSIONS: [u32; 2] = [4, 5];
/// Length of the segment header.
pub const HEADER_LEN: usize = 32;
/// Length of a frame header (length + body checksum + header checksum).
pub const FRAME_HEADER_LEN: usize = 12;
/// Clear fields at the start of a frame body (index, term, leader node).
pub const BODY_PREFIX_LEN: usize = 24;
/// Largest frame body accepted: a 1.5 MiB proposal plus generous room for encoding and sealing.
/// Anything larger is refused before a buffer is allocated for it.
pub const MAX_FRAME_BODY: usize = 8 * 1024 * 1024;
/// `prev_index` value meaning "no entry before this segment".
pub const NO_PREV: u64 = u64::MAX;

/// A parsed segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// First index this segment holds.
    pub first_index: u64,
    /// Index of the last entry before it when it was created, if any.
    pub prev_index: Option<u64>,
}

impl SegmentHeader {
    /// Encodes the 32-byte header.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..8].copy_from_slice(&SEGMENT_MAGIC);
        out[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
        out[12..20].copy_from_slice(&self.first_index.to_le_bytes());
        out[20..28].copy_from_slice(&self.prev_index.unwrap_or(NO_PREV).to_le_bytes());
        let crc = crc32c::crc32c(&out[0..28]);
        out[28..32].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes a header; `Err` names the failed check.
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, &'static str> {
        Self::decode_versioned(bytes).map(|(h, _)| h)
    }

    /// Encodes the header with an explicit format version (tests of older formats).
    pub fn encode_version(&self, version: u32) -> [u8; HEADER_LEN] {
        let mut out = self.encode();
        out[8..12].copy_from_slice(&version.to_le_bytes());
        let crc = crc32c::crc32c(&out[0..28]);
        out[28..32].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes a header and its format version ([`SEGMENT_VERSION`] or one of
    /// [`STORE_FORMAT_3_VERSIONS`], whose framing is still scanned).
    pub fn decode_versioned(bytes: &[u8]) -> Result<(SegmentHeader, u32), &'static str> {
        if bytes.len() < HEADER_LEN {
            return Err("shorter than a segment header");
        }
        if bytes[0..8] != SEGMENT_MAGIC {
            return Err("not a swarm WAL segment (bad magic)");
        }
        if crc32c::crc32c(&bytes[0..28]) != le_u32(&bytes[28..32]) {
            return Err("segment header checksum mismatch");
        }
        let version = le_u32(&bytes[8..12]);
        if version == 1 {
            return Err("segment format version 1 (an earlier development format) is no longer read; move the data directory away and rejoin this manager");
        }
        if version == 2 {
            return Err("segment format version 2 holds store objects of an earlier layout (before the full Docker API fields) and is no longer read; move the data directory away and rejoin this manager");
        }
        if version == 3 {
            return Err("segment format version 3 holds store objects of an earlier layout (before node certificates and the root CA key) and is no longer read; move the data directory away and rejoin this manager");
        }
        if version != SEGMENT_VERSION && !STORE_FORMAT_3_VERSIONS.contains(&version) {
            return Err("unknown segment format version");
        }
        let first_index = le_u64(&bytes[12..20]);
        let prev = le_u64(&bytes[20..28]);
        let header = SegmentHeader {
            first_index,
            prev_index: (prev != NO_PREV).then_some(prev),
        };
        Ok((header, version))
    }
}

/// The clear part of a frame body plus the sealed record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Log index.
    pub index: u64,
    /// Term of the leader that created the entry.
    pub term: u64,
    /// Node id of that leader.
    pub node: u64,
    /// The sealed entry.
    pub sealed: &'a [u8],
}

/// Appends one frame to `out`.
pub fn encode_frame(out: &mut Vec<u8>, index: u64, term: u64, node: u64, sealed: &[u8]) {
    let body_len = BODY_PREFIX_LEN + sealed.len();
    let len = (body_len as u32).to_le_bytes();
    let start = out.len();
    out.extend_from_slice(&len);
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(&term.to_le_bytes());
    out.extend_from_slice(&node.to_le_bytes());
    out.extend_from_slice(sealed);
    let mut crc = crc32c::crc32c(&len);
    crc = crc32c::crc32c_append(crc, &out[start + FRAME_HEADER_LEN..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    let hcrc = crc32c::crc32c(&out[start..start + 8]);
    out[start + 8..start + 12].copy_from_slice(&hcrc.to_le_bytes());
}

/// What [`decode_frame`] found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameResult<'a> {
    /// A valid frame of `len` bytes (header included).
    Frame(Frame<'a>, usize),
    /// The buffer ends inside the frame (a torn write, or the end of the file): fewer bytes than a
    /// frame header, or a valid header announcing more body bytes than the buffer holds.
    Incomplete,
    /// The (checksummed) length field exceeds [`MAX_FRAME_BODY`] (refused before allocation).
    Oversized(u64),
    /// The frame is structurally invalid; the reason.
    Corrupt(&'static str),
}

const SHORT_FRAME: &str = "frame shorter than its fixed fields";

/// Decodes the frame at the start of `buf`.
pub fn decode_frame(buf: &[u8]) -> FrameResult<'_> {
    if buf.len() < FRAME_HEADER_LEN {
        return FrameResult::Incomplete;
    }
    if crc32c::crc32c(&buf[0..8]) != le_u32(&buf[8..12]) {
        return FrameResult::Corrupt(
            "frame header checksum mismatch (length or checksum field damaged)",
        );
    }
    let len = le_u32(&buf[0..4]) as usize;
    if len > MAX_FRAME_BODY {
        return FrameResult::Oversized(len as u64);
    }
    if len < BODY_PREFIX_LEN {
        return FrameResult::Corrupt(SHORT_FRAME);
    }
    let Some(body) = buf.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len) else {
        return FrameResult::Incomplete;
    };
    let crc = crc32c::crc32c_append(crc32c::crc32c(&buf[0..4]), body);
    if crc != le_u32(&buf[4..8]) {
        return FrameResult::Corrupt("frame checksum mismatch");
    }
    let frame = Frame {
        index: le_u64(&body[0..8]),
        term: le_u64(&body[8..16]),
        node: le_u64(&body[16..24]),
        sealed: &body[BODY_PREFIX_LEN..],
    };
    FrameResult::Frame(frame, FRAME_HEADER_LEN + len)
}

/// One frame found by [`scan_segment`], with its byte offset in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScannedFrame {
    /// Offset of the frame header in the file.
    pub offset: u64,
    /// Total length (header + body).
    pub len: u32,
    /// Log index.
    pub index: u64,
    /// Term.
    pub term: u64,
    /// Leader node id.
    pub node: u64,
}

/// How a segment scan ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanEnd {
    /// Every byte belonged to a valid frame.
    Clean,
    /// Format 5: the valid frames end at `offset` and only zeros (preallocated space) follow.
    Preallocated {
        /// Where the valid frames end (where the next append goes).
        offset: u64,
    },
    /// The file ends inside the frame at `offset` (or only zeros follow it): a torn write.
    TornTail {
        /// Where the valid data ends.
        offset: u64,
        /// Why the frame at `offset` is invalid.
        reason: String,
    },
    /// The frame at `offset` is complete but invalid: damage inside the log.
    Corrupt {
        /// The bad frame.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

/// The result of scanning a whole segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scan {
    /// The header.
    pub header: SegmentHeader,
    /// The segment's format version.
    pub version: u32,
    /// Every valid frame before the end, in file order, with consecutive indexes from
    /// `header.first_index`.
    pub frames: Vec<ScannedFrame>,
    /// How the scan ended.
    pub end: ScanEnd,
}

/// Scans a segment file's bytes. `Err((offset, reason))` if the header is unusable.
///
/// See the module docs for what counts as a torn tail; every other invalid frame, and frames whose
/// index does not follow the previous one, end the scan with [`ScanEnd::Corrupt`].
pub fn scan_segment(bytes: &[u8]) -> Result<Scan, (u64, &'static str)> {
    let (header, version) = SegmentHeader::decode_versioned(bytes).map_err(|r| (0, r))?;
    let mut frames = Vec::new();
    let mut pos = HEADER_LEN;
    let mut expected = header.first_index;
    let end = loop {
        if pos == bytes.len() {
            break ScanEnd::Clean;
        }
        let rest = &bytes[pos..];
        let offset = pos as u64;
        // The reason a frame does not verify, and whether a torn write could have made it so (a
        // header whose checksum holds was written whole: a bad length in it is no torn write).
        let (corrupt, may_be_torn) = match decode_frame(rest) {
            FrameResult::Frame(f, len) => {
                if f.index != expected {
                    break ScanEnd::Corrupt {
                        offset,
                        reason: format!(
                            "record for index {} where index {expected} was expected",
                            f.index
                        ),
                    };
                }
                frames.push(ScannedFrame {
                    offset,
                    len: len as u32,
                    index: f.index,
                    term: f.term,
                    node: f.node,
                });
                expected = expected.saturating_add(1);
                pos += len;
                continue;
            }
            FrameResult::Incomplete if version == SEGMENT_VERSION_4 => {
                break ScanEnd::TornTail {
                    offset,
                    reason: "the file ends inside a record".to_string(),
                }
            }
            FrameResult::Incomplete => ("the file ends inside a record".to_string(), true),
            FrameResult::Oversized(len) => (
                format!("length field {len} exceeds the {MAX_FRAME_BODY}-byte limit"),
                false,
            ),
            FrameResult::Corrupt(r) => (r.to_string(), r != SHORT_FRAME),
        };
        if version != SEGMENT_VERSION_4 {
            if may_be_torn {
                break preallocated_end(rest, offset, corrupt);
            }
            break ScanEnd::Corrupt {
                offset,
                reason: corrupt,
            };
        }
        // A file extended before its data reached the disk reads back as zeros: still a torn write.
        break if rest.iter().all(|b| *b == 0) {
            ScanEnd::TornTail {
                offset,
                reason: "the file ends in zeros (an append that did not reach the disk)"
                    .to_string(),
            }
        } else {
            ScanEnd::Corrupt {
                offset,
                reason: corrupt,
            }
        };
    };
    Ok(Scan {
        header,
        version,
        frames,
        end,
    })
}

/// Format 5: how a segment ends whose frame at `offset` (the start of `rest`) does not verify
/// (see the module docs): zeros only, a torn write, or corruption if a valid frame follows.
fn preallocated_end(rest: &[u8], offset: u64, why: String) -> ScanEnd {
    let Some(last_nonzero) = rest.iter().rposition(|b| *b != 0) else {
        return ScanEnd::Preallocated { offset };
    };
    let later =
        (1..=last_nonzero).find(|&at| matches!(decode_frame(&rest[at..]), FrameResult::Frame(..)));
    match later {
        Some(at) => ScanEnd::Corrupt {
            offset,
            reason: format!(
                "{why}, and a valid record follows at byte {}: a damaged record inside the log",
                offset + at as u64
            ),
        },
        None => ScanEnd::TornTail {
            offset,
            reason: format!(
                "{why}, followed only by zeros and bytes that are no record (a write into preallocated space that did not reach the disk)"
            ),
        },
    }
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A format-4 segment (the stricter torn-tail rule) of `n` frames.
    fn segment(n: u64) -> Vec<u8> {
        segment_v(n, SEGMENT_VERSION_4)
    }

    fn segment_v(n: u64, version: u32) -> Vec<u8> {
        let mut out = SegmentHeader {
            first_index: 5,
            prev_index: Some(4),
        }
        .encode_version(version)
        .to_vec();
        for i in 0..n {
            encode_frame(&mut out, 5 + i, 2, 1, b"sealed-bytes");
        }
        out
    }

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let h = SegmentHeader {
            first_index: 9,
            prev_index: None,
        };
        let mut b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        b[13] ^= 1;
        assert!(SegmentHeader::decode(&b).is_err());
    }

    #[test]
    fn clean_scan_finds_every_frame() {
        let s = scan_segment(&segment(3)).unwrap();
        assert_eq!(s.end, ScanEnd::Clean);
        assert_eq!(
            s.frames.iter().map(|f| f.index).collect::<Vec<_>>(),
            vec![5, 6, 7]
        );
    }

    #[test]
    fn torn_tail_at_every_cut_point() {
        for v in [SEGMENT_VERSION_4, SEGMENT_VERSION] {
            let full = segment_v(3, v);
            let last = scan_segment(&full).unwrap().frames[2].offset as usize;
            for cut in last + 1..full.len() {
                let s = scan_segment(&full[..cut]).unwrap();
                assert_eq!(s.frames.len(), 2, "cut {cut}");
                assert!(matches!(s.end, ScanEnd::TornTail { offset, .. } if offset == last as u64));
                if v == SEGMENT_VERSION {
                    // Format 5: the same cut followed by preallocated zeros is still torn.
                    let mut z = full[..cut].to_vec();
                    z.extend_from_slice(&[0; 100]);
                    let s = scan_segment(&z).unwrap();
                    assert_eq!(s.frames.len(), 2, "cut {cut} + zeros");
                    assert!(
                        matches!(s.end, ScanEnd::TornTail { offset, .. } if offset == last as u64),
                        "cut {cut} + zeros: {:?}",
                        s.end
                    );
                }
            }
        }
    }

    #[test]
    fn damage_before_valid_frames_is_corruption() {
        for v in [SEGMENT_VERSION_4, SEGMENT_VERSION] {
            let mut b = segment_v(3, v);
            let second = scan_segment(&b).unwrap().frames[1].offset as usize;
            b[second + 12] ^= 0x40;
            let s = scan_segment(&b).unwrap();
            assert_eq!(s.frames.len(), 1);
            assert!(matches!(s.end, ScanEnd::Corrupt { offset, .. } if offset == second as u64));
        }
    }

    #[test]
    fn oversized_length_is_refused() {
        for v in [SEGMENT_VERSION_4, SEGMENT_VERSION] {
            oversized_length_is_refused_in(v);
        }
    }

    fn oversized_length_is_refused_in(version: u32) {
        let mut b = segment_v(0, version);
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        let hcrc = crc32c::crc32c(&b[HEADER_LEN..HEADER_LEN + 8]);
        b.extend_from_slice(&hcrc.to_le_bytes());
        assert!(matches!(
            decode_frame(&b[HEADER_LEN..]),
            FrameResult::Oversized(_)
        ));
        assert!(matches!(
            scan_segment(&b).unwrap().end,
            ScanEnd::Corrupt { .. }
        ));
    }

    #[test]
    fn every_flipped_bit_of_the_last_frame_is_corruption_not_a_torn_tail() {
        let full = segment(3);
        let last = scan_segment(&full).unwrap().frames[2].offset as usize;
        for at in last..full.len() {
            for bit in 0..8 {
                let mut b = full.clone();
                b[at] ^= 1 << bit;
                let s = scan_segment(&b).unwrap();
                assert_eq!(s.frames.len(), 2, "byte {at} bit {bit}");
                assert!(
                    matches!(s.end, ScanEnd::Corrupt { offset, .. } if offset == last as u64),
                    "byte {at} bit {bit}: {:?}",
                    s.end
                );
            }
        }
    }

    #[test]
    fn zero_filled_tail_is_torn() {
        let mut b = segment(2);
        let n = b.len();
        b.extend_from_slice(&[0; 40]);
        let s = scan_segment(&b).unwrap();
        assert_eq!(s.frames.len(), 2);
        assert!(matches!(s.end, ScanEnd::TornTail { offset, .. } if offset == n as u64));
    }

    #[test]
    fn format_5_zeros_after_the_frames_are_preallocated_space() {
        let mut b = segment_v(2, SEGMENT_VERSION);
        let n = b.len();
        assert_eq!(scan_segment(&b).unwrap().end, ScanEnd::Clean);
        b.extend_from_slice(&[0; 4000]);
        let s = scan_segment(&b).unwrap();
        assert_eq!((s.frames.len(), s.version), (2, SEGMENT_VERSION));
        assert_eq!(s.end, ScanEnd::Preallocated { offset: n as u64 });
        // An empty segment that is all preallocated space.
        let mut e = segment_v(0, SEGMENT_VERSION);
        e.extend_from_slice(&[0; 100]);
        let s = scan_segment(&e).unwrap();
        assert_eq!(
            s.end,
            ScanEnd::Preallocated {
                offset: HEADER_LEN as u64
            }
        );
    }

    /// Format 5 with preallocated zeros after: every flipped bit of the last frame is a torn
    /// write (nothing that verifies follows it), every flipped bit of the frame before it is
    /// corruption (the last frame still verifies).
    #[test]
    fn format_5_damage_is_torn_only_when_nothing_valid_follows() {
        let mut full = segment_v(3, SEGMENT_VERSION);
        full.extend_from_slice(&[0; 64]);
        let frames = scan_segment(&full).unwrap().frames;
        let (second, last, end) = (
            frames[1].offset as usize,
            frames[2].offset as usize,
            (frames[2].offset + u64::from(frames[2].len)) as usize,
        );
        for at in second..end {
            for bit in 0..8 {
                let mut b = full.clone();
                b[at] ^= 1 << bit;
                let s = scan_segment(&b).unwrap();
                if at < last {
                    assert_eq!(s.frames.len(), 1, "byte {at} bit {bit}");
                    assert!(
                        matches!(s.end, ScanEnd::Corrupt { offset, .. } if offset == second as u64),
                        "byte {at} bit {bit}: {:?}",
                        s.end
                    );
                } else {
                    assert_eq!(s.frames.len(), 2, "byte {at} bit {bit}");
                    assert!(
                        matches!(s.end, ScanEnd::TornTail { offset, .. } if offset == last as u64),
                        "byte {at} bit {bit}: {:?}",
                        s.end
                    );
                }
            }
        }
    }

    /// Format 5 torn writes into preallocated space: a zeroed sector inside the last frame, the
    /// last frame's header lost while its body landed, garbage after the frames; and a valid
    /// frame after a bad one is still corruption.
    #[test]
    fn format_5_torn_writes_into_preallocated_space() {
        let mut full = segment_v(0, SEGMENT_VERSION);
        let body = vec![0xAB; 2000];
        for i in 0..3 {
            encode_frame(&mut full, 5 + i, 2, 1, &body);
        }
        full.extend_from_slice(&[0; 4096]);
        let frames = scan_segment(&full).unwrap().frames;
        let last = frames[2].offset as usize;
        let torn_at = |b: &[u8]| match scan_segment(b).unwrap().end {
            ScanEnd::TornTail { offset, .. } => Some(offset),
            _ => None,
        };
        // A zeroed 512-byte sector in the middle of the last frame.
        let mut b = full.clone();
        b[last + 600..last + 1112].fill(0);
        assert_eq!(torn_at(&b), Some(last as u64));
        // The last frame's first bytes (its header) never landed, its body did.
        let mut b = full.clone();
        b[last..last + 12].fill(0);
        assert_eq!(torn_at(&b), Some(last as u64));
        // Garbage of an unsynced write after the last frame.
        let mut b = full.clone();
        let after = (frames[2].offset + u64::from(frames[2].len)) as usize;
        b[after + 700..after + 900].fill(0x5C);
        assert_eq!(torn_at(&b), Some(after as u64));
        // A zeroed sector inside the middle frame, the last one intact: corruption.
        let mut b = full.clone();
        let mid = frames[1].offset as usize;
        b[mid + 600..mid + 1112].fill(0);
        assert!(matches!(
            scan_segment(&b).unwrap().end,
            ScanEnd::Corrupt { offset, .. } if offset == mid as u64
        ));
        // A valid-looking frame written after a bad one, past zeros: corruption.
        let mut b = full.clone();
        b[last + 600..last + 1112].fill(0);
        let mut extra = Vec::new();
        encode_frame(&mut extra, 99, 2, 1, b"late");
        let at = after + 1000;
        b[at..at + extra.len()].copy_from_slice(&extra);
        assert!(matches!(
            scan_segment(&b).unwrap().end,
            ScanEnd::Corrupt { offset, .. } if offset == last as u64
        ));
    }

    #[test]
    fn version_one_segments_are_refused_by_name() {
        let mut b = segment(0);
        b[8..12].copy_from_slice(&1u32.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        assert!(SegmentHeader::decode(&b).unwrap_err().contains("version 1"));
        b[8..12].copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        assert!(SegmentHeader::decode(&b).unwrap_err().contains("version 2"));
        b[8..12].copy_from_slice(&3u32.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        assert!(SegmentHeader::decode(&b).unwrap_err().contains("version 3"));
    }
}
