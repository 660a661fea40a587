//! quinn over turmoil's simulated UDP (feature `turmoil`), so whole clusters can run on virtual
//! time with the network under a test's control (partitions, loss, delay, seeded replay).
//!
//! [`TurmoilUdp`] is quinn's [`AsyncUdpSocket`] over a [`turmoil::net::UdpSocket`]; [`endpoint`]
//! builds a quinn endpoint on it with quinn's tokio runtime, whose timers are tokio's and so follow
//! turmoil's clock. Call it from inside a turmoil host. Everything above the socket (TLS, the RPC
//! layer) is the production code, unchanged. [`set_duplication`] makes the sockets send a seeded
//! fraction of datagrams twice (a fault turmoil itself does not inject).
//!
//! Not simulated: certificate validity is checked against the wall clock by rustls, so simulated
//! runs use certificates valid now.

use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};

type Readable = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

/// A turmoil UDP socket as quinn's socket.
pub struct TurmoilUdp {
    socket: Arc<turmoil::net::UdpSocket>,
    // The pending "wait until readable" of the one receiving task (quinn's endpoint driver).
    readable: Mutex<Option<Readable>>,
}

impl fmt::Debug for TurmoilUdp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurmoilUdp")
            .field("local_addr", &self.socket.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl TurmoilUdp {
    /// Wraps a bound turmoil socket.
    pub fn new(socket: turmoil::net::UdpSocket) -> TurmoilUdp {
        TurmoilUdp {
            socket: Arc::new(socket),
            readable: Mutex::new(None),
        }
    }
}

/// turmoil's UDP has no send buffer to fill: it is always writable.
#[derive(Debug)]
struct AlwaysWritable;

impl UdpPoller for AlwaysWritable {
    fn poll_writable(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Datagram duplication of the simulation running on this thread (turmoil 0.7 never duplicates):
/// the fraction of datagrams sent twice, and the state of the seeded generator that decides.
#[derive(Clone, Copy, Debug, Default)]
struct Duplication {
    rate: f64,
    state: u64,
}

thread_local! {
    static DUPLICATION: std::cell::Cell<Duplication> = const {
        std::cell::Cell::new(Duplication { rate: 0.0, state: 0 })
    };
}

/// Sends this fraction (0 to 1) of the datagrams of every [`TurmoilUdp`] socket of the simulation
/// running on this thread twice, each copy with its own latency drawn by turmoil (so a copy may
/// also arrive before the original, or be lost alone). Which datagrams are duplicated is drawn
/// from `seed`: the same seed and the same sends give the same duplicates. 0 turns it off; a
/// simulation sets it when it starts (it outlives the simulation on this thread otherwise).
pub fn set_duplication(rate: f64, seed: u64) {
    let rate = if rate.is_finite() {
        rate.clamp(0.0, 1.0)
    } else {
        0.0
    };
    DUPLICATION.with(|d| d.set(Duplication { rate, state: seed }));
}

/// Draws whether the next datagram is sent twice (splitmix64 over the thread's state).
fn duplicate_next() -> bool {
    DUPLICATION.with(|cell| {
        let mut d = cell.get();
        if d.rate <= 0.0 {
            return false;
        }
        d.state = d.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        cell.set(d);
        let mut z = d.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        // The top 53 bits as a fraction in [0, 1).
        ((z >> 11) as f64 / (1u64 << 53) as f64) < d.rate
    })
}

/// `SWARM_SIM_DATAGRAMS` set: every datagram sent is printed (virtual time, source port,
/// destination, size), to find where two runs of one seed part (docs/SIMULATION.md).
fn trace_datagrams() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("SWARM_SIM_DATAGRAMS").is_some())
}

impl AsyncUdpSocket for TurmoilUdp {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(AlwaysWritable)
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        // One datagram per segment: this socket reports no segmentation offload, but honour a
        // segment size if quinn ever passes one.
        let segment = transmit
            .segment_size
            .unwrap_or(transmit.contents.len())
            .max(1);
        for datagram in transmit.contents.chunks(segment) {
            if trace_datagrams() {
                eprintln!(
                    "datagram {:?} {} -> {} {} bytes",
                    turmoil::sim_elapsed().unwrap_or_default(),
                    self.socket.local_addr().map_or(0, |a| a.port()),
                    transmit.destination,
                    datagram.len()
                );
            }
            self.socket.try_send_to(datagram, transmit.destination)?;
            if duplicate_next() {
                self.socket.try_send_to(datagram, transmit.destination)?;
            }
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let (Some(buf), Some(slot)) = (bufs.first_mut(), meta.first_mut()) else {
            return Poll::Ready(Ok(0));
        };
        let mut readable = self.readable.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match self.socket.try_recv_from(buf) {
                Ok((len, addr)) => {
                    *slot = RecvMeta {
                        addr,
                        len,
                        stride: len,
                        ..RecvMeta::default()
                    };
                    return Poll::Ready(Ok(1));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            let wait = readable.get_or_insert_with(|| {
                let socket = self.socket.clone();
                Box::pin(async move { socket.readable().await })
            });
            match wait.as_mut().poll(cx) {
                Poll::Ready(Ok(())) => *readable = None,
                Poll::Ready(Err(e)) => {
                    *readable = None;
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

/// A quinn endpoint on simulated UDP port `port` of the current turmoil host; with `server` it
/// accepts connections (pass [`crate::rpc::RpcConfig::server_config`]).
pub async fn endpoint(
    port: u16,
    server: Option<quinn::ServerConfig>,
) -> io::Result<quinn::Endpoint> {
    endpoint_at(
        (Ipv4Addr::UNSPECIFIED, port).into(),
        server,
        quinn::EndpointConfig::default(),
    )
}

/// A quinn endpoint bound to `addr` (the unspecified address or the host's own, port 0 for an
/// ephemeral one) of the current turmoil host, with `endpoint_config`. Synchronous, so the
/// production binds ([`crate::rpc::RpcConfig::endpoint_with`], hence `Server::bind` and
/// `Client::bind`) can take this path unchanged when they run inside a simulation. Panics
/// (turmoil's) when called outside a simulation host.
pub fn endpoint_at(
    addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
    endpoint_config: quinn::EndpointConfig,
) -> io::Result<quinn::Endpoint> {
    // turmoil's bind is an `async fn` that never waits (it registers the port in the simulated
    // world and returns): one poll completes it.
    let mut bind = std::pin::pin!(turmoil::net::UdpSocket::bind(addr));
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let socket = match bind.as_mut().poll(&mut cx) {
        Poll::Ready(socket) => socket?,
        Poll::Pending => {
            return Err(io::Error::other(
                "turmoil's UDP bind did not complete at once",
            ))
        }
    };
    quinn::Endpoint::new_with_abstract_socket(
        endpoint_config,
        server,
        Arc::new(TurmoilUdp::new(socket)),
        Arc::new(quinn::TokioRuntime),
    )
}
