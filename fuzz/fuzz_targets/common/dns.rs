//! What both DNS fuzz targets share: the catalog they answer from and the
//! check every answer must pass.
use hickory_proto::op::{Message, MessageType};
use nuvol_dns::{DnsView, Instance};
use std::net::IpAddr;

/// `answer` to the query `data` must be a response with the query's id,
/// at most one question, within `limit` bytes, that `hickory_proto` decodes.
pub fn check_answer(data: &[u8], answer: &[u8], limit: usize) {
    assert!(data.len() >= 12, "answered a packet shorter than a header");
    assert!(
        answer.len() <= limit,
        "{}-byte answer (limit {limit})",
        answer.len()
    );
    let m = Message::from_vec(answer).expect("the answer decodes");
    assert_eq!(m.message_type(), MessageType::Response);
    assert_eq!(m.id().to_be_bytes(), [data[0], data[1]], "answer id");
    assert!(m.queries().len() <= 1);
}

/// Enough to reach every branch: a type larger than 512 bytes of answers
/// (truncation), v4 and v6 and v4-mapped addresses, node names that need
/// `label` (merged, non-ASCII, empty), a node with no listed address.
pub fn view() -> DnsView {
    let mut v = DnsView::default();
    let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
    for n in 0..60u32 {
        let node = format!("node-{n}");
        let addr = IpAddr::from([10, 0, (n / 250) as u8, (n % 250 + 1) as u8]);
        v.add_node_addr(&node, addr);
        v.add_instance(
            "http",
            Instance {
                node: node.clone(),
                ip: addr,
                port: 80,
            },
        );
    }
    for (node, addr, port) in [
        ("v6-node", "fd00::1", 443),
        ("v6-node", "fd00::2", 8443),
        ("mapped", "::ffff:10.9.9.9", 22),
        ("a_b", "10.1.0.1", 22),
        ("a.b", "10.1.0.2", 22),
        ("Ünïcode", "10.1.0.3", 22),
        ("", "10.1.0.4", 22),
        ("unlisted", "10.1.0.5", 2222),
    ] {
        if node != "unlisted" {
            v.add_node_addr(node, ip(addr));
        }
        v.add_instance(
            "ssh",
            Instance {
                node: node.into(),
                ip: ip(addr),
                port,
            },
        );
    }
    v.add_instance(
        "Mixed_Case",
        Instance {
            node: "node-1".into(),
            ip: ip("10.0.0.2"),
            port: 9,
        },
    );
    v.services.insert("empty".into(), Vec::new());
    v
}
