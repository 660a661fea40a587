//! The supervisor protocol: what the runtime and a task's supervisor say to each other.
//!
//! Every message is one frame: a 4-byte big-endian length, then that many bytes of bincode.
//! Frames over [`MAX_FRAME`] are refused before anything is allocated for them.
//!
//! 1. **Launch** (once, at start): the runtime writes a `Launch` frame on the supervisor's
//!    standard input; the supervisor answers a `Launched` frame on its standard output once the
//!    task's process exists (or could not be started), then closes both.
//! 2. **Requests** over the supervisor's Unix socket: each connection starts with
//!    `Request::Hello` (answered with `Reply::Hello`, which carries [`PROTOCOL_VERSION`]; a
//!    supervisor refuses a version it does not speak), then any number of requests, one reply
//!    each, in order. A connection may wait as long as the task runs (`Wait`, `Stop`).
//!
//! The version guards in-place upgrades: supervisors keep running the binary they were started
//! from, and a newer daemon must speak their protocol to adopt them.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use swarm_core::Id;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::spawn::Setup;
use crate::runtime::{ExitStatus, LogLine, LogStream};

/// The protocol version this build speaks (sent in every hello).
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest frame either side accepts (a launch with a big environment, or a full log ring).
pub const MAX_FRAME: u32 = 64 * 1024 * 1024;

/// Why a frame could not be read or written.
#[derive(Debug, Error)]
pub enum ProtoError {
    /// The connection failed or closed.
    #[error("supervisor connection: {0}")]
    Io(#[from] std::io::Error),
    /// The peer announced a frame larger than [`MAX_FRAME`].
    #[error("supervisor frame of {len} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge {
        /// The announced length.
        len: u32,
    },
    /// The frame is not a message of this protocol version.
    #[error("undecodable supervisor frame: {0}")]
    Decode(#[from] bincode::Error),
    /// The peer speaks another protocol version.
    #[error("supervisor speaks protocol version {theirs}, this binary speaks {PROTOCOL_VERSION}")]
    Version {
        /// The peer's version.
        theirs: u32,
    },
    /// The peer answered something that is not a reply to the request.
    #[error("unexpected supervisor reply: {0}")]
    Unexpected(String),
}

impl From<ProtoError> for std::io::Error {
    fn from(e: ProtoError) -> std::io::Error {
        match e {
            ProtoError::Io(e) => e,
            other => std::io::Error::other(other),
        }
    }
}

/// What a supervisor needs to start a task (sent once, on its standard input).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Launch {
    pub(crate) version: u32,
    pub(crate) node: Id,
    pub(crate) task: Id,
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    /// The child setup (namespaces, mounts, user, working directory).
    pub(crate) setup: Setup,
    /// Run the task as PID 1 of a new PID namespace.
    pub(crate) pid_namespace: bool,
    /// The task's staging directory: deleted by the supervisor as soon as the task exits, so
    /// secrets do not outlive the task even when no daemon is there to delete them.
    pub(crate) cleanup: Option<PathBuf>,
    /// Opaque bytes the runtime gets back in every hello: how to run `exec`, `shutdown` and
    /// `remove` for an adopted task.
    pub(crate) record: Vec<u8>,
}

/// The supervisor's answer to a [`Launch`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Launched {
    /// The task runs with this host pid.
    Started { pid: u32 },
    /// The task could not be started.
    Failed { reason: String },
}

/// A request on the supervisor's socket.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// First request of every connection.
    Hello { version: u32 },
    /// Where the task is (answered at once).
    Status,
    /// Answered once the task has exited.
    Wait,
    /// Sends `signal` to the task's process group (emulating its default action when the task is
    /// a PID namespace's init, which the kernel shields from uncaught signals), then `SIGKILL`
    /// after `grace`; answered once the task has exited.
    Stop { signal: i32, grace: Duration },
    /// The last `tail` lines of output (all kept when `None`).
    Logs { tail: Option<u64> },
    /// The runtime has recorded the exit: the supervisor replies and exits. Refused while the task
    /// runs.
    Collect,
    /// Output lines with their capture times and sequence numbers. With `from: None`, the kept
    /// lines selected by `since` (ns since the epoch) and `tail`; with `from: Some(seq)`, the
    /// lines from that sequence number on, waiting up to `wait_ms` for one when there is none.
    /// (Appended last: older variants keep their encoding.)
    Records {
        since: Option<u64>,
        tail: Option<u64>,
        from: Option<u64>,
        wait_ms: u32,
    },
}

/// One log line on the wire with its capture time (ns since the epoch).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WireRecord {
    pub(crate) time: u64,
    pub(crate) stderr: bool,
    pub(crate) line: String,
}

/// One log line on the wire.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WireLine {
    pub(crate) stderr: bool,
    pub(crate) line: String,
}

impl From<WireLine> for LogLine {
    fn from(w: WireLine) -> LogLine {
        LogLine {
            stream: if w.stderr {
                LogStream::Stderr
            } else {
                LogStream::Stdout
            },
            line: w.line,
        }
    }
}

impl From<&LogLine> for WireLine {
    fn from(l: &LogLine) -> WireLine {
        WireLine {
            stderr: l.stream == LogStream::Stderr,
            line: l.line.clone(),
        }
    }
}

/// Exit status on the wire.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct WireExit {
    pub(crate) code: i64,
    pub(crate) signal: Option<i32>,
}

impl From<WireExit> for ExitStatus {
    fn from(w: WireExit) -> ExitStatus {
        ExitStatus {
            code: w.code,
            signal: w.signal,
        }
    }
}

impl From<ExitStatus> for WireExit {
    fn from(s: ExitStatus) -> WireExit {
        WireExit {
            code: s.code,
            signal: s.signal,
        }
    }
}

/// A reply on the supervisor's socket.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    /// Answer to `Hello`: who this supervisor is.
    Hello {
        version: u32,
        node: Id,
        task: Id,
        pid: u32,
        exit: Option<WireExit>,
        record: Vec<u8>,
    },
    /// Answer to `Status`.
    Status { exit: Option<WireExit> },
    /// Answer to `Wait` and `Stop`.
    Exited(WireExit),
    /// Answer to `Logs`.
    Logs(Vec<WireLine>),
    /// Answer to `Collect`.
    Collected,
    /// The request was refused.
    Refused(String),
    /// Answer to `Records`: the lines, the sequence number after them, and whether the output
    /// is complete (the task's streams ended) with nothing after them.
    Records {
        lines: Vec<WireRecord>,
        next: u64,
        finished: bool,
    },
}

fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, ProtoError> {
    let body = bincode::serialize(msg)?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|l| *l <= MAX_FRAME)
        .ok_or(ProtoError::TooLarge { len: u32::MAX })?;
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ProtoError> {
    use bincode::Options;
    Ok(bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
        .with_limit(u64::from(MAX_FRAME))
        .deserialize(body)?)
}

fn check_len(len: u32) -> Result<usize, ProtoError> {
    if len > MAX_FRAME {
        return Err(ProtoError::TooLarge { len });
    }
    Ok(len as usize)
}

/// Writes one frame (blocking).
pub(crate) fn write_sync<T: Serialize>(w: &mut impl Write, msg: &T) -> Result<(), ProtoError> {
    w.write_all(&encode(msg)?)?;
    w.flush()?;
    Ok(())
}

/// Reads one frame (blocking).
pub(crate) fn read_sync<T: DeserializeOwned>(r: &mut impl Read) -> Result<T, ProtoError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = check_len(u32::from_be_bytes(len))?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    decode(&body)
}

/// Writes one frame.
pub(crate) async fn write<T: Serialize>(
    w: &mut (impl AsyncWrite + Unpin),
    msg: &T,
) -> Result<(), ProtoError> {
    w.write_all(&encode(msg)?).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one frame.
pub(crate) async fn read<T: DeserializeOwned>(
    r: &mut (impl AsyncRead + Unpin),
) -> Result<T, ProtoError> {
    let len = check_len(r.read_u32().await?)?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    decode(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_oversized_ones_are_refused() {
        let mut buf = Vec::new();
        write_sync(&mut buf, &Request::Logs { tail: Some(3) }).unwrap();
        let back: Request = read_sync(&mut buf.as_slice()).unwrap();
        assert!(matches!(back, Request::Logs { tail: Some(3) }));

        let mut huge = (MAX_FRAME + 1).to_be_bytes().to_vec();
        huge.extend_from_slice(&[0; 16]);
        let err = read_sync::<Request>(&mut huge.as_slice()).unwrap_err();
        assert!(matches!(err, ProtoError::TooLarge { .. }), "{err}");

        let garbage = [0u8, 0, 0, 4, 0xff, 0xff, 0xff, 0xff];
        let err = read_sync::<Request>(&mut garbage.as_slice()).unwrap_err();
        assert!(matches!(err, ProtoError::Decode(_)), "{err}");
    }

    proptest::proptest! {
        /// Whatever bytes arrive, decoding any message type returns (an error) without panicking
        /// or allocating past the frame limit.
        #[test]
        fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = read_sync::<Request>(&mut bytes.as_slice());
            let _ = read_sync::<Reply>(&mut bytes.as_slice());
            let _ = read_sync::<Launch>(&mut bytes.as_slice());
            let _ = read_sync::<Launched>(&mut bytes.as_slice());
            let _ = decode::<Launch>(&bytes);
            let _ = decode::<Reply>(&bytes);
        }
    }
}
