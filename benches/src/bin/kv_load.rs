//! The load generator of the etcd comparison: the same workload against etcd (gRPC `KV/Put`) or
//! `kv_server` (swarm-raft), from a process of its own (docs/BENCHMARKS.md, "swarm-raft beside
//! etcd").
//!
//! ```text
//! kv_load --system etcd|swarm --endpoints ADDR[,ADDR...] --members N --clients C
//!         [--warmup SECS] [--duration SECS] [--value-bytes 1024] [--keys 1024] [--server-pids P,...]
//! ```
//! It finds the leader among the endpoints (etcd: `etcd_server_is_leader` in `/metrics`; swarm: the
//! status request), waits until the cluster has `--members` voters, then runs `C` independent
//! clients against the leader, each with its own connection (etcd: one HTTP/2 channel per client)
//! and one put in flight. Client `c` writes keys `k<c * per + i>` (`per = keys / C`) in turn, so
//! clients never write the same key. Puts completing inside the measured window (after the
//! warm-up) count; the leader's WAL fsyncs and committed entries, and the CPU time of this process
//! and of `--server-pids`, are sampled at both ends of the window. Prints one line,
//! `KV_RESULT {json}` ([`RunResult`]); exits 1 if any put failed.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut};
use swarm_benches::kv::{
    process_cpu_seconds, quantile, read_msg, write_msg, Request, Response, RunResult, ServerStatus,
    RESULT_PREFIX,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::Status;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum System {
    Etcd,
    Swarm,
}

#[derive(Clone, Debug)]
struct Args {
    system: System,
    endpoints: Vec<String>,
    members: u32,
    clients: u32,
    warmup: Duration,
    duration: Duration,
    value_bytes: usize,
    keys: u64,
    server_pids: Vec<u32>,
}

const USAGE: &str = "usage: kv_load --system etcd|swarm --endpoints ADDR[,ADDR...] --members N --clients C [--warmup SECS] [--duration SECS] [--value-bytes N] [--keys N] [--server-pids P,...]";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        system: System::Swarm,
        endpoints: Vec::new(),
        members: 1,
        clients: 1,
        warmup: Duration::from_secs(2),
        duration: Duration::from_secs(10),
        value_bytes: 1024,
        keys: 1024,
        server_pids: Vec::new(),
    };
    let mut system = None;
    let mut it = std::env::args().skip(1);
    let secs = |v: String, n: &str| -> Result<Duration, String> {
        let s: f64 = v.parse().map_err(|e| format!("{n}: {e}"))?;
        if !(s.is_finite() && s >= 0.0) {
            return Err(format!("{n} must be a non-negative number of seconds"));
        }
        Ok(Duration::from_secs_f64(s))
    };
    while let Some(flag) = it.next() {
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = |n: &str| v.parse::<u64>().map_err(|e| format!("{n}: {e}"));
        match flag.as_str() {
            "--system" => {
                system = Some(match v.as_str() {
                    "etcd" => System::Etcd,
                    "swarm" => System::Swarm,
                    _ => return Err(format!("--system is etcd or swarm, not {v:?}")),
                })
            }
            "--endpoints" => a.endpoints = v.split(',').map(str::to_string).collect(),
            "--members" => a.members = num("--members")? as u32,
            "--clients" => a.clients = num("--clients")? as u32,
            "--warmup" => a.warmup = secs(v, "--warmup")?,
            "--duration" => a.duration = secs(v, "--duration")?,
            "--value-bytes" => a.value_bytes = num("--value-bytes")? as usize,
            "--keys" => a.keys = num("--keys")?,
            "--server-pids" => {
                a.server_pids = v
                    .split(',')
                    .map(|p| p.parse::<u32>().map_err(|e| format!("--server-pids: {e}")))
                    .collect::<Result<_, _>>()?
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    a.system = system.ok_or("--system is required")?;
    if a.endpoints.is_empty() || a.endpoints.iter().any(String::is_empty) {
        return Err("--endpoints is required".into());
    }
    if a.clients == 0 || a.members == 0 || a.keys == 0 || a.duration.is_zero() {
        return Err("--clients, --members, --keys and --duration must be positive".into());
    }
    Ok(a)
}

// ---- etcd over gRPC: the two messages we need, encoded by hand (no protoc) ----

/// Bytes in, bytes out: the protobuf encoding is done by [`encode_put`] and [`put_revision`].
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut out = vec![0u8; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(b: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = b.split_first()?;
        *b = rest;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

/// etcdserverpb.PutRequest { key = 1; value = 2 }.
fn encode_put(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + value.len() + 8);
    for (tag, field) in [(0x0a, key), (0x12, value)] {
        out.push(tag);
        put_varint(&mut out, field.len() as u64);
        out.extend_from_slice(field);
    }
    out
}

/// The `revision` (field 3) of fields that are a message (one level), or of the message itself.
fn field_varint(mut b: &[u8], want: u64) -> Option<u64> {
    while !b.is_empty() {
        let key = get_varint(&mut b)?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                let v = get_varint(&mut b)?;
                if field == want {
                    return Some(v);
                }
            }
            1 => b = b.get(8..)?,
            2 => {
                let len = usize::try_from(get_varint(&mut b)?).ok()?;
                b = b.get(len..)?;
            }
            5 => b = b.get(4..)?,
            _ => return None,
        }
    }
    None
}

/// The header's revision in an etcdserverpb.PutResponse { header = 1 { revision = 3 } }.
fn put_revision(resp: &[u8]) -> Option<u64> {
    let mut b = resp;
    while !b.is_empty() {
        let key = get_varint(&mut b)?;
        match key & 7 {
            0 => {
                get_varint(&mut b)?;
            }
            1 => b = b.get(8..)?,
            2 => {
                let len = usize::try_from(get_varint(&mut b)?).ok()?;
                let body = b.get(..len)?;
                if key >> 3 == 1 {
                    return field_varint(body, 3);
                }
                b = &b[len..];
            }
            5 => b = b.get(4..)?,
            _ => return None,
        }
    }
    None
}

const PUT_PATH: &str = "/etcdserverpb.KV/Put";

async fn etcd_put(ch: &Channel, key: &[u8], value: &[u8]) -> Result<u64, String> {
    let mut grpc = tonic::client::Grpc::new(ch.clone());
    grpc.ready().await.map_err(|e| format!("channel: {e}"))?;
    let resp = grpc
        .unary(
            tonic::Request::new(encode_put(key, value)),
            PathAndQuery::from_static(PUT_PATH),
            RawCodec,
        )
        .await
        .map_err(|e| format!("put: {e}"))?;
    put_revision(resp.get_ref()).ok_or_else(|| "put answered without a revision".to_string())
}

/// `GET /metrics` of an etcd member, as (name, value) pairs of unlabelled samples.
async fn etcd_metrics(addr: &str) -> Result<Vec<(String, f64)>, String> {
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut body = String::new();
    s.read_to_string(&mut body)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    let (head, body) = body
        .split_once("\r\n\r\n")
        .ok_or(format!("{addr}: no HTTP header in the /metrics answer"))?;
    if !head.starts_with("HTTP/1.") || head.split_whitespace().nth(1) != Some("200") {
        return Err(format!(
            "{addr}: /metrics answered {}",
            head.lines().next().unwrap_or("")
        ));
    }
    Ok(body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, v) = l.split_once(' ')?;
            Some((name.to_string(), v.trim().parse().ok()?))
        })
        .collect())
}

fn metric(m: &[(String, f64)], name: &str) -> Result<f64, String> {
    m.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| *v)
        .ok_or(format!("etcd's /metrics has no {name}"))
}

// ---- swarm: kv_server's protocol ----

async fn swarm_call(s: &mut TcpStream, req: &Request) -> Result<Response, String> {
    write_msg(s, req).await.map_err(|e| e.to_string())?;
    read_msg::<Response>(s)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "server closed the connection".to_string())
}

async fn swarm_status(addr: &str) -> Result<ServerStatus, String> {
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    match swarm_call(&mut s, &Request::Status).await? {
        Response::Status(st) => Ok(st),
        other => Err(format!("{addr}: status answered {other:?}")),
    }
}

/// (WAL fsyncs, entries made durable) on the leader so far.
async fn leader_counters(a: &Args, leader: &str) -> Result<(u64, u64), String> {
    match a.system {
        System::Swarm => {
            let st = swarm_status(leader).await?;
            Ok((st.fsyncs, st.entries))
        }
        System::Etcd => {
            let m = etcd_metrics(leader).await?;
            Ok((
                metric(&m, "etcd_disk_wal_fsync_duration_seconds_count")? as u64,
                metric(&m, "etcd_server_proposals_committed_total")? as u64,
            ))
        }
    }
}

/// The leader's endpoint, once the cluster has a leader with `members` voters.
async fn find_leader(a: &Args) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::from("no endpoint answered");
    loop {
        let mut leader = None;
        let mut up = 0;
        for e in &a.endpoints {
            match a.system {
                System::Swarm => match swarm_status(e).await {
                    Ok(st) => {
                        up += 1;
                        if st.leader && st.voters == a.members {
                            leader = Some(e.clone());
                        }
                    }
                    Err(err) => last = err,
                },
                System::Etcd => match etcd_metrics(e).await {
                    Ok(m) => {
                        up += 1;
                        if metric(&m, "etcd_server_is_leader").is_ok_and(|v| v == 1.0) {
                            leader = Some(e.clone());
                        }
                    }
                    Err(err) => last = err,
                },
            }
        }
        if let (Some(l), true) = (leader, up == a.endpoints.len()) {
            return Ok(l);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no leader with {} members after 60 s: {last}",
                a.members
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

enum Conn {
    Swarm(TcpStream),
    Etcd(Channel),
}

async fn connect(a: &Args, leader: &str) -> Result<Conn, String> {
    match a.system {
        System::Swarm => {
            let s = TcpStream::connect(leader)
                .await
                .map_err(|e| format!("{leader}: {e}"))?;
            s.set_nodelay(true).map_err(|e| e.to_string())?;
            Ok(Conn::Swarm(s))
        }
        System::Etcd => {
            let ch = Channel::from_shared(format!("http://{leader}"))
                .map_err(|e| e.to_string())?
                .tcp_nodelay(true)
                .connect()
                .await
                .map_err(|e| format!("{leader}: {e}"))?;
            Ok(Conn::Etcd(ch))
        }
    }
}

/// One put; the log index (swarm) or revision (etcd) it got.
async fn put(conn: &mut Conn, key: String, value: &[u8]) -> Result<u64, String> {
    match conn {
        Conn::Swarm(s) => {
            let req = Request::Put {
                key,
                value: value.to_vec(),
            };
            match swarm_call(s, &req).await? {
                Response::Put(r) => r,
                other => Err(format!("put answered {other:?}")),
            }
        }
        Conn::Etcd(ch) => etcd_put(ch, key.as_bytes(), value).await,
    }
}

/// A value of `n` bytes, different for each client (xorshift from the client number).
fn value_for(client: u32, n: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(client + 1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

struct ClientOutcome {
    latencies_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

async fn client(c: u32, mut conn: Conn, a: Arc<Args>, window: (Instant, Instant)) -> ClientOutcome {
    let value = value_for(c, a.value_bytes);
    let per = (a.keys / u64::from(a.clients)).max(1);
    let mut out = ClientOutcome {
        latencies_us: Vec::new(),
        errors: 0,
        first_error: None,
    };
    let mut i = 0u64;
    while Instant::now() < window.1 {
        let key = format!("k{:08}", u64::from(c) * per + i % per);
        i += 1;
        let start = Instant::now();
        let r = put(&mut conn, key, &value).await;
        let done = Instant::now();
        match r {
            Ok(_) => {
                if done >= window.0 && done < window.1 {
                    let us = (done - start).as_micros().min(u128::from(u32::MAX)) as u32;
                    out.latencies_us.push(us);
                }
            }
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert(e);
                // A broken connection would fail every later put too.
                break;
            }
        }
    }
    out
}

fn cpu(pids: &[u32]) -> f64 {
    pids.iter().filter_map(|p| process_cpu_seconds(*p)).sum()
}

async fn run(a: Args) -> Result<(RunResult, Option<String>), String> {
    let leader = find_leader(&a).await?;
    let mut conns = Vec::new();
    for _ in 0..a.clients {
        conns.push(connect(&a, &leader).await?);
    }
    let a = Arc::new(a);
    let t0 = Instant::now();
    let window = (t0 + a.warmup, t0 + a.warmup + a.duration);
    let handles: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(c, conn)| tokio::spawn(client(c as u32, conn, a.clone(), window)))
        .collect();
    let me = std::process::id();
    tokio::time::sleep_until(window.0.into()).await;
    let (f0, e0) = leader_counters(&a, &leader).await?;
    let (client0, server0, w0) = (cpu(&[me]), cpu(&a.server_pids), Instant::now());
    tokio::time::sleep_until(window.1.into()).await;
    let (f1, e1) = leader_counters(&a, &leader).await?;
    let (client1, server1, w1) = (cpu(&[me]), cpu(&a.server_pids), Instant::now());
    let mut lat = Vec::new();
    let (mut errors, mut first_error) = (0, None);
    for h in handles {
        let o = h.await.map_err(|e| format!("client task: {e}"))?;
        lat.extend(o.latencies_us);
        errors += o.errors;
        if first_error.is_none() {
            first_error = o.first_error;
        }
    }
    lat.sort_unstable();
    let secs = a.duration.as_secs_f64();
    let wall = (w1 - w0).as_secs_f64().max(1e-9);
    let result = RunResult {
        system: match a.system {
            System::Etcd => "etcd".into(),
            System::Swarm => "swarm".into(),
        },
        members: a.members,
        clients: a.clients,
        puts: lat.len() as u64,
        errors,
        seconds: secs,
        puts_per_sec: lat.len() as f64 / secs,
        p50_ms: f64::from(quantile(&lat, 0.50)) / 1000.0,
        p99_ms: f64::from(quantile(&lat, 0.99)) / 1000.0,
        fsyncs: f1.saturating_sub(f0),
        entries: e1.saturating_sub(e0),
        client_cpu: (client1 - client0) / wall,
        server_cpu: (server1 - server0) / wall,
    };
    Ok((result, first_error))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("kv_load: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok((r, first_error)) => {
            match serde_json::to_string(&r) {
                Ok(json) => println!("{RESULT_PREFIX}{json}"),
                Err(e) => {
                    eprintln!("kv_load: encoding the result: {e}");
                    return ExitCode::FAILURE;
                }
            }
            if let Some(e) = first_error {
                eprintln!("kv_load: {} put(s) failed; first: {e}", r.errors);
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kv_load: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_request_is_protobuf() {
        // key "a", value "bc": field 1 len 1, field 2 len 2.
        assert_eq!(
            encode_put(b"a", b"bc"),
            vec![0x0a, 1, b'a', 0x12, 2, b'b', b'c']
        );
        let long = encode_put(b"k", &[0u8; 1024]);
        assert_eq!(&long[3..6], &[0x12, 0x80, 0x08]);
    }

    #[test]
    fn revision_is_read_from_the_header() {
        // header { cluster_id = 5, member_id = 300, revision = 1000, raft_term = 2 }
        let mut header = Vec::new();
        for (tag, v) in [(0x08u8, 5u64), (0x10, 300), (0x18, 1000), (0x20, 2)] {
            header.push(tag);
            put_varint(&mut header, v);
        }
        let mut resp = vec![0x0a];
        put_varint(&mut resp, header.len() as u64);
        resp.extend_from_slice(&header);
        assert_eq!(put_revision(&resp), Some(1000));
        assert_eq!(put_revision(&[]), None);
        assert_eq!(put_revision(&[0x0a, 50, 1]), None, "truncated header");
    }
}
