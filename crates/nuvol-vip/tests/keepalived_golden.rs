//! Golden tests: keepalived 2.2.7's own VRRPv3 adverts (tcpdump -xx,
//! tests/fixtures) decode, and nuvol's encoder writes the same bytes.

use nuvol_vip::packet::{decode_ipv4, split_ipv4, Advert, ChecksumForm, MULTICAST};
use std::net::Ipv4Addr;

/// A copy of ../shared/fixtures/keepalived-2.2.7-vrrpv3-capture.txt, kept
/// in the crate so a clone alone runs the test.
const CAPTURE: &str = include_str!("fixtures/keepalived-2.2.7-vrrpv3-capture.txt");

/// The frames of a `tcpdump -xx` text: each packet's hex lines joined.
fn frames(text: &str) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("0x") {
            let Some((offset, hex)) = rest.split_once(':') else {
                continue;
            };
            if offset == "0000" {
                out.extend(current.take());
                current = Some(Vec::new());
            }
            let digits: String = hex.split_whitespace().collect();
            let bytes: Vec<u8> = (0..digits.len() / 2)
                .map(|i| u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            if let Some(c) = current.as_mut() {
                c.extend(bytes);
            }
        }
    }
    out.extend(current);
    out
}

#[test]
fn keepalived_adverts_decode_and_reencode_byte_for_byte() {
    let mut adverts = 0;
    for frame in frames(CAPTURE) {
        // Ethernet: 14 bytes, then the EtherType.
        if frame[12..14] != [0x08, 0x00] {
            continue;
        }
        let ip = &frame[14..];
        let (src, dst, advert, form) = decode_ipv4(ip).expect("keepalived's advert decodes");
        assert_eq!(dst, MULTICAST);
        assert_eq!(form, ChecksumForm::PseudoHeader);
        assert_eq!(advert.vrid, 51);
        assert_eq!(advert.interval_cs, 100);
        assert_eq!(advert.addresses, vec![Ipv4Addr::new(10, 99, 0, 100)]);
        let expected_prio = match src.octets()[3] {
            11 => 120,
            12 => 110,
            other => panic!("unexpected source .{other}"),
        };
        assert_eq!(advert.priority, expected_prio);
        let (_, _, vrrp) = split_ipv4(ip).expect("keepalived's IPv4 header");
        assert_eq!(
            Advert::encode(&advert, src, dst),
            vrrp,
            "nuvol's encoding of {advert:?} differs from keepalived's"
        );
        adverts += 1;
    }
    assert_eq!(adverts, 5, "the fixture holds five adverts");
}

#[test]
fn keepalived_arp_frames_are_not_adverts() {
    let arps: Vec<_> = frames(CAPTURE)
        .into_iter()
        .filter(|f| f[12..14] == [0x08, 0x06])
        .collect();
    assert_eq!(arps.len(), 6);
    for f in arps {
        assert!(decode_ipv4(&f[14..]).is_err());
    }
}

#[test]
fn nuvol_gratuitous_arps_are_keepalived_s_byte_for_byte() {
    let arps: Vec<_> = frames(CAPTURE)
        .into_iter()
        .filter(|f| f[12..14] == [0x08, 0x06])
        .collect();
    for f in arps {
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&f[6..12]);
        let ip = std::net::Ipv4Addr::new(f[28], f[29], f[30], f[31]);
        assert_eq!(ip, std::net::Ipv4Addr::new(10, 99, 0, 100));
        assert_eq!(
            nuvol_vip::packet::gratuitous_arp(mac, ip).as_slice(),
            f.as_slice()
        );
    }
}

#[test]
fn keepalived_s_gratuitous_arps_name_it_as_the_vips_holder() {
    let vip = std::net::Ipv4Addr::new(10, 99, 0, 100);
    let arps: Vec<_> = frames(CAPTURE)
        .into_iter()
        .filter(|f| f[12..14] == [0x08, 0x06])
        .collect();
    assert!(!arps.is_empty());
    for f in arps {
        let mut theirs = [0u8; 6];
        theirs.copy_from_slice(&f[6..12]);
        let mine = [2, 0, 0, 0, 0, 1];
        assert_eq!(nuvol_vip::packet::arp_claimant(&f, vip, mine), Some(theirs));
        // Heard by keepalived's own host, or for another address: nobody.
        assert_eq!(nuvol_vip::packet::arp_claimant(&f, vip, theirs), None);
        let other = std::net::Ipv4Addr::new(10, 99, 0, 101);
        assert_eq!(nuvol_vip::packet::arp_claimant(&f, other, mine), None);
    }
}
