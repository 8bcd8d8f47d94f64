//! Whatever a raw socket of protocol 112 hands the agent: a whole IPv4
//! packet. Decoding must never panic; a packet that decodes re-encodes to
//! the same VRRP bytes when its checksum had the RFC 5798 form, and the
//! re-encoding decodes to the same advert.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nuvol_vip::packet::{decode_ipv4, Advert, ChecksumForm};

fuzz_target!(|data: &[u8]| {
    let Ok((src, dst, advert, form)) = decode_ipv4(data) else {
        return;
    };
    let bytes = advert.encode(src, dst);
    let (again, again_form) = match Advert::decode(&bytes, src, dst) {
        Ok(v) => v,
        Err(e) => panic!("re-encoded advert {advert:?} does not decode: {e}"),
    };
    assert_eq!(again, advert);
    assert_eq!(again_form, ChecksumForm::PseudoHeader);
    if form == ChecksumForm::PseudoHeader {
        let ihl = usize::from(data[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([data[2], data[3]]));
        // Reserved bits in the interval field are dropped on re-encoding.
        if data[ihl + 4] & 0xf0 == 0 {
            assert_eq!(&bytes[..], &data[ihl..total]);
        }
    }
});
