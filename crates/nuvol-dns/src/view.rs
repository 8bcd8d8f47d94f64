//! What the server answers from: the agent's [`DnsView`] snapshot, and the
//! [`Index`] the server derives from it once per snapshot (DNS labels,
//! de-duplicated address lists, pre-built SRV target names), so the hot path
//! only looks things up.

use hickory_proto::rr::Name;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One healthy instance of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// The node publishing it (its `NODE.node.DOMAIN` name is `label(node)`).
    pub node: String,
    /// Where the service listens.
    pub ip: IpAddr,
    pub port: u16,
}

/// A snapshot the agent rebuilds whenever the catalog changes and sends on
/// the server's `watch` channel. Only healthy instances are put in it.
#[derive(Debug, Default, Clone)]
pub struct DnsView {
    /// Key: lowercased avahi-ps service type, e.g. `"http"`. A type with an
    /// empty list is the same as an absent one (NXDOMAIN).
    pub services: HashMap<String, Vec<Instance>>,
    /// Key: lowercased node name. Its addresses answer `NODE.node.DOMAIN`
    /// and fill the additional section of SRV answers.
    pub nodes: HashMap<String, Vec<IpAddr>>,
}

impl DnsView {
    /// Adds an instance under `service_type` (lowercased).
    pub fn add_instance(&mut self, service_type: &str, instance: Instance) {
        self.services
            .entry(service_type.to_ascii_lowercase())
            .or_default()
            .push(instance);
    }

    /// Adds an address to `node` (lowercased).
    pub fn add_node_addr(&mut self, node: &str, ip: IpAddr) {
        self.nodes
            .entry(node.to_ascii_lowercase())
            .or_default()
            .push(ip);
    }
}

/// Make a node name (or service type) a valid DNS label: ASCII lowercase,
/// every byte outside `[a-z0-9-]` becomes `-`, leading and trailing `-`
/// trimmed, at most 63 bytes. A name with nothing usable left (`""`, `"__"`,
/// `"ñ"`) gets a stable stand-in, `x-` and 8 hex digits of a hash of the
/// name, so the result is never empty. Distinct names can map to the same
/// label (`a_b` and `a.b`); the server then merges them.
pub fn label(name: &str) -> String {
    let mut out = String::with_capacity(name.len().min(63));
    for c in name.chars() {
        let c = c.to_ascii_lowercase();
        out.push(
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
                c
            } else {
                '-'
            },
        );
    }
    let trimmed = out.trim_matches('-');
    let mut s = trimmed[..trimmed.len().min(63)]
        .trim_end_matches('-')
        .to_owned();
    if s.is_empty() {
        // FNV-1a: stable across runs and platforms, unlike std's hasher.
        let mut h: u32 = 0x811c_9dc5;
        for b in name.bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        s = format!("x-{h:08x}");
    }
    s
}

/// A node as the server answers it.
#[derive(Debug)]
pub(crate) struct NodeEntry {
    /// `LABEL.node.DOMAIN.`: the owner of its A/AAAA records and SRV target.
    pub target: Name,
    pub v4: Vec<Ipv4Addr>,
    pub v6: Vec<Ipv6Addr>,
    /// Listed in the view's `nodes` with addresses; otherwise its addresses
    /// are its instances'.
    pub listed: bool,
}

/// A service type as the server answers it: de-duplicated.
#[derive(Debug, Default)]
pub(crate) struct ServiceEntry {
    pub v4: Vec<Ipv4Addr>,
    pub v6: Vec<Ipv6Addr>,
    /// (index into `Index::nodes`, port), distinct.
    pub srv: Vec<(usize, u16)>,
}

/// The prepared form of one [`DnsView`].
#[derive(Debug, Default)]
pub(crate) struct Index {
    pub services: HashMap<String, ServiceEntry>,
    pub node_by_label: HashMap<String, usize>,
    pub nodes: Vec<NodeEntry>,
}

fn push_ip(v4: &mut Vec<Ipv4Addr>, v6: &mut Vec<Ipv6Addr>, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => {
            if !v4.contains(&a) {
                v4.push(a)
            }
        }
        IpAddr::V6(a) => {
            if let Some(a4) = a.to_ipv4_mapped() {
                if !v4.contains(&a4) {
                    v4.push(a4)
                }
            } else if !v6.contains(&a) {
                v6.push(a)
            }
        }
    }
}

impl Index {
    /// `domain` is the zone apex (lowercase, fully qualified).
    pub fn build(view: &DnsView, domain: &Name) -> Index {
        let mut ix = Index::default();
        // Sorted, so merged labels and hash-order never change the answers.
        let mut nodes: Vec<_> = view.nodes.iter().collect();
        nodes.sort_by(|a, b| a.0.cmp(b.0));
        for (name, addrs) in nodes {
            let Some(i) = ix.node(name, domain) else {
                continue;
            };
            let n = &mut ix.nodes[i];
            for ip in addrs {
                push_ip(&mut n.v4, &mut n.v6, *ip);
            }
            n.listed = !n.v4.is_empty() || !n.v6.is_empty();
        }
        let mut services: Vec<_> = view.services.iter().collect();
        services.sort_by(|a, b| a.0.cmp(b.0));
        for (ty, instances) in services {
            if instances.is_empty() {
                continue;
            }
            let key = label(ty);
            let mut entry = ix.services.remove(&key).unwrap_or_default();
            for inst in instances {
                push_ip(&mut entry.v4, &mut entry.v6, inst.ip);
                let Some(n) = ix.node(&inst.node, domain) else {
                    continue;
                };
                if !ix.nodes[n].listed {
                    // A node the view lists no addresses for: its instance's
                    // address stands in, so the SRV target resolves.
                    let node = &mut ix.nodes[n];
                    push_ip(&mut node.v4, &mut node.v6, inst.ip);
                }
                if !entry.srv.contains(&(n, inst.port)) {
                    entry.srv.push((n, inst.port));
                }
            }
            ix.services.insert(key, entry);
        }
        ix
    }

    /// The node entry for `name`, created if new; None if its name can't be
    /// built (cannot happen for a label under a valid domain).
    fn node(&mut self, name: &str, domain: &Name) -> Option<usize> {
        let l = label(name);
        match self.node_by_label.entry(l) {
            Entry::Occupied(e) => Some(*e.get()),
            Entry::Vacant(e) => {
                let target = Name::from_labels([e.key().as_bytes(), b"node".as_slice()])
                    .and_then(|n| n.append_domain(domain));
                let target = match target {
                    Ok(t) => t,
                    Err(err) => {
                        tracing::debug!(node = %name, %err, "dns: node name not representable");
                        return None;
                    }
                };
                self.nodes.push(NodeEntry {
                    target,
                    v4: Vec::new(),
                    v6: Vec::new(),
                    listed: false,
                });
                Some(*e.insert(self.nodes.len() - 1))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_rules() {
        assert_eq!(label("Web-01"), "web-01");
        assert_eq!(label("my_node.local"), "my-node-local");
        assert_eq!(label("--a--"), "a");
        assert_eq!(label("Ünïcode"), "n-code");
        let long = "a".repeat(100);
        assert_eq!(label(&long).len(), 63);
        // Cut at 63, then trailing '-' trimmed.
        let edge = format!("{}_b", "a".repeat(62));
        assert_eq!(label(&edge), "a".repeat(62));
        for odd in ["", "__", "ñ", "..."] {
            let l = label(odd);
            assert!(l.starts_with("x-") && l.len() == 10, "{odd:?} -> {l:?}");
            assert_eq!(l, label(odd), "stable");
        }
        assert_ne!(label("__"), label("..."));
        for s in ["Hello World", "x", "ñ", "a.b.c", &long] {
            let l = label(s);
            assert!(!l.is_empty() && l.len() <= 63);
            assert!(l
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
            assert!(!l.starts_with('-') && !l.ends_with('-'));
        }
    }

    #[test]
    fn index_dedups_and_synthesizes_nodes() {
        let domain = Name::from_ascii("nuvol.").unwrap();
        let mut v = DnsView::default();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        v.add_node_addr("Alpha", ip("10.0.0.1"));
        v.add_node_addr("alpha", ip("10.0.0.1"));
        for port in [80, 80, 81] {
            v.add_instance(
                "HTTP",
                Instance {
                    node: "alpha".into(),
                    ip: ip("10.0.0.1"),
                    port,
                },
            );
        }
        v.add_instance(
            "http",
            Instance {
                node: "beta".into(),
                ip: ip("fd00::2"),
                port: 80,
            },
        );
        v.add_instance(
            "http",
            Instance {
                node: "beta".into(),
                ip: ip("fd00::3"),
                port: 81,
            },
        );
        v.services.insert("empty".into(), Vec::new());
        let ix = Index::build(&v, &domain);
        let http = &ix.services["http"];
        assert_eq!(http.v4, vec![Ipv4Addr::new(10, 0, 0, 1)]);
        assert_eq!(http.v6.len(), 2);
        assert_eq!(http.srv.len(), 4);
        assert!(!ix.services.contains_key("empty"));
        let beta = &ix.nodes[ix.node_by_label["beta"]];
        assert_eq!(beta.v6.len(), 2, "both instance addresses stand in");
        assert_eq!(beta.target.to_ascii(), "beta.node.nuvol.");
        let alpha = &ix.nodes[ix.node_by_label["alpha"]];
        assert_eq!(alpha.v4.len(), 1);
    }
}
