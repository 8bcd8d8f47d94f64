//! VRRPv3 advertisements for IPv4 (RFC 5798 section 5), as carried in an
//! IPv4 packet with protocol 112.
//!
//! Written by hand: the message is 8 bytes plus addresses, and no
//! well-kept crate encodes VRRPv3 (`pnet_packet` has no VRRP; the VRRP
//! crates on crates.io are unmaintained or v2-only).

use std::net::Ipv4Addr;

/// IP protocol number of VRRP.
pub const PROTO_VRRP: u8 = 112;
/// The IPv4 multicast group of VRRP.
pub const MULTICAST: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The TTL every advert must carry (and be received with).
pub const TTL: u8 = 255;
/// Largest advertisement interval the 12-bit field holds, in centiseconds.
pub const MAX_INTERVAL_CS: u16 = 0x0fff;

const HEADER: usize = 8;

/// A decoded advertisement (VRRP header and addresses, without the IP header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    pub vrid: u8,
    pub priority: u8,
    /// Max advertisement interval in centiseconds (12 bits).
    pub interval_cs: u16,
    pub addresses: Vec<Ipv4Addr>,
}

/// Which checksum form a received advert used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumForm {
    /// RFC 5798: with the IPv4 pseudo-header.
    PseudoHeader,
    /// keepalived's `v3_checksum_as_v2`: over the VRRP message only.
    AsV2,
}

/// Why bytes are not a valid advert (each one is counted by the caller).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("truncated: {0} bytes")]
    Truncated(usize),
    #[error("not VRRP version 3 (version {0})")]
    Version(u8),
    #[error("not an advertisement (type {0})")]
    Type(u8),
    #[error("bad checksum")]
    Checksum,
    #[error("TTL {0}, not 255")]
    Ttl(u8),
    #[error("address count {count} does not match the length {len}")]
    Count { count: u8, len: usize },
    #[error("interval 0")]
    ZeroInterval,
    #[error("not IPv4 protocol 112")]
    NotVrrp,
}

impl PacketError {
    /// A short, fixed label for metrics (`reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            PacketError::Truncated(_) => "truncated",
            PacketError::Version(_) => "version",
            PacketError::Type(_) => "type",
            PacketError::Checksum => "checksum",
            PacketError::Ttl(_) => "ttl",
            PacketError::Count { .. } => "count",
            PacketError::ZeroInterval => "interval",
            PacketError::NotVrrp => "not_vrrp",
        }
    }
}

/// The Internet checksum (RFC 1071) of the concatenated parts.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &b in *part {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, len: usize) -> [u8; 12] {
    let mut p = [0u8; 12];
    p[..4].copy_from_slice(&src.octets());
    p[4..8].copy_from_slice(&dst.octets());
    p[9] = PROTO_VRRP;
    // The length is at most 8 + 255 * 4 bytes: it fits.
    p[10..].copy_from_slice(&(len as u16).to_be_bytes());
    p
}

impl Advert {
    /// The VRRP message (header + addresses) with its RFC 5798 checksum
    /// computed over the pseudo-header `src`/`dst`. At most 255 addresses
    /// are written (the count is one byte); the interval is clamped to
    /// 12 bits.
    pub fn encode(&self, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
        let addrs = &self.addresses[..self.addresses.len().min(255)];
        let mut out = Vec::with_capacity(HEADER + 4 * addrs.len());
        out.push(0x31); // version 3, type 1 (advertisement)
        out.push(self.vrid);
        out.push(self.priority);
        out.push(addrs.len() as u8);
        out.extend_from_slice(&self.interval_cs.min(MAX_INTERVAL_CS).to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        for a in addrs {
            out.extend_from_slice(&a.octets());
        }
        let sum = checksum(&[&pseudo_header(src, dst, out.len()), &out]);
        out[6..8].copy_from_slice(&sum.to_be_bytes());
        out
    }

    /// Decode a VRRP message (no IP header) received from `src` sent to
    /// `dst`. Bytes after the addresses (the IP payload's padding) are
    /// not allowed: the count must match the length exactly.
    pub fn decode(
        bytes: &[u8],
        src: Ipv4Addr,
        dst: Ipv4Addr,
    ) -> Result<(Advert, ChecksumForm), PacketError> {
        if bytes.len() < HEADER {
            return Err(PacketError::Truncated(bytes.len()));
        }
        let version = bytes[0] >> 4;
        if version != 3 {
            return Err(PacketError::Version(version));
        }
        let kind = bytes[0] & 0x0f;
        if kind != 1 {
            return Err(PacketError::Type(kind));
        }
        let count = bytes[3];
        if bytes.len() != HEADER + 4 * usize::from(count) {
            return Err(PacketError::Count {
                count,
                len: bytes.len(),
            });
        }
        // A correct checksum makes the sum over message (and pseudo-header)
        // zero.
        let form = if checksum(&[&pseudo_header(src, dst, bytes.len()), bytes]) == 0 {
            ChecksumForm::PseudoHeader
        } else if checksum(&[bytes]) == 0 {
            ChecksumForm::AsV2
        } else {
            return Err(PacketError::Checksum);
        };
        let interval_cs = u16::from_be_bytes([bytes[4], bytes[5]]) & MAX_INTERVAL_CS;
        if interval_cs == 0 {
            return Err(PacketError::ZeroInterval);
        }
        let addresses = bytes[HEADER..]
            .chunks_exact(4)
            .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
            .collect();
        Ok((
            Advert {
                vrid: bytes[1],
                priority: bytes[2],
                interval_cs,
                addresses,
            },
            form,
        ))
    }
}

/// The IPv4 header of a packet as a raw socket of protocol 112 returns
/// it: checks version, protocol, TTL and lengths, and gives the source,
/// the destination and the VRRP message (options and trailing bytes cut).
pub fn split_ipv4(bytes: &[u8]) -> Result<(Ipv4Addr, Ipv4Addr, &[u8]), PacketError> {
    if bytes.len() < 20 {
        return Err(PacketError::Truncated(bytes.len()));
    }
    if bytes[0] >> 4 != 4 || bytes[9] != PROTO_VRRP {
        return Err(PacketError::NotVrrp);
    }
    let ihl = usize::from(bytes[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    if ihl < 20 || total < ihl || total > bytes.len() {
        return Err(PacketError::Truncated(bytes.len()));
    }
    if bytes[8] != TTL {
        return Err(PacketError::Ttl(bytes[8]));
    }
    let src = Ipv4Addr::new(bytes[12], bytes[13], bytes[14], bytes[15]);
    let dst = Ipv4Addr::new(bytes[16], bytes[17], bytes[18], bytes[19]);
    Ok((src, dst, &bytes[ihl..total]))
}

/// A whole IPv4 packet ([`split_ipv4`]) decoded as an advert.
pub fn decode_ipv4(
    bytes: &[u8],
) -> Result<(Ipv4Addr, Ipv4Addr, Advert, ChecksumForm), PacketError> {
    let (src, dst, vrrp) = split_ipv4(bytes)?;
    let (advert, form) = Advert::decode(vrrp, src, dst)?;
    Ok((src, dst, advert, form))
}

/// A gratuitous ARP for `ip` from `mac`, as keepalived sends it: an
/// Ethernet broadcast ARP request whose sender and target are both `ip`
/// (target hardware address all ones).
pub fn gratuitous_arp(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    // Ethernet, IPv4, lengths 6 and 4, request.
    f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    f[32..38].copy_from_slice(&[0xff; 6]);
    f[38..42].copy_from_slice(&ip.octets());
    f
}

/// An ARP probe for `ip` from `mac` (RFC 5227 section 2.1.1): a broadcast
/// request with sender address 0.0.0.0, so that no host's ARP cache
/// learns anything from it, which a host holding `ip` answers.
pub fn arp_probe(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f[22..28].copy_from_slice(&mac);
    // Sender IP 0.0.0.0 and target hardware address zero (bytes 28..38).
    f[38..42].copy_from_slice(&ip.octets());
    f
}

/// The hardware address of another host that claims `ip` in an Ethernet
/// frame: an ARP reply or request (a gratuitous one) for IPv4 over Ethernet
/// whose sender is `ip` and whose sender MAC is not `mine`. `None` for any
/// other frame, malformed ones included.
pub fn arp_claimant(frame: &[u8], ip: Ipv4Addr, mine: [u8; 6]) -> Option<[u8; 6]> {
    if frame.len() < 42 || frame[12..14] != [0x08, 0x06] {
        return None;
    }
    let arp = &frame[14..42];
    // Ethernet (1), IPv4 (0x0800), lengths 6 and 4, request (1) or reply (2).
    if arp[..6] != [0, 1, 8, 0, 6, 4] || !matches!(arp[6..8], [0, 1] | [0, 2]) {
        return None;
    }
    let sha: [u8; 6] = arp[8..14].try_into().ok()?;
    let spa = Ipv4Addr::new(arp[14], arp[15], arp[16], arp[17]);
    (spa == ip && sha != mine).then_some(sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 11);

    fn advert() -> Advert {
        Advert {
            vrid: 51,
            priority: 120,
            interval_cs: 100,
            addresses: vec![Ipv4Addr::new(10, 99, 0, 100)],
        }
    }

    #[test]
    fn round_trip() {
        let bytes = advert().encode(SRC, MULTICAST);
        let (back, form) = Advert::decode(&bytes, SRC, MULTICAST).unwrap();
        assert_eq!(back, advert());
        assert_eq!(form, ChecksumForm::PseudoHeader);
    }

    #[test]
    fn the_v2_checksum_form_is_accepted_and_named() {
        let mut bytes = advert().encode(SRC, MULTICAST);
        bytes[6..8].copy_from_slice(&[0, 0]);
        let sum = checksum(&[&bytes]);
        bytes[6..8].copy_from_slice(&sum.to_be_bytes());
        let (_, form) = Advert::decode(&bytes, SRC, MULTICAST).unwrap();
        assert_eq!(form, ChecksumForm::AsV2);
    }

    #[test]
    fn every_error() {
        let good = advert().encode(SRC, MULTICAST);
        assert_eq!(
            Advert::decode(&good[..7], SRC, MULTICAST),
            Err(PacketError::Truncated(7))
        );
        let mut v2 = good.clone();
        v2[0] = 0x21;
        assert_eq!(
            Advert::decode(&v2, SRC, MULTICAST),
            Err(PacketError::Version(2))
        );
        let mut t = good.clone();
        t[0] = 0x32;
        assert_eq!(
            Advert::decode(&t, SRC, MULTICAST),
            Err(PacketError::Type(2))
        );
        let mut c = good.clone();
        c[3] = 2;
        assert_eq!(
            Advert::decode(&c, SRC, MULTICAST),
            Err(PacketError::Count { count: 2, len: 12 })
        );
        let mut sum = good.clone();
        sum[7] ^= 1;
        assert_eq!(
            Advert::decode(&sum, SRC, MULTICAST),
            Err(PacketError::Checksum)
        );
        // The pseudo-header binds the source: another one fails the check.
        assert_eq!(
            Advert::decode(&good, Ipv4Addr::new(10, 99, 0, 12), MULTICAST),
            Err(PacketError::Checksum)
        );
        let zero = Advert {
            interval_cs: 0,
            ..advert()
        }
        .encode(SRC, MULTICAST);
        assert_eq!(
            Advert::decode(&zero, SRC, MULTICAST),
            Err(PacketError::ZeroInterval)
        );
    }

    fn ipv4(ttl: u8, proto: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0xc0];
        p.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[0, 1, 0, 0, ttl, proto, 0, 0]);
        p.extend_from_slice(&SRC.octets());
        p.extend_from_slice(&MULTICAST.octets());
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn ipv4_checks() {
        let payload = advert().encode(SRC, MULTICAST);
        let (src, dst, a, _) = decode_ipv4(&ipv4(255, 112, &payload)).unwrap();
        assert_eq!((src, dst, a), (SRC, MULTICAST, advert()));
        assert_eq!(
            decode_ipv4(&ipv4(64, 112, &payload)),
            Err(PacketError::Ttl(64))
        );
        assert_eq!(
            decode_ipv4(&ipv4(255, 17, &payload)),
            Err(PacketError::NotVrrp)
        );
        let mut short = ipv4(255, 112, &payload);
        short.truncate(25);
        assert_eq!(decode_ipv4(&short), Err(PacketError::Truncated(25)));
        assert_eq!(decode_ipv4(&[0x45; 3]), Err(PacketError::Truncated(3)));
    }

    #[test]
    fn interval_is_clamped_to_twelve_bits() {
        let bytes = Advert {
            interval_cs: u16::MAX,
            ..advert()
        }
        .encode(SRC, MULTICAST);
        let (a, _) = Advert::decode(&bytes, SRC, MULTICAST).unwrap();
        assert_eq!(a.interval_cs, MAX_INTERVAL_CS);
    }

    #[test]
    fn an_arp_probe_asks_for_the_address_without_a_sender_address() {
        let mac = [2, 0, 0, 0, 0, 9];
        let vip = Ipv4Addr::new(10, 99, 0, 100);
        let p = arp_probe(mac, vip);
        assert_eq!(&p[..6], &[0xff; 6]);
        assert_eq!(&p[20..22], &[0, 1], "a request");
        assert_eq!(&p[28..32], &[0; 4], "sender 0.0.0.0");
        assert_eq!(&p[32..38], &[0; 6]);
        assert_eq!(&p[38..42], &vip.octets());
        // Our own probe and our own gratuitous ARPs name no other host.
        assert_eq!(arp_claimant(&p, vip, mac), None);
        assert_eq!(arp_claimant(&gratuitous_arp(mac, vip), vip, mac), None);
    }

    #[test]
    fn another_hosts_reply_or_gratuitous_arp_names_it() {
        let mine = [2, 0, 0, 0, 0, 9];
        let other = [2, 0, 0, 0, 0, 7];
        let vip = Ipv4Addr::new(10, 99, 0, 100);
        // A reply: sender `other` at `vip`, to us.
        let mut reply = gratuitous_arp(other, vip);
        reply[20..22].copy_from_slice(&[0, 2]);
        reply[32..38].copy_from_slice(&mine);
        assert_eq!(arp_claimant(&reply, vip, mine), Some(other));
        assert_eq!(
            arp_claimant(&gratuitous_arp(other, vip), vip, mine),
            Some(other)
        );
        // Another address, another operation, truncated, not ARP.
        assert_eq!(
            arp_claimant(&reply, Ipv4Addr::new(10, 99, 0, 101), mine),
            None
        );
        let mut rarp = reply;
        rarp[20..22].copy_from_slice(&[0, 3]);
        assert_eq!(arp_claimant(&rarp, vip, mine), None);
        assert_eq!(arp_claimant(&reply[..41], vip, mine), None);
        let mut ip = reply;
        ip[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(arp_claimant(&ip, vip, mine), None);
    }
}
