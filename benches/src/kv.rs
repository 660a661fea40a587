//! What the etcd comparison's processes share (`src/bin/kv_server.rs`, `kv_load.rs`,
//! `kv_compare.rs`; docs/BENCHMARKS.md, "swarm-raft beside etcd").
//!
//! - [`read_frame`]/[`write_frame`]: length-prefixed frames (u32 little-endian length, then the
//!   body), used both for the client protocol and for raft traffic between `kv_server` processes.
//! - [`Request`]/[`Response`]: the client protocol of `kv_server` (one request at a time per
//!   connection), bincode in a frame.
//! - [`TcpTransport`]: swarm-raft's [`Transport`] over loopback TCP (bincode [`RaftRpc`] in a
//!   frame, a pool of connections per peer), so 3 members are 3 processes, as etcd's are.
//! - [`RunResult`]: what one `kv_load` run measured, printed as one JSON line after
//!   [`RESULT_PREFIX`].

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use swarm_raft::types::ManagerNode;
use swarm_raft::{NodeId, RaftReply, RaftRpc, Transport, TransportError};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest frame either side accepts (raft snapshot chunks are at most 4 MiB).
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// The line prefix before a [`RunResult`] in `kv_load`'s output.
pub const RESULT_PREFIX: &str = "KV_RESULT ";

/// Why a frame could not be read or decoded.
#[derive(Debug, Error)]
pub enum FrameError {
    /// The connection failed or closed.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The peer announced a frame larger than [`MAX_FRAME`].
    #[error("frame of {0} bytes is larger than the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    /// The body is not a valid message.
    #[error("undecodable frame: {0}")]
    Decode(#[from] bincode::Error),
}

/// Reads one frame body. `Ok(None)` when the peer closed the connection between frames.
pub async fn read_frame(s: &mut TcpStream) -> Result<Option<Vec<u8>>, FrameError> {
    let mut len = [0u8; 4];
    match s.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await?;
    Ok(Some(body))
}

/// Writes `body` as one frame.
pub async fn write_frame(s: &mut TcpStream, body: &[u8]) -> Result<(), FrameError> {
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(body.len()));
    }
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
    buf.extend_from_slice(body);
    s.write_all(&buf).await?;
    Ok(())
}

/// Reads and decodes one message; `Ok(None)` on a clean close.
pub async fn read_msg<T: for<'de> Deserialize<'de>>(
    s: &mut TcpStream,
) -> Result<Option<T>, FrameError> {
    match read_frame(s).await? {
        None => Ok(None),
        Some(body) => Ok(Some(bincode::deserialize(&body)?)),
    }
}

/// Encodes and writes one message.
pub async fn write_msg<T: Serialize>(s: &mut TcpStream, msg: &T) -> Result<(), FrameError> {
    write_frame(s, &bincode::serialize(msg)?).await
}

/// A request to `kv_server`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// Store `value` under `key`: one proposal with one store action (a config write).
    Put {
        /// The key (the config's name).
        key: String,
        /// The value (the config's data).
        value: Vec<u8>,
    },
    /// The value under `key` in this member's store (a local read, not linearizable on a
    /// follower).
    Get {
        /// The key.
        key: String,
    },
    /// This member's role and counters.
    Status,
}

/// `kv_server`'s answer to a [`Request`], same variant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Response {
    /// The log index the put was applied at, or why it failed.
    Put(Result<u64, String>),
    /// The value, if the key was ever put.
    Get(Option<Vec<u8>>),
    /// See [`ServerStatus`].
    Status(ServerStatus),
}

/// One member's raft role and WAL counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStatus {
    /// The raft id.
    pub id: u64,
    /// Whether it is the leader and heard from a quorum recently.
    pub leader: bool,
    /// Voters in its membership.
    pub voters: u32,
    /// WAL fsyncs that made appended entries durable, since start (`swarm_raft::WalStats`).
    pub fsyncs: u64,
    /// Entries written to its WAL since start (`swarm_raft::WalStats`).
    pub entries: u64,
    /// Its last log index.
    pub last_log_index: u64,
}

/// swarm-raft's [`Transport`] over TCP: each call takes an idle connection to the peer (or opens
/// one), writes the bincode-encoded [`RaftRpc`] as a frame and reads the reply frame. A connection
/// goes back to the pool only after a complete exchange, so a call cancelled by openraft's
/// deadline never leaves a half-read reply behind.
#[derive(Debug, Default)]
pub struct TcpTransport {
    idle: Mutex<HashMap<String, Vec<TcpStream>>>,
}

impl TcpTransport {
    /// A transport with no connections yet.
    pub fn new() -> TcpTransport {
        TcpTransport::default()
    }

    fn take(&self, addr: &str) -> Option<TcpStream> {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(addr)
            .and_then(Vec::pop)
    }

    fn give_back(&self, addr: &str, s: TcpStream) {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(addr.to_string())
            .or_default()
            .push(s);
    }
}

#[async_trait]
impl Transport for TcpTransport {
    async fn call(
        &self,
        target: NodeId,
        node: &ManagerNode,
        rpc: RaftRpc,
    ) -> Result<RaftReply, TransportError> {
        let unreachable =
            |e: &dyn std::fmt::Display| TransportError::Unreachable(target, e.to_string());
        let body = bincode::serialize(&rpc).map_err(|e| unreachable(&e))?;
        let mut conn = match self.take(&node.addr) {
            Some(c) => c,
            None => {
                let c = TcpStream::connect(&node.addr)
                    .await
                    .map_err(|e| unreachable(&e))?;
                c.set_nodelay(true).map_err(|e| unreachable(&e))?;
                c
            }
        };
        write_frame(&mut conn, &body)
            .await
            .map_err(|e| unreachable(&e))?;
        let reply = match read_frame(&mut conn).await {
            Ok(Some(r)) => r,
            Ok(None) => return Err(unreachable(&"connection closed before the reply")),
            Err(e) => return Err(unreachable(&e)),
        };
        let reply: RaftReply =
            bincode::deserialize(&reply).map_err(|_| TransportError::BadReply(target))?;
        self.give_back(&node.addr, conn);
        Ok(reply)
    }
}

/// What one `kv_load` run measured over its measured window (after the warm-up).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// `etcd` or `swarm`.
    pub system: String,
    /// Members in the cluster.
    pub members: u32,
    /// Concurrent clients (each one request in flight).
    pub clients: u32,
    /// Puts completed in the window.
    pub puts: u64,
    /// Puts that failed (any failure also makes `kv_load` exit non-zero).
    pub errors: u64,
    /// Length of the window, seconds.
    pub seconds: f64,
    /// `puts / seconds`.
    pub puts_per_sec: f64,
    /// Median put latency, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile put latency, milliseconds.
    pub p99_ms: f64,
    /// WAL fsyncs on the leader in the window (etcd: `etcd_disk_wal_fsync_duration_seconds_count`;
    /// swarm: `WalStats::fsyncs`).
    pub fsyncs: u64,
    /// Entries the leader made durable in the window (etcd: `etcd_server_proposals_committed_total`;
    /// swarm: `WalStats::entries`, where one entry may carry several merged proposals).
    pub entries: u64,
    /// CPU of the load generator over the window, in cores (CPU seconds / wall seconds).
    pub client_cpu: f64,
    /// CPU of every server process over the window, in cores.
    pub server_cpu: f64,
}

impl RunResult {
    /// Entries per fsync (0 when there was no fsync).
    pub fn entries_per_fsync(&self) -> f64 {
        per_fsync(self.entries, self.fsyncs)
    }

    /// Puts completed per fsync (0 when there was no fsync): the same measure of fsync sharing
    /// for both systems, however each packs puts into log entries.
    pub fn puts_per_fsync(&self) -> f64 {
        per_fsync(self.puts, self.fsyncs)
    }
}

fn per_fsync(n: u64, fsyncs: u64) -> f64 {
    if fsyncs == 0 {
        0.0
    } else {
        n as f64 / fsyncs as f64
    }
}

/// Value at quantile `q` (0..=1) of sorted `v` (nearest rank); 0 for an empty slice.
pub fn quantile<T: Copy + Default>(sorted: &[T], q: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The median of `v` (mean of the middle two for an even count); 0 for an empty slice.
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// CPU seconds (user + system) used so far by process `pid`, from `/proc/<pid>/stat`; `None` if
/// the process is gone or the file cannot be read.
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after its closing ')' are plain.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after ')'.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    Some((utime + stime) / ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 50);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&v, 1.0), 100);
        assert_eq!(quantile::<u32>(&[], 0.5), 0);
        assert_eq!(quantile(&[7u32], 0.99), 7);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn own_cpu_time_is_readable() {
        let t = process_cpu_seconds(std::process::id()).expect("own /proc/self/stat");
        assert!(t >= 0.0);
        assert_eq!(process_cpu_seconds(u32::MAX), None);
    }

    #[tokio::test]
    async fn frames_round_trip_and_oversized_ones_are_refused() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.expect("accept");
            let got: Option<Request> = read_msg(&mut s).await.expect("read");
            let huge = ((MAX_FRAME + 1) as u32).to_le_bytes();
            s.write_all(&huge).await.expect("write");
            got
        });
        let mut c = TcpStream::connect(addr).await.expect("connect");
        let req = Request::Put {
            key: "k".into(),
            value: vec![1, 2, 3],
        };
        write_msg(&mut c, &req).await.expect("write");
        match server.await.expect("server") {
            Some(Request::Put { key, value }) => {
                assert_eq!(key, "k");
                assert_eq!(value, vec![1, 2, 3]);
            }
            other => panic!("unexpected {other:?}"),
        }
        match read_frame(&mut c).await {
            Err(FrameError::TooLarge(n)) => assert_eq!(n, MAX_FRAME + 1),
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }
}
