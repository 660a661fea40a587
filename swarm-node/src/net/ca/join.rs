//! The node's side: joining with a token ([`join()`]), renewing with the current certificate
//! ([`renew`]), and the renewal loop ([`run_renewal`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand_core::RngCore;
use swarm_core::objects::node::{IssuanceState, NodeAvailability};
use swarm_core::{Id, Timestamp};
use swarm_net::pki::{
    accept_issued, make_csr, verify_chain, CertInfo, PrivateKey, RenewalSchedule, TlsMaterial,
};
use swarm_net::rpc::{Client, ClientEndpoint, Code, Peer, RpcConfig, RpcError, TlsError, TlsState};
use swarm_net::{JoinToken, Role};
use tokio::sync::watch;

use super::{
    IssueRequest, StatusAnswer, StatusRequest, GET_ROOT_CA, ISSUE_NODE_CERTIFICATE,
    NODE_CERTIFICATE_STATUS,
};

/// Timeout of one root CA fetch.
pub const ROOT_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Root CA fetch attempts.
pub const ROOT_FETCH_TRIES: u32 = 5;
/// Pause between root CA fetch attempts.
pub const ROOT_FETCH_PAUSE: Duration = Duration::from_secs(2);
/// Timeout of one issue or status call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// First backoff after a failed status call.
pub const STATUS_BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest backoff between failed status calls.
pub const STATUS_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long a node waits for its certificate before giving up (no leader to sign, for example).
pub const ISSUE_DEADLINE: Duration = Duration::from_secs(120);
/// How often the renewal loop asks the manager about its certificate (root rotation, role change).
pub const RENEWAL_CHECK: Duration = Duration::from_secs(10);

/// What a successful join gives the node.
#[derive(Clone, Debug)]
pub struct Joined {
    /// Certificate chain, key (redacted in Debug) and the roots to trust.
    pub material: TlsMaterial,
    /// The node id the CA chose.
    pub node_id: Id,
    /// The role the token granted.
    pub role: Role,
    /// The roots trusted, PEM.
    pub roots_pem: String,
}

/// Why joining or renewing failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The join token is malformed.
    #[error(transparent)]
    Token(swarm_net::Error),
    /// No answer from the manager.
    #[error("cannot reach the manager at {addr}: {error}")]
    Unreachable {
        /// The manager address.
        addr: SocketAddr,
        /// The last error.
        error: String,
    },
    /// The manager's root CA does not match the join token: nothing was sent to it.
    #[error(transparent)]
    CaMismatch(swarm_net::Error),
    /// The manager refused the request (invalid or rotated token, removed node...).
    #[error("the manager refused: {0}")]
    Refused(String),
    /// The CA could not sign the certificate.
    #[error("the manager could not issue a certificate: {0}")]
    SigningFailed(String),
    /// No certificate within [`ISSUE_DEADLINE`].
    #[error("no certificate was issued within {0:?}; the swarm may have no leader")]
    Timeout(Duration),
    /// The certificate received, or a key, was refused locally.
    #[error(transparent)]
    Pki(swarm_net::Error),
    /// The local endpoint or TLS configuration failed.
    #[error(transparent)]
    Rpc(RpcError),
}

impl From<TlsError> for JoinError {
    fn from(e: TlsError) -> Self {
        JoinError::Rpc(RpcError::Tls(e))
    }
}

fn refused_or_rpc(e: RpcError) -> JoinError {
    match e {
        RpcError::Status(s)
            if matches!(
                s.code,
                Code::InvalidArgument | Code::NotFound | Code::FailedPrecondition
            ) =>
        {
            JoinError::Refused(s.message)
        }
        RpcError::PermissionDenied(m) | RpcError::Authentication(m) => JoinError::Refused(m),
        other => JoinError::Rpc(other),
    }
}

/// Joins the swarm of the manager at `manager` with `token`, from a UDP socket bound to `bind`:
/// fetches the root CA unverified (5 s per try, 5 tries 2 s apart), pins it against the token's
/// digest (refusing before any CSR is sent), asks for a certificate with a fresh key, then polls
/// its status until issued and accepts only a chain for its own key under the pinned root.
/// `config` must name the protocol version the managers serve (`RpcConfig::alpn_protocol`; the
/// daemon passes `net::node::rpc_config`), so a node of another release is refused at the
/// handshake. `now` is the clock certificates are checked against.
pub async fn join(
    bind: SocketAddr,
    manager: SocketAddr,
    token: &str,
    availability: NodeAvailability,
    config: &RpcConfig,
    now: impl Fn() -> Timestamp,
) -> Result<Joined, JoinError> {
    let endpoint = ClientEndpoint::bind(bind, config.clone()).map_err(JoinError::Rpc)?;
    let result = join_on(&endpoint, manager, token, availability, now).await;
    endpoint.close();
    result
}

/// [`join()`] from an existing client endpoint (shared with other identities: a process that
/// plays many nodes joins them all from one socket), with the endpoint's `RpcConfig`. The
/// endpoint stays open; the join's own connections close when it returns.
pub async fn join_on(
    endpoint: &ClientEndpoint,
    manager: SocketAddr,
    token: &str,
    availability: NodeAvailability,
    now: impl Fn() -> Timestamp,
) -> Result<Joined, JoinError> {
    let token = JoinToken::parse(token).map_err(JoinError::Token)?;
    let peer = Peer {
        addr: manager,
        role: Role::Manager,
        node_id: None,
    };
    let bundle = fetch_root(endpoint, &peer).await?;
    let pinned = token
        .pin_bundle(bundle.as_bytes())
        .map_err(JoinError::CaMismatch)?;
    let client = endpoint
        .client(TlsState::joining(&pinned)?)
        .map_err(JoinError::Rpc)?;
    let key = PrivateKey::generate().map_err(JoinError::Pki)?;
    let csr = make_csr(&key).map_err(JoinError::Pki)?;
    let text = token.expose_text();
    let request = IssueRequest {
        csr,
        token: Some(text.to_string()),
        availability,
    };
    let answer = client
        .unary(&peer, &ISSUE_NODE_CERTIFICATE, &request, CALL_TIMEOUT)
        .await
        .map_err(refused_or_rpc)?;
    let material = wait_issued(&client, &peer, answer.node_id, key, &pinned, &now).await?;
    let identity = material.identity();
    Ok(Joined {
        roots_pem: swarm_net::pki::bundle::to_pem(material.roots()),
        node_id: identity.node_id,
        role: identity.role,
        material,
    })
    // Dropping `client` closes its connection (quinn closes a connection with its last handle).
}

async fn fetch_root(endpoint: &ClientEndpoint, peer: &Peer) -> Result<String, JoinError> {
    let client = endpoint
        .client(TlsState::unverified()?)
        .map_err(JoinError::Rpc)?;
    let mut last = String::new();
    for attempt in 0..ROOT_FETCH_TRIES {
        if attempt > 0 {
            tokio::time::sleep(ROOT_FETCH_PAUSE).await;
        }
        match client
            .unary(peer, &GET_ROOT_CA, &(), ROOT_FETCH_TIMEOUT)
            .await
        {
            Ok(answer) => return Ok(answer.bundle_pem),
            Err(e) => last = e.to_string(),
        }
    }
    Err(JoinError::Unreachable {
        addr: peer.addr,
        error: last,
    })
}

/// Polls the certificate status of `node_id` until a chain for `key` is issued, and accepts it
/// against `pinned` (the roots the node already trusts). The roots the server announces (both
/// roots during a root rotation) become the material's roots once the chain verifies under them.
async fn wait_issued(
    client: &Client,
    peer: &Peer,
    node_id: Id,
    key: PrivateKey,
    pinned: &[Vec<u8>],
    now: &impl Fn() -> Timestamp,
) -> Result<TlsMaterial, JoinError> {
    let ours = key.public_key_der().map_err(JoinError::Pki)?;
    let deadline = tokio::time::Instant::now() + ISSUE_DEADLINE;
    let mut backoff = STATUS_BACKOFF_MIN;
    loop {
        if tokio::time::Instant::now() >= deadline {
            return Err(JoinError::Timeout(ISSUE_DEADLINE));
        }
        let request = StatusRequest { node_id };
        match client
            .unary(peer, &NODE_CERTIFICATE_STATUS, &request, CALL_TIMEOUT)
            .await
        {
            Ok(answer) => {
                if answer.state == IssuanceState::Failed {
                    return Err(JoinError::SigningFailed(answer.error));
                }
                if matches!(answer.state, IssuanceState::Issued | IssuanceState::Rotate) {
                    if leaf_key(&answer).as_deref() == Some(ours.as_slice()) {
                        return accept(answer, key, pinned, now());
                    }
                    // Final but not ours yet (an older chain): ask again shortly.
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(STATUS_BACKOFF_MAX);
                    continue;
                }
                backoff = STATUS_BACKOFF_MIN;
            }
            Err(e @ (RpcError::Unavailable(_) | RpcError::DeadlineExceeded)) => {
                tracing::debug!(error = %e, "certificate status call failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(STATUS_BACKOFF_MAX);
            }
            Err(e) => return Err(refused_or_rpc(e)),
        }
    }
}

fn leaf_key(answer: &StatusAnswer) -> Option<Vec<u8>> {
    let leaf = answer.chain.first()?;
    CertInfo::parse(leaf).ok().map(|i| i.public_key_der)
}

fn accept(
    answer: StatusAnswer,
    key: PrivateKey,
    pinned: &[Vec<u8>],
    now: Timestamp,
) -> Result<TlsMaterial, JoinError> {
    let material =
        accept_issued(answer.chain, key, pinned.to_vec(), now).map_err(JoinError::Pki)?;
    if !answer.roots.is_empty()
        && answer.roots != pinned
        && verify_chain(material.chain(), &answer.roots, now).is_ok()
    {
        return material.with_roots(answer.roots).map_err(JoinError::Pki);
    }
    Ok(material)
}

/// Renews the certificate in `current` through `client` (whose TLS state presents `current`, so
/// the manager sees a renewal, not a join): a fresh key and CSR, then the status poll as in a
/// join. The node's role is the one the manager holds for it (a promotion or demotion shows here).
pub async fn renew(
    client: &Client,
    manager: &Peer,
    current: &TlsMaterial,
    now: impl Fn() -> Timestamp,
) -> Result<TlsMaterial, JoinError> {
    let key = PrivateKey::generate().map_err(JoinError::Pki)?;
    let csr = make_csr(&key).map_err(JoinError::Pki)?;
    let request = IssueRequest {
        csr,
        token: None,
        availability: NodeAvailability::Active,
    };
    let answer = client
        .unary(manager, &ISSUE_NODE_CERTIFICATE, &request, CALL_TIMEOUT)
        .await
        .map_err(refused_or_rpc)?;
    let me = current.identity().node_id;
    if answer.node_id != me {
        return Err(JoinError::Refused(format!(
            "the manager answered for node {} instead of {me}",
            answer.node_id
        )));
    }
    wait_issued(client, manager, me, key, current.roots(), &now).await
}

/// **Test-only.** The environment variable that speeds up certificate renewal: an integer `N > 1`
/// divides the wait until each scheduled renewal by `N` (a 1 h certificate, the shortest Docker
/// allows, then renews within about `36 min / N` instead of up to 36 min), so multi-process tests
/// see workers and managers renew. Failure backoffs are divided too, but never below 1 s.
/// Unset, empty, unparsable or `<= 1`: no speedup. Not for production use: it only makes a node
/// renew more often than it needs to.
pub const RENEWAL_SPEEDUP_ENV: &str = "SWARM_NODE_TEST_RENEWAL_SPEEDUP";

/// The renewal speedup [`RENEWAL_SPEEDUP_ENV`] asks for (1: none).
pub fn renewal_speedup_from_env() -> u32 {
    parse_speedup(std::env::var(RENEWAL_SPEEDUP_ENV).ok().as_deref())
}

/// The speedup a value of [`RENEWAL_SPEEDUP_ENV`] names (1: none, or not a number above 1).
fn parse_speedup(value: Option<&str>) -> u32 {
    value
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|n| *n > 1)
        .unwrap_or(1)
}

/// Where a node renews: its RPC client (presenting its certificate), the TLS state that client and
/// the node's server share (renewed material is installed there), and a manager to ask.
#[derive(Clone)]
pub struct RenewalTarget {
    /// The node's client.
    pub client: Arc<Client>,
    /// The node's TLS state.
    pub tls: Arc<TlsState>,
    /// The manager to call (a manager renews through its own CA server).
    pub manager: Peer,
    /// When set, a certificate naming another role is not installed (a manager keeps its manager
    /// certificate until the daemon restarts it as a worker after a demotion; the worker's own
    /// renewal then adopts the reissued one).
    pub keep_role: Option<Role>,
    /// Divides the wait until each scheduled renewal (test-only; see [`RENEWAL_SPEEDUP_ENV`]).
    /// 1: real time.
    pub speedup: u32,
    /// The managers to turn to when `manager` does not answer (a worker: the managers its
    /// dispatcher sessions announce), tried in turn; `None`: `manager` only.
    pub managers: Option<ManagerList>,
}

/// The managers a node knows now (see [`RenewalTarget::managers`]).
pub type ManagerList = Arc<dyn Fn() -> Vec<Peer> + Send + Sync>;

/// The manager after `current` in `list` (cyclically, by address), if the list names another.
fn next_manager(list: &Option<ManagerList>, current: &Peer) -> Option<Peer> {
    let peers = list.as_ref()?();
    let at = peers.iter().position(|p| p.addr == current.addr);
    let next = match at {
        Some(i) => peers.get((i + 1) % peers.len())?,
        None => peers.first()?,
    };
    (next.addr != current.addr).then_some(*next)
}

impl std::fmt::Debug for RenewalTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenewalTarget")
            .field("tls", &self.tls)
            .field("manager", &self.manager)
            .field("keep_role", &self.keep_role)
            .field("speedup", &self.speedup)
            .field("managers", &self.managers.as_ref().map(|_| "..."))
            .finish_non_exhaustive()
    }
}

/// When to try next: the schedule's time, with the wait from `now` divided by `speedup` but at
/// least 1 s (a sped-up node never renews in a tight loop).
fn scaled_due(schedule: &RenewalSchedule, now: Timestamp, speedup: u32) -> Timestamp {
    let wait = schedule.next_attempt().since(now);
    if speedup <= 1 {
        return now.plus(wait);
    }
    now.plus((wait / speedup).max(Duration::from_secs(1)))
}

/// Keeps a node's certificate fresh until `stop` turns true: renews at the random point
/// [`RenewalSchedule`] picks (50-80 % of the lifetime; failures back off 5 s steps up to 1 h), at
/// once when the manager marks it for rotation, and adopts a chain reissued for its own key (role
/// change). Every new material is installed in the target's TLS state and handed to `on_renewed`
/// (to store it with [`super::CertDir::save`]).
pub async fn run_renewal(
    target: RenewalTarget,
    mut material: TlsMaterial,
    mut stop: watch::Receiver<bool>,
    now: impl Fn() -> Timestamp + Send,
    mut rng: impl RngCore + Send,
    mut on_renewed: impl FnMut(&TlsMaterial) + Send,
) {
    let RenewalTarget {
        client,
        tls,
        manager,
        keep_role,
        speedup,
        managers,
    } = target;
    let mut manager = manager;
    let window = |m: &TlsMaterial| {
        CertInfo::parse(m.leaf())
            .map(|i| (i.not_before, i.not_after))
            .unwrap_or((Timestamp::ZERO, Timestamp::ZERO))
    };
    let (nb, na) = window(&material);
    let mut schedule = RenewalSchedule::new(nb, na, &mut rng);
    let mut due = scaled_due(&schedule, now(), speedup);
    loop {
        let wait = due.since(now()).min(RENEWAL_CHECK);
        tokio::select! {
            r = stop.changed() => if r.is_err() || *stop.borrow() { return },
            _ = tokio::time::sleep(wait) => {}
        }
        if *stop.borrow() {
            return;
        }
        let node_id = material.identity().node_id;
        let status = client
            .unary(
                &manager,
                &NODE_CERTIFICATE_STATUS,
                &StatusRequest { node_id },
                CALL_TIMEOUT,
            )
            .await;
        let mut next = None;
        if let Err(e) = &status {
            if let Some(other) = next_manager(&managers, &manager) {
                tracing::info!(from = %manager.addr, to = %other.addr, error = %e, "the manager did not answer about the certificate; asking another");
                manager = other;
            }
        }
        if let Ok(answer) = &status {
            if answer.state == IssuanceState::Rotate {
                schedule.handle_rotate(now());
                due = due.min(now());
            } else if answer.state == IssuanceState::Issued
                && answer.chain.first().map(Vec::as_slice) != Some(material.leaf())
                && leaf_key(answer).as_deref() == material.key().public_key_der().ok().as_deref()
            {
                // Reissued for our key (role change): adopt it.
                next = accept(
                    answer.clone(),
                    material.key().clone(),
                    material.roots(),
                    now(),
                )
                .ok();
            }
        }
        if next.is_none() && now() >= due {
            let renewed = tokio::select! {
                r = renew(&client, &manager, &material, &now) => r,
                _ = stop.wait_for(|s| *s) => return,
            };
            match renewed {
                Ok(m) => next = Some(m),
                Err(e) => {
                    tracing::warn!(manager = %manager.addr, error = %e, "certificate renewal failed; backing off");
                    schedule.handle_failure(now());
                    due = scaled_due(&schedule, now(), speedup);
                    if matches!(e, JoinError::Rpc(_) | JoinError::Timeout(_)) {
                        if let Some(other) = next_manager(&managers, &manager) {
                            manager = other;
                        }
                    }
                }
            }
        }
        if let Some(m) = next {
            if keep_role.is_some_and(|r| m.identity().role != r) {
                // A role change (demotion): the daemon restarts the node in its new role, whose
                // own renewal adopts the reissued certificate.
                tracing::info!(
                    role = ?m.identity().role,
                    "a certificate for another role was issued; keeping the current one until the node restarts in that role"
                );
                schedule.handle_failure(now());
                due = scaled_due(&schedule, now(), speedup);
                continue;
            }
            if let Err(e) = tls.update(&m) {
                tracing::warn!(error = %e, "installing the renewed certificate failed");
                schedule.handle_failure(now());
                due = scaled_due(&schedule, now(), speedup);
                continue;
            }
            let (nb, na) = window(&m);
            schedule.handle_renewed(nb, na, &mut rng);
            due = scaled_due(&schedule, now(), speedup);
            tracing::info!(
                node = %m.identity().node_id,
                role = ?m.identity().role,
                next_renewal_in = ?due.since(now()),
                "node certificate renewed"
            );
            on_renewed(&m);
            material = m;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An RNG that always draws `v` (renewal at a known point of the window).
    struct Fixed(u64);
    impl RngCore for Fixed {
        fn next_u32(&mut self) -> u32 {
            self.0 as u32
        }
        fn next_u64(&mut self) -> u64 {
            self.0
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            dest.fill(0);
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            dest.fill(0);
            Ok(())
        }
    }

    const HOUR: u64 = 3_600_000_000_000;

    #[test]
    fn the_speedup_divides_the_wait_with_a_one_second_floor() {
        let start = Timestamp(10 * HOUR);
        // Window of 2 h: the earliest renewal point (draw 0) is 1 h after not_before.
        let schedule =
            RenewalSchedule::new(start, start.plus(Duration::from_secs(7200)), &mut Fixed(0));
        assert_eq!(
            schedule.next_attempt(),
            start.plus(Duration::from_secs(3600))
        );
        assert_eq!(scaled_due(&schedule, start, 1), schedule.next_attempt());
        assert_eq!(scaled_due(&schedule, start, 0), schedule.next_attempt());
        assert_eq!(
            scaled_due(&schedule, start, 360),
            start.plus(Duration::from_secs(10))
        );
        // Past the renewal point, or divided below 1 s: 1 s from now.
        assert_eq!(
            scaled_due(&schedule, start, 1_000_000),
            start.plus(Duration::from_secs(1))
        );
        let late = start.plus(Duration::from_secs(5000));
        assert_eq!(
            scaled_due(&schedule, late, 100),
            late.plus(Duration::from_secs(1))
        );
        assert_eq!(scaled_due(&schedule, late, 1), late);
    }

    fn peer(last: u8) -> Peer {
        Peer {
            addr: SocketAddr::from(([10, 0, 0, last], 2377)),
            role: Role::Manager,
            node_id: None,
        }
    }

    #[test]
    fn the_next_manager_cycles_through_the_list() {
        assert_eq!(next_manager(&None, &peer(1)), None);
        let list: ManagerList = Arc::new(|| vec![peer(1), peer(2), peer(3)]);
        let list = Some(list);
        assert_eq!(next_manager(&list, &peer(1)), Some(peer(2)));
        assert_eq!(next_manager(&list, &peer(3)), Some(peer(1)));
        // A manager the list no longer names: its first.
        assert_eq!(next_manager(&list, &peer(9)), Some(peer(1)));
        let alone: ManagerList = Arc::new(|| vec![peer(1)]);
        assert_eq!(next_manager(&Some(alone), &peer(1)), None);
        let empty: ManagerList = Arc::new(Vec::new);
        assert_eq!(next_manager(&Some(empty), &peer(1)), None);
    }

    #[test]
    fn the_speedup_value_is_a_number_above_one_or_none() {
        for (value, want) in [
            (None, 1),
            (Some(""), 1),
            (Some("fast"), 1),
            (Some("-5"), 1),
            (Some("0"), 1),
            (Some("1"), 1),
            (Some("2"), 2),
            (Some(" 1000000 "), 1_000_000),
            (Some("99999999999"), 1),
        ] {
            assert_eq!(parse_speedup(value), want, "{value:?}");
        }
    }
}
