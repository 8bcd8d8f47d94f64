//! One query in, one response out: request parsing (bounded, no trust in
//! the counts a packet claims), name resolution against an [`Index`], and
//! encoding with truncation done in a single pass.
//!
//! Truncation: the encoder is given the size limit (512 bytes, the client's
//! EDNS payload size capped at 4096, or 65535 over TCP) minus the room the
//! OPT record needs; answers are written one at a time and the first that
//! does not fit is rolled back, so the message carries as many whole records
//! as fit, with TC set. The additional section then gets the addresses of
//! the SRV targets that made it, as far as they fit; dropping additional
//! records never sets TC (RFC 2181 §9). The OPT record is written last,
//! into the room kept for it.

use crate::view::{Index, NodeEntry};
use hickory_proto::op::{Edns, Header, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SOA, SRV};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_proto::{ProtoError, ProtoErrorKind};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// Largest UDP response we send, whatever the client's EDNS says.
pub const MAX_UDP_PAYLOAD: u16 = 4096;
/// The UDP payload size we advertise in our OPT record (DNS flag day 2020).
pub const ADVERTISED_PAYLOAD: u16 = 1232;
/// An OPT record without options: root name, type, class, TTL, RDLENGTH.
const OPT_LEN: usize = 11;
/// Records a query may carry beyond its question (an OPT, a cookie, TSIG…).
const MAX_EXTRA_RECORDS: u16 = 8;

/// How the query came in: decides the size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// The zone's fixed parts, from the config.
#[derive(Debug)]
pub(crate) struct Zone {
    /// Lowercase, fully qualified apex.
    pub domain: Name,
    /// The apex's labels, lowercase, in order.
    domain_labels: Vec<Vec<u8>>,
    pub service_ttl: u32,
    pub node_ttl: u32,
    soa: Record,
}

impl Zone {
    pub fn new(domain: &str, service_ttl: u32, node_ttl: u32) -> Result<Zone, String> {
        let trimmed = domain.trim_end_matches('.');
        if trimmed.is_empty() {
            return Err("empty".into());
        }
        let mut name = Name::from_ascii(trimmed.to_ascii_lowercase()).map_err(|e| e.to_string())?;
        name.set_fqdn(true);
        let domain_labels: Vec<Vec<u8>> = name.iter().map(|l| l.to_ascii_lowercase()).collect();
        if domain_labels
            .iter()
            .any(|l| l.is_empty() || l.len() > 63 || l.contains(&b'*'))
        {
            return Err("bad label".into());
        }
        let mk = |first: &str| {
            Name::from_labels([first.as_bytes()])
                .and_then(|n| n.append_domain(&name))
                .map_err(|e| e.to_string())
        };
        let soa = SOA::new(
            mk("ns")?,
            mk("hostmaster")?,
            1,
            3600,
            600,
            86_400,
            // The negative-caching TTL (RFC 2308).
            service_ttl,
        );
        let soa = Record::from_rdata(name.clone(), service_ttl, RData::SOA(soa));
        Ok(Zone {
            domain: name,
            domain_labels,
            service_ttl,
            node_ttl,
            soa,
        })
    }
}

/// Why a packet got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Dropped {
    /// Could not be parsed (or too short to hold a header).
    Malformed(String),
    /// A response, not a query: answering could start a loop.
    NotAQuery,
}

/// What a handled query came to (for the counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub rcode: ResponseCode,
    pub truncated: bool,
}

/// Per-task buffers, reused from query to query.
pub(crate) struct Scratch {
    answers: Vec<Record>,
    authority: Vec<Record>,
    extras: Vec<Record>,
    /// `extra_cut[i]`: how many of `extras` the answers `..=i` need.
    extra_cut: Vec<usize>,
    order: Vec<u32>,
    /// Per node: the `stamp` of the last answer that listed it.
    seen: Vec<u32>,
    stamp: u32,
    rng: SmallRng,
    /// The encoded response.
    pub out: Vec<u8>,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            answers: Vec::new(),
            authority: Vec::new(),
            extras: Vec::new(),
            extra_cut: Vec::new(),
            order: Vec::new(),
            seen: Vec::new(),
            stamp: 0,
            rng: SmallRng::from_entropy(),
            out: Vec::with_capacity(512),
        }
    }
}

/// The parsed parts of a query we use.
struct Request {
    header: Header,
    query: Option<Query>,
    edns: Option<Edns>,
}

fn malformed(e: impl std::fmt::Display) -> Dropped {
    Dropped::Malformed(e.to_string())
}

fn parse(packet: &[u8]) -> Result<Request, Dropped> {
    if packet.len() < Header::len() {
        return Err(malformed(format!(
            "{} bytes, shorter than a header",
            packet.len()
        )));
    }
    let mut d = BinDecoder::new(packet);
    let header = Header::read(&mut d).map_err(malformed)?;
    if header.message_type() != MessageType::Query {
        return Err(Dropped::NotAQuery);
    }
    if header.query_count() != 1 {
        // Answered FORMERR without a question.
        return Ok(Request {
            header,
            query: None,
            edns: None,
        });
    }
    let query = Query::read(&mut d).map_err(malformed)?;
    let others = u32::from(header.answer_count())
        + u32::from(header.name_server_count())
        + u32::from(header.additional_count());
    if others > u32::from(MAX_EXTRA_RECORDS) {
        return Err(malformed(format!("{others} records besides the question")));
    }
    let mut edns = None;
    for i in 0..others {
        let rec = Record::read(&mut d).map_err(malformed)?;
        let in_additional =
            i >= u32::from(header.answer_count()) + u32::from(header.name_server_count());
        if rec.record_type() == RecordType::OPT {
            if !in_additional || edns.is_some() {
                return Err(malformed("misplaced or repeated OPT record"));
            }
            edns = Some(Edns::from(&rec));
        }
    }
    Ok(Request {
        header,
        query: Some(query),
        edns,
    })
}

/// What a name is in the zone.
enum Found<'a> {
    /// Outside the zone.
    Refused,
    NxDomain,
    /// Exists, but has no records itself (the apex, `service.`, `node.`).
    Empty {
        apex: bool,
    },
    /// `TYPE.service.DOMAIN`.
    Service(&'a crate::view::ServiceEntry),
    /// `_TYPE._tcp.service.DOMAIN`.
    ServiceSrv(&'a crate::view::ServiceEntry),
    Node(&'a NodeEntry),
}

/// Lowercases `label` into `buf` and returns it as a str if it is UTF-8.
fn lower<'b>(label: &[u8], buf: &'b mut [u8; 64]) -> Option<&'b str> {
    let out = buf.get_mut(..label.len())?;
    for (o, b) in out.iter_mut().zip(label) {
        *o = b.to_ascii_lowercase();
    }
    std::str::from_utf8(out).ok()
}

fn find<'a>(zone: &Zone, index: &'a Index, name: &Name) -> Found<'a> {
    let n = name.iter().len();
    let d = zone.domain_labels.len();
    if n < d {
        return Found::Refused;
    }
    let mut labels = name.iter();
    let in_zone = labels
        .by_ref()
        .rev()
        .take(d)
        .zip(zone.domain_labels.iter().rev())
        .all(|(l, z)| l.eq_ignore_ascii_case(z));
    if !in_zone {
        return Found::Refused;
    }
    let mut prefix = name.iter().take(n - d);
    let (l0, l1, l2) = (prefix.next(), prefix.next(), prefix.next());
    if prefix.next().is_some() {
        return Found::NxDomain;
    }
    let is = |l: &[u8], s: &str| l.eq_ignore_ascii_case(s.as_bytes());
    let mut buf = [0u8; 64];
    match (l0, l1, l2) {
        (None, _, _) => Found::Empty { apex: true },
        (Some(a), None, _) if is(a, "service") || is(a, "node") => Found::Empty { apex: false },
        (Some(ty), Some(s), None) if is(s, "service") => {
            match lower(ty, &mut buf).and_then(|k| index.services.get(k)) {
                Some(e) => Found::Service(e),
                None => Found::NxDomain,
            }
        }
        (Some(ty), Some(proto), Some(s))
            if is(s, "service")
                && (is(proto, "_tcp") || is(proto, "_udp"))
                && ty.first() == Some(&b'_') =>
        {
            match lower(&ty[1..], &mut buf).and_then(|k| index.services.get(k)) {
                Some(e) => Found::ServiceSrv(e),
                None => Found::NxDomain,
            }
        }
        (Some(node), Some(s), None) if is(s, "node") => {
            match lower(node, &mut buf)
                .and_then(|k| index.node_by_label.get(k))
                .and_then(|&i| index.nodes.get(i))
            {
                Some(e) => Found::Node(e),
                None => Found::NxDomain,
            }
        }
        _ => Found::NxDomain,
    }
}

/// Answers one query packet into `s.out`. `Err` means: send nothing.
pub(crate) fn respond(
    zone: &Zone,
    index: &Index,
    packet: &[u8],
    transport: Transport,
    s: &mut Scratch,
) -> Result<Outcome, Dropped> {
    let req = parse(packet)?;
    let mut header = Header::response_from_request(&req.header);
    header.set_authoritative(true);
    s.answers.clear();
    s.authority.clear();
    s.extras.clear();
    s.extra_cut.clear();

    // Our OPT, when the client sent one: version 0, our payload size.
    let edns = req.edns.as_ref().map(|_| {
        let mut e = Edns::new();
        e.set_max_payload(ADVERTISED_PAYLOAD).set_version(0);
        e
    });
    let limit = match transport {
        Transport::Tcp => usize::from(u16::MAX),
        Transport::Udp => usize::from(
            req.edns
                .as_ref()
                .map_or(512, |e| e.max_payload().clamp(512, MAX_UDP_PAYLOAD)),
        ),
    };

    let rcode = match &req.query {
        None => ResponseCode::FormErr,
        Some(_) if req.header.op_code() != OpCode::Query => ResponseCode::NotImp,
        Some(_) if req.edns.as_ref().is_some_and(|e| e.version() > 0) => ResponseCode::BADVERS,
        Some(q) if !matches!(q.query_class(), DNSClass::IN | DNSClass::ANY) => {
            ResponseCode::Refused
        }
        Some(q) => resolve(zone, index, q, s),
    };
    header.set_response_code(rcode);
    let truncated = encode(&header, req.query.as_ref(), edns.as_ref(), limit, s)
        .map_err(|e| Dropped::Malformed(format!("encoding the response: {e}")))?;
    Ok(Outcome { rcode, truncated })
}

fn a(name: &Name, ttl: u32, ip: std::net::Ipv4Addr) -> Record {
    Record::from_rdata(name.clone(), ttl, RData::A(A(ip)))
}
fn aaaa(name: &Name, ttl: u32, ip: std::net::Ipv6Addr) -> Record {
    Record::from_rdata(name.clone(), ttl, RData::AAAA(AAAA(ip)))
}

/// Fills the sections; returns the response code.
fn resolve(zone: &Zone, index: &Index, q: &Query, s: &mut Scratch) -> ResponseCode {
    let name = q.name();
    let qt = q.query_type();
    let want_a = matches!(qt, RecordType::A | RecordType::ANY);
    let want_aaaa = matches!(qt, RecordType::AAAA | RecordType::ANY);
    let want_srv = matches!(qt, RecordType::SRV | RecordType::ANY);
    match find(zone, index, name) {
        Found::Refused => return ResponseCode::Refused,
        Found::NxDomain => {
            s.authority.push(zone.soa.clone());
            return ResponseCode::NXDomain;
        }
        Found::Empty { apex } => {
            if apex && matches!(qt, RecordType::SOA | RecordType::ANY) {
                let mut soa = zone.soa.clone();
                soa.set_name(name.clone());
                s.answers.push(soa);
            }
        }
        Found::Service(e) => {
            let ttl = zone.service_ttl;
            if want_a {
                shuffled(&mut s.order, e.v4.len(), &mut s.rng);
                for &i in &s.order {
                    s.answers.push(a(name, ttl, e.v4[i as usize]));
                }
            }
            if want_aaaa {
                shuffled(&mut s.order, e.v6.len(), &mut s.rng);
                for &i in &s.order {
                    s.answers.push(aaaa(name, ttl, e.v6[i as usize]));
                }
            }
            if qt == RecordType::SRV {
                srv(zone, index, e, name, s);
            }
        }
        Found::ServiceSrv(e) => {
            if want_srv {
                srv(zone, index, e, name, s);
            }
        }
        Found::Node(n) => {
            let ttl = zone.node_ttl;
            if want_a {
                s.answers.extend(n.v4.iter().map(|ip| a(name, ttl, *ip)));
            }
            if want_aaaa {
                s.answers.extend(n.v6.iter().map(|ip| aaaa(name, ttl, *ip)));
            }
        }
    }
    if s.answers.is_empty() {
        // NODATA: negative-cached through the SOA as well.
        s.authority.push(zone.soa.clone());
    }
    ResponseCode::NoError
}

fn shuffled(order: &mut Vec<u32>, n: usize, rng: &mut SmallRng) {
    order.clear();
    order.extend(0..n as u32);
    order.shuffle(rng);
}

/// SRV answers in random order, the targets' addresses as additional
/// records (each node once, in order of first use).
fn srv(zone: &Zone, index: &Index, e: &crate::view::ServiceEntry, name: &Name, s: &mut Scratch) {
    if s.seen.len() < index.nodes.len() {
        s.seen.resize(index.nodes.len(), 0);
    }
    s.stamp = s.stamp.wrapping_add(1);
    if s.stamp == 0 {
        s.seen.iter_mut().for_each(|x| *x = 0);
        s.stamp = 1;
    }
    shuffled(&mut s.order, e.srv.len(), &mut s.rng);
    for &i in &s.order {
        let (node_ix, port) = e.srv[i as usize];
        let Some(node) = index.nodes.get(node_ix) else {
            continue;
        };
        s.answers.push(Record::from_rdata(
            name.clone(),
            zone.service_ttl,
            RData::SRV(SRV::new(1, 1, port, node.target.clone())),
        ));
        if s.seen[node_ix] != s.stamp {
            s.seen[node_ix] = s.stamp;
            let ttl = zone.node_ttl;
            s.extras
                .extend(node.v4.iter().map(|ip| a(&node.target, ttl, *ip)));
            s.extras
                .extend(node.v6.iter().map(|ip| aaaa(&node.target, ttl, *ip)));
        }
        s.extra_cut.push(s.extras.len());
    }
}

fn truncated_count(r: Result<usize, ProtoError>) -> Result<(usize, bool), ProtoError> {
    match r {
        Ok(n) => Ok((n, false)),
        Err(e) => match e.kind() {
            ProtoErrorKind::NotAllRecordsWritten { count } => Ok((*count, true)),
            _ => Err(e),
        },
    }
}

/// Encodes the response into `s.out` within `limit` bytes; returns whether
/// answers were left out (TC).
fn encode(
    header: &Header,
    query: Option<&Query>,
    edns: Option<&Edns>,
    limit: usize,
    s: &mut Scratch,
) -> Result<bool, ProtoError> {
    s.out.clear();
    let mut enc = BinEncoder::new(&mut s.out);
    let reserve = if edns.is_some() { OPT_LEN } else { 0 };
    enc.set_max_size(u16::try_from(limit - reserve).unwrap_or(u16::MAX));
    let place = enc.place::<Header>()?;
    let qd = match query {
        Some(q) => {
            q.emit(&mut enc)?;
            1
        }
        None => 0,
    };
    let (an, mut tc) = truncated_count(enc.emit_all(s.answers.iter()))?;
    let mut ns = 0;
    if !tc {
        let (n, t) = truncated_count(enc.emit_all(s.authority.iter()))?;
        ns = n;
        tc = t;
    }
    let need = an
        .checked_sub(1)
        .and_then(|i| s.extra_cut.get(i))
        .copied()
        .unwrap_or(0);
    let (mut ar, _) = truncated_count(enc.emit_all(s.extras[..need].iter()))?;
    if let Some(e) = edns {
        enc.set_max_size(u16::try_from(limit).unwrap_or(u16::MAX));
        let mut e = e.clone();
        e.set_rcode_high(header.response_code().high());
        Record::from(&e).emit(&mut enc)?;
        ar += 1;
    }
    let mut h = *header;
    h.set_query_count(qd)
        .set_answer_count(an as u16)
        .set_name_server_count(ns as u16)
        .set_additional_count(ar as u16)
        .set_truncated(tc);
    place.replace(&mut enc, h)?;
    enc.trim();
    Ok(tc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{DnsView, Instance};
    use hickory_proto::op::Message;
    use std::net::IpAddr;

    fn setup(n: usize) -> (Zone, Index) {
        let zone = Zone::new("Nuvol.", 5, 30).unwrap();
        let mut v = DnsView::default();
        for i in 0..n {
            let node = format!("node-{i}");
            let ip: IpAddr = format!("10.0.{}.{}", i / 250, i % 250 + 1).parse().unwrap();
            v.add_node_addr(&node, ip);
            v.add_instance(
                "web",
                Instance {
                    node,
                    ip,
                    port: 8000 + i as u16,
                },
            );
        }
        let ix = Index::build(&v, &zone.domain);
        (zone, ix)
    }

    fn query(name: &str, qt: RecordType, payload: Option<u16>) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(7)
            .add_query(Query::query(Name::from_ascii(name).unwrap(), qt));
        if let Some(p) = payload {
            let mut e = Edns::new();
            e.set_max_payload(p);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    fn ask(zone: &Zone, ix: &Index, pkt: &[u8], t: Transport) -> (Outcome, Message, usize) {
        let mut s = Scratch::default();
        let o = respond(zone, ix, pkt, t, &mut s).unwrap();
        (o, Message::from_vec(&s.out).unwrap(), s.out.len())
    }

    #[test]
    fn small_answer_not_truncated() {
        let (zone, ix) = setup(3);
        let (o, m, _) = ask(
            &zone,
            &ix,
            &query("web.service.nuvol.", RecordType::A, None),
            Transport::Udp,
        );
        assert!(!o.truncated && !m.truncated());
        assert!(m.authoritative());
        assert_eq!(m.answers().len(), 3);
        assert_eq!(m.id(), 7);
    }

    #[test]
    fn truncation_respects_512_edns_and_tcp() {
        let (zone, ix) = setup(100);
        let q = query("web.service.nuvol.", RecordType::A, None);
        let (o, m, len) = ask(&zone, &ix, &q, Transport::Udp);
        assert!(o.truncated && m.truncated());
        assert!(len <= 512, "{len}");
        let fit = m.answers().len();
        // 12 header + 23 question + 16 per A record (compressed owner).
        assert_eq!(fit, (512 - 12 - 23) / 16);
        assert_eq!(m.header().answer_count() as usize, fit);

        let q = query("web.service.nuvol.", RecordType::A, Some(1232));
        let (o, m, len) = ask(&zone, &ix, &q, Transport::Udp);
        assert!(o.truncated);
        assert!(len <= 1232, "{len}");
        assert!(m.answers().len() > fit);
        assert!(m.extensions().is_some(), "OPT kept in the room reserved");

        let q = query("web.service.nuvol.", RecordType::A, Some(4096));
        let (o, m, _) = ask(&zone, &ix, &q, Transport::Udp);
        assert!(!o.truncated);
        assert_eq!(m.answers().len(), 100);

        // A client asking for more than 4096 gets at most 4096.
        let (zone, ix) = setup(400);
        let q = query("web.service.nuvol.", RecordType::A, Some(65000));
        let (o, _, len) = ask(&zone, &ix, &q, Transport::Udp);
        assert!(o.truncated && len <= 4096, "{len}");
        let q = query("web.service.nuvol.", RecordType::A, None);
        let (o, m, _) = ask(&zone, &ix, &q, Transport::Tcp);
        assert!(!o.truncated);
        assert_eq!(m.answers().len(), 400);
    }

    #[test]
    fn srv_truncation_keeps_extras_in_sync() {
        let (zone, ix) = setup(60);
        let q = query("_web._tcp.service.nuvol.", RecordType::SRV, None);
        let (o, m, len) = ask(&zone, &ix, &q, Transport::Udp);
        assert!(o.truncated && len <= 512);
        let targets: Vec<_> = m
            .answers()
            .iter()
            .map(|r| match r.data() {
                RData::SRV(s) => s.target().clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        for x in m.additionals() {
            assert!(
                targets.contains(x.name()),
                "extra {} has no answer",
                x.name()
            );
        }
        let (o, m, _) = ask(&zone, &ix, &q, Transport::Tcp);
        assert!(!o.truncated);
        assert_eq!(m.answers().len(), 60);
        assert_eq!(m.additionals().len(), 60);
    }

    #[test]
    fn names_and_codes() {
        let (zone, ix) = setup(2);
        let rc = |name: &str, qt| ask(&zone, &ix, &query(name, qt, None), Transport::Udp).1;
        assert_eq!(
            rc("nope.service.nuvol.", RecordType::A).response_code(),
            ResponseCode::NXDomain
        );
        let m = rc("nope.service.nuvol.", RecordType::A);
        assert_eq!(m.name_servers().len(), 1);
        assert_eq!(m.name_servers()[0].ttl(), 5);
        assert_eq!(
            rc("example.com.", RecordType::A).response_code(),
            ResponseCode::Refused
        );
        assert_eq!(
            rc("nuvol.example.", RecordType::A).response_code(),
            ResponseCode::Refused
        );
        let m = rc("WEB.Service.NUVOL", RecordType::AAAA);
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert!(m.answers().is_empty());
        let m = rc("Node-1.node.nuvol.", RecordType::A);
        assert_eq!(m.answers().len(), 1);
        assert_eq!(m.answers()[0].ttl(), 30);
        assert_eq!(
            rc("service.nuvol.", RecordType::A).response_code(),
            ResponseCode::NoError
        );
        let m = rc("nuvol.", RecordType::SOA);
        assert_eq!(m.answers().len(), 1);
        assert_eq!(
            rc("a.b.web.service.nuvol.", RecordType::A).response_code(),
            ResponseCode::NXDomain
        );
    }

    #[test]
    fn malformed_and_odd_packets() {
        let (zone, ix) = setup(1);
        let mut s = Scratch::default();
        for bad in [&[][..], &[1, 2, 3], &[0; 11]] {
            assert!(matches!(
                respond(&zone, &ix, bad, Transport::Udp, &mut s),
                Err(Dropped::Malformed(_))
            ));
        }
        // Header claiming one question, none present.
        let h = [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        assert!(respond(&zone, &ix, &h, Transport::Udp, &mut s).is_err());
        // A response is never answered.
        let mut r = query("web.service.nuvol.", RecordType::A, None);
        r[2] |= 0x80;
        assert_eq!(
            respond(&zone, &ix, &r, Transport::Udp, &mut s),
            Err(Dropped::NotAQuery)
        );
        // Huge claimed record counts: rejected before reading.
        let mut r = query("web.service.nuvol.", RecordType::A, None);
        r[10] = 0xff;
        r[11] = 0xff;
        assert!(respond(&zone, &ix, &r, Transport::Udp, &mut s).is_err());
        // No question: FORMERR.
        let h = [0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let o = respond(&zone, &ix, &h, Transport::Udp, &mut s).unwrap();
        assert_eq!(o.rcode, ResponseCode::FormErr);
        // EDNS version 1: BADVERS, carried in the OPT's high bits.
        let mut m =
            Message::from_vec(&query("web.service.nuvol.", RecordType::A, Some(1232))).unwrap();
        if let Some(e) = m.extensions_mut() {
            e.set_version(1);
        }
        let o = respond(&zone, &ix, &m.to_vec().unwrap(), Transport::Udp, &mut s).unwrap();
        assert_eq!(o.rcode, ResponseCode::BADVERS);
        let back = Message::from_vec(&s.out).unwrap();
        // 16 reads back as BADSIG, its TSIG-era twin.
        assert_eq!(u16::from(back.response_code()), 16);
    }
}
