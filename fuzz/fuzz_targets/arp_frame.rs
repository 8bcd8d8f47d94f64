//! Whatever an AF_PACKET channel hands the ARP probe: any Ethernet frame.
//! The first 10 bytes pick this host's MAC and the VIP. The decoder must
//! never panic, and a claimant it names is another host's MAC, announcing
//! exactly the VIP.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nuvol_vip::packet::arp_claimant;
use std::net::Ipv4Addr;

fuzz_target!(|data: &[u8]| {
    if data.len() < 10 {
        return;
    }
    let mut mine = [0u8; 6];
    mine.copy_from_slice(&data[..6]);
    let ip = Ipv4Addr::new(data[6], data[7], data[8], data[9]);
    let frame = &data[10..];
    if let Some(mac) = arp_claimant(frame, ip, mine) {
        assert_ne!(mac, mine);
        assert_eq!(&frame[22..28], &mac);
        assert_eq!(&frame[28..32], &ip.octets());
    }
});
