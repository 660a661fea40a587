//! DNS messages of the service resolver: a query in, the answer out ([`answer`]), decoded and
//! encoded with `hickory-proto`. Pure: no I/O; the sockets are `resolver.rs`'s.
//!
//! - Only standard queries (opcode QUERY) with one question of class IN are answered; other
//!   opcodes get NOTIMP, other question counts or classes FORMERR; a message that does not
//!   decode, or a response, is dropped ([`DnsError`]).
//! - What a name means is [`NameView::lookup`]'s: a VIP or task addresses give A (IPv4) or AAAA
//!   (IPv6) records, and an empty NOERROR answer for the other type and for every other record
//!   type; a swarm-shaped name the querier may not see gives NXDOMAIN; any other name gives
//!   REFUSED (this resolver answers swarm names only: list the host's resolver after it).
//! - TTLs: 600 s for a VIP (kept across updates, as Docker's), 0 for task addresses (they change
//!   with every task).
//! - Over UDP an answer larger than 512 bytes (or the client's EDNS payload size) is sent
//!   truncated (TC set, no records), so the client retries over TCP.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};
use swarm_core::Id;

use super::names::{Lookup, NameView};

/// TTL of a VIP answer, in seconds.
pub(crate) const VIP_TTL: u32 = 600;
/// TTL of a task-address answer, in seconds.
pub(crate) const TASKS_TTL: u32 = 0;
/// The largest UDP answer without EDNS.
pub(crate) const UDP_MAX: usize = 512;

/// Why a message got no answer at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DnsError {
    /// The bytes are no DNS message.
    #[error("malformed DNS message: {0}")]
    Malformed(String),
    /// A response (or another non-query) was sent to the resolver.
    #[error("not a query")]
    NotAQuery,
    /// The answer could not be encoded.
    #[error("cannot encode the answer: {0}")]
    Encode(String),
}

/// The transport a query came over (UDP answers are size-limited).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Datagrams: at most 512 bytes, or the client's EDNS payload size (at most 4,096).
    Udp,
    /// A TCP stream: up to 65,535 bytes.
    Tcp,
}

/// Answers the DNS message `query` from a task attached to `scope`, from `view`.
pub fn answer(
    view: &NameView,
    scope: &[Id],
    query: &[u8],
    transport: Transport,
) -> Result<Vec<u8>, DnsError> {
    let q = Message::from_vec(query).map_err(|e| DnsError::Malformed(e.to_string()))?;
    if q.metadata.message_type != MessageType::Query {
        return Err(DnsError::NotAQuery);
    }
    let mut r = Message::response(q.metadata.id, q.metadata.op_code);
    r.metadata.recursion_desired = q.metadata.recursion_desired;
    let limit = match (transport, &q.edns) {
        (Transport::Tcp, _) => usize::from(u16::MAX),
        (Transport::Udp, Some(e)) => usize::from(e.max_payload()).clamp(UDP_MAX, 4096),
        (Transport::Udp, None) => UDP_MAX,
    };
    if q.edns.is_some() {
        let mut e = Edns::new();
        e.set_max_payload(limit.min(4096) as u16);
        r.set_edns(e);
    }
    if q.metadata.op_code != OpCode::Query {
        r.metadata.response_code = ResponseCode::NotImp;
        return encode(&r, limit);
    }
    let [question] = q.queries.as_slice() else {
        r.metadata.response_code = ResponseCode::FormErr;
        return encode(&r, limit);
    };
    r.add_query(question.clone());
    if question.query_class != DNSClass::IN {
        r.metadata.response_code = ResponseCode::FormErr;
        return encode(&r, limit);
    }
    let name = question.name.to_ascii();
    let (addrs, ttl) = match view.lookup(&name, scope) {
        Lookup::Vip(ip) => (vec![ip], VIP_TTL),
        Lookup::Tasks(ips) => (ips, TASKS_TTL),
        Lookup::NxDomain => {
            r.metadata.authoritative = true;
            r.metadata.response_code = ResponseCode::NXDomain;
            return encode(&r, limit);
        }
        Lookup::Refused => {
            r.metadata.response_code = ResponseCode::Refused;
            return encode(&r, limit);
        }
    };
    r.metadata.authoritative = true;
    for ip in addrs {
        let rdata = match (ip, question.query_type) {
            (IpAddr::V4(v4), RecordType::A) => RData::A(A(v4)),
            (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA(AAAA(v6)),
            _ => continue,
        };
        r.add_answer(Record::from_rdata(question.name.clone(), ttl, rdata));
    }
    encode(&r, limit)
}

/// Encodes `r`; over `limit` bytes, its truncated form.
fn encode(r: &Message, limit: usize) -> Result<Vec<u8>, DnsError> {
    let bytes = r.to_vec().map_err(|e| DnsError::Encode(e.to_string()))?;
    if bytes.len() <= limit {
        return Ok(bytes);
    }
    let mut t = r.truncate();
    t.answers.clear();
    t.to_vec().map_err(|e| DnsError::Encode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;
    use proptest::prelude::*;

    use super::super::names::tests::sample;
    use super::*;

    fn query(name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::new(7, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        m.to_vec().unwrap()
    }

    fn ask(name: &str, t: RecordType, scope: &[Id]) -> Message {
        let bytes = answer(&sample(), scope, &query(name, t), Transport::Udp).unwrap();
        Message::from_vec(&bytes).unwrap()
    }

    fn addrs(m: &Message) -> Vec<IpAddr> {
        m.answers
            .iter()
            .filter_map(|r| match r.data {
                RData::A(A(v4)) => Some(IpAddr::V4(v4)),
                RData::AAAA(AAAA(v6)) => Some(IpAddr::V6(v6)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn answers_follow_the_lookup() {
        let front = [Id::from_u128(1)];
        let m = ask("web.", RecordType::A, &front);
        assert_eq!(m.metadata.id, 7);
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.recursion_desired && m.metadata.authoritative);
        assert_eq!(addrs(&m), vec!["10.0.1.2".parse::<IpAddr>().unwrap()]);
        assert_eq!(m.answers[0].ttl, VIP_TTL);
        assert_eq!(m.queries.len(), 1);
        let m = ask("rr", RecordType::A, &front);
        assert_eq!(addrs(&m).len(), 2);
        assert_eq!(m.answers[0].ttl, TASKS_TTL);
        // The name exists, no IPv6 address: an empty NOERROR.
        let m = ask("web", RecordType::AAAA, &front);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        let m = ask("db", RecordType::A, &front);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        let m = ask("example.com", RecordType::A, &front);
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    }

    #[test]
    fn odd_messages_get_errors_not_answers() {
        let scope = [Id::from_u128(1)];
        let v = sample();
        // A response is dropped.
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.add_query(Query::query(
            Name::from_ascii("web").unwrap(),
            RecordType::A,
        ));
        assert_eq!(
            answer(&v, &scope, &m.to_vec().unwrap(), Transport::Udp),
            Err(DnsError::NotAQuery)
        );
        // Two questions: FORMERR; another opcode: NOTIMP.
        let mut m = Message::new(2, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(
            Name::from_ascii("web").unwrap(),
            RecordType::A,
        ));
        m.add_query(Query::query(Name::from_ascii("db").unwrap(), RecordType::A));
        let r = answer(&v, &scope, &m.to_vec().unwrap(), Transport::Udp).unwrap();
        let r = Message::from_vec(&r).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
        let m = Message::new(3, MessageType::Query, OpCode::Status);
        let r = answer(&v, &scope, &m.to_vec().unwrap(), Transport::Udp).unwrap();
        let r = Message::from_vec(&r).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::NotImp);
        assert!(matches!(
            answer(&v, &scope, &[0, 1, 2], Transport::Tcp),
            Err(DnsError::Malformed(_))
        ));
    }

    #[test]
    fn large_udp_answers_are_truncated_and_whole_over_tcp() {
        let mut v = sample();
        let front = Id::from_u128(1);
        let rr = v.services.get_mut(&Id::from_u128(12)).unwrap();
        let proto = rr.tasks[0].clone();
        rr.tasks = (0..100u8)
            .map(|i| {
                let mut t = proto.clone();
                t.addrs = vec![(Some(front), IpAddr::from([10, 0, 2, i]))];
                t
            })
            .collect();
        let q = query("rr", RecordType::A);
        let udp = Message::from_vec(&answer(&v, &[front], &q, Transport::Udp).unwrap()).unwrap();
        assert!(udp.metadata.truncation);
        assert!(udp.answers.is_empty());
        let tcp = Message::from_vec(&answer(&v, &[front], &q, Transport::Tcp).unwrap()).unwrap();
        assert!(!tcp.metadata.truncation);
        assert_eq!(tcp.answers.len(), 100);
    }

    proptest! {
        /// Whatever bytes arrive, the resolver answers or returns an error; it never panics.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let v = sample();
            let _ = answer(&v, &[Id::from_u128(1)], &bytes, Transport::Udp);
        }

        /// A valid query with bytes flipped: same.
        #[test]
        fn mutated_queries_never_panic(
            name in "[a-z]{1,10}(\\.[a-z]{1,10}){0,3}",
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        ) {
            let mut bytes = query(&name, RecordType::A);
            for (i, b) in flips {
                let at = i.index(bytes.len());
                bytes[at] ^= b;
            }
            let _ = answer(&sample(), &[Id::from_u128(1)], &bytes, Transport::Tcp);
        }
    }
}
