//! UDP across hosts: a client flow's datagrams carried over one `mesh.v1.connect` stream to the
//! node running the chosen task, each datagram one frame.
//!
//! ```text
//! frame = length (u16, big-endian) | payload (length bytes)
//! ```
//!
//! The stream is reliable and ordered, so a frame is never torn or reordered; what UDP may lose
//! is lost before it enters the stream: a flow whose queue toward the stream is full drops the
//! datagram ([`QUEUE`]), as a full socket buffer would. A payload longer than `u16::MAX` cannot
//! be sent over IPv4 or IPv6 without jumbograms and is dropped.
//!
//! Both ends stop after [`super::MeshConfig::udp_idle_timeout`] without a datagram either way,
//! and either end's error or finish ends the other: the calling node's next datagram from that
//! client then opens a new flow (possibly to another task).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm_net::rpc::{RecvStream, SendStream};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Datagrams queued toward a stream that is still opening or busy; beyond, they are dropped.
pub(crate) const QUEUE: usize = 256;

/// Stream error code of a flow that ended because it was idle or its socket failed.
const ENDED: u32 = 2;

/// The largest payload a frame carries.
pub(crate) const MAX_PAYLOAD: usize = u16::MAX as usize;

/// Writes `payload` as one frame. Payloads beyond [`MAX_PAYLOAD`] are not written (`Ok(false)`).
pub(crate) async fn write_frame(send: &mut SendStream, payload: &[u8]) -> io::Result<bool> {
    let Ok(len) = u16::try_from(payload.len()) else {
        return Ok(false);
    };
    let mut frame = Vec::with_capacity(2 + payload.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(payload);
    send.write_all(&frame).await.map_err(io::Error::other)?;
    Ok(true)
}

/// Reads the next frame into `buf` (at least [`MAX_PAYLOAD`] bytes); its length, or `None` when
/// the peer finished the stream between frames. A stream that ends inside a frame is an error.
pub(crate) async fn read_frame(recv: &mut RecvStream, buf: &mut [u8]) -> io::Result<Option<usize>> {
    let mut len = [0u8; 2];
    if !fill(recv, &mut len, true).await? {
        return Ok(None);
    }
    let n = usize::from(u16::from_be_bytes(len));
    let Some(dst) = buf.get_mut(..n) else {
        return Err(io::Error::other("datagram buffer smaller than a frame"));
    };
    fill(recv, dst, false).await?;
    Ok(Some(n))
}

/// Fills `dst` from the stream; `Ok(false)` when the stream ended before any byte and
/// `may_end` (a finish between frames), an error when it ended inside.
async fn fill(recv: &mut RecvStream, dst: &mut [u8], may_end: bool) -> io::Result<bool> {
    let mut at = 0;
    while at < dst.len() {
        match recv.read(&mut dst[at..]).await.map_err(io::Error::other)? {
            Some(n) => at += n,
            None if at == 0 && may_end => return Ok(false),
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the stream ended inside a datagram frame",
                ))
            }
        }
    }
    Ok(true)
}

/// Sends `data` on `sock` (connected) at once; a full socket buffer drops it (`Ok`), as the
/// network would; an error is the socket's (`ConnectionRefused`: ICMP port unreachable came back
/// for an earlier datagram, the task is gone).
///
/// Not `UdpSocket::try_send`: tokio attempts that only once its reactor has seen the socket
/// writable, which a socket connected a moment ago has not, so a flow's first datagram (often its
/// only one: a DNS query) would be dropped every time.
pub(crate) fn send_now(sock: &UdpSocket, data: &[u8]) -> io::Result<()> {
    match rustix::net::send(sock, data, rustix::net::SendFlags::empty()) {
        Ok(_) => Ok(()),
        Err(e) if e == rustix::io::Errno::AGAIN => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Milliseconds since an epoch, shared by a flow's two directions: the time of its last datagram.
#[derive(Clone, Debug)]
pub(crate) struct LastSeen {
    epoch: Instant,
    ms: Arc<AtomicU64>,
}

impl LastSeen {
    pub(crate) fn new(epoch: Instant) -> LastSeen {
        let last = LastSeen {
            epoch,
            ms: Arc::new(AtomicU64::new(0)),
        };
        last.touch();
        last
    }

    pub(crate) fn touch(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.ms.store(now, Ordering::Relaxed);
    }

    /// When the flow expires if nothing more passes.
    pub(crate) fn deadline(&self, idle: Duration) -> tokio::time::Instant {
        let last = self.epoch + Duration::from_millis(self.ms.load(Ordering::Relaxed));
        (last + idle).into()
    }

    /// Whether nothing passed for `idle`.
    pub(crate) fn expired(&self, idle: Duration) -> bool {
        tokio::time::Instant::now() >= self.deadline(idle)
    }
}

/// Waits until the flow has been idle for `idle` (re-armed by every datagram either way).
async fn idle_out(last: &LastSeen, idle: Duration) {
    loop {
        tokio::time::sleep_until(last.deadline(idle)).await;
        if last.expired(idle) {
            return;
        }
    }
}

/// The calling node's side of a flow: datagrams from `queue` go into the stream, frames from the
/// stream go to `client` from the published socket `listener`. Ends when idle, when the stream
/// ends either way, or when the queue's sender is dropped (the session was replaced).
pub(crate) async fn client_side(
    (mut send, mut recv): (SendStream, RecvStream),
    mut queue: mpsc::Receiver<Vec<u8>>,
    listener: Arc<UdpSocket>,
    client: SocketAddr,
    last: LastSeen,
    idle: Duration,
) {
    let up = async {
        while let Some(d) = queue.recv().await {
            write_frame(&mut send, &d).await?;
            last.touch();
        }
        // The session was replaced or dropped: end the stream.
        send.finish().map_err(io::Error::other)
    };
    let down = async {
        let mut buf = vec![0u8; MAX_PAYLOAD];
        while let Some(n) = read_frame(&mut recv, &mut buf).await? {
            last.touch();
            // A full send buffer drops the datagram, as the network would.
            let _ = listener.try_send_to(&buf[..n], client);
        }
        Ok::<(), io::Error>(())
    };
    let ended = tokio::select! {
        r = up => r.err(),
        r = down => r.err(),
        _ = idle_out(&last, idle) => None,
    };
    if let Some(e) = ended {
        tracing::trace!(%client, error = %e, "routing mesh: udp flow over a stream ended");
    }
}

/// The receiving node's side of a flow: frames from the stream go to the task through `task`
/// (a socket connected to it), the task's datagrams go back as frames. Ends when idle, when the
/// stream ends, or when the task's socket fails (port unreachable: the task is gone), resetting
/// the stream so the caller's flow ends too.
pub(crate) async fn task_side(
    task: UdpSocket,
    mut send: SendStream,
    mut recv: RecvStream,
    idle: Duration,
) {
    let last = LastSeen::new(Instant::now());
    let up = async {
        let mut buf = vec![0u8; MAX_PAYLOAD];
        while let Some(n) = read_frame(&mut recv, &mut buf).await? {
            last.touch();
            send_now(&task, &buf[..n])?;
        }
        Ok::<(), io::Error>(())
    };
    let ended = tokio::select! {
        r = up => r.err(),
        r = task_to_stream(&task, &mut send, &last) => r.err(),
        _ = idle_out(&last, idle) => None,
    };
    if let Some(e) = ended {
        tracing::trace!(error = %e, "routing mesh: udp flow to a local task ended");
    }
    let _ = send.reset(ENDED.into());
    let _ = recv.stop(ENDED.into());
}

/// Carries the task's datagrams into the stream until either fails.
async fn task_to_stream(
    task: &UdpSocket,
    send: &mut SendStream,
    last: &LastSeen,
) -> io::Result<()> {
    let mut buf = vec![0u8; MAX_PAYLOAD];
    loop {
        let n = task.recv(&mut buf).await?;
        last.touch();
        write_frame(send, &buf[..n]).await?;
    }
}
