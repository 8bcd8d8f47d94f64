//! Tags a peer sets and this node parses: the `vip` tag (every node's VIP
//! states) and the `sync` tag (a Syncthing device id and port). Parsing
//! must never panic; what the vip parser accepts written back the same way
//! parses to the same entries, and an accepted device id is valid in its
//! own compact form.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let vips = nuvol_vip::component::parse_tag("peer", text);
    let again: Vec<String> = vips
        .iter()
        .map(|v| format!("{}:{}:{}", v.address, v.vrid, &v.state[..1]))
        .collect();
    assert_eq!(
        nuvol_vip::component::parse_tag("peer", &again.join(",")),
        vips
    );
    if let Ok((id, _port)) = nuvol_sync::plan::parse_tag(text) {
        assert!(nuvol_sync::plan::DeviceId::parse(&id.compact()).is_ok());
    }
});
