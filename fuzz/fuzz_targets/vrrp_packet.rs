//! Whatever a raw socket of protocol 112 hands the agent: a whole IPv4
//! packet. Decoding must never panic; a packet that decodes re-encodes to
//! the same VRRP bytes when its checksum had the RFC 5798 form, and the
//! re-encoding decodes to the same advert.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nuvol_vip::packet::{split_ipv4, Advert, ChecksumForm};

fuzz_target!(|data: &[u8]| {
    // The same two steps as `decode_ipv4`, keeping the VRRP bytes.
    let Ok((src, dst, vrrp)) = split_ipv4(data) else {
        return;
    };
    let Ok((advert, form)) = Advert::decode(vrrp, src, dst) else {
        return;
    };
    let bytes = advert.encode(src, dst);
    let (again, again_form) = match Advert::decode(&bytes, src, dst) {
        Ok(v) => v,
        Err(e) => panic!("re-encoded advert {advert:?} does not decode: {e}"),
    };
    assert_eq!(again, advert);
    assert_eq!(again_form, ChecksumForm::PseudoHeader);
    // Reserved bits in the interval field are dropped on re-encoding.
    if form == ChecksumForm::PseudoHeader && vrrp[4] & 0xf0 == 0 {
        assert_eq!(&bytes[..], vrrp);
    }
});
