//! The cluster-wide catalog as one node sees it. Sans-I/O: the agent feeds
//! it membership (with tags), full lists pulled from nuvol peers, its own
//! services and mDNS imports, plus the time; it answers listings and says
//! which peers need a pull.
//!
//! Sources per node, best first:
//! 1. the full list pulled from a nuvol node whose digest tag ([`DIGEST_TAG`])
//!    matches what was pulled;
//! 2. the Cloudy `services` tag (every serf/avahi-ps node, and a nuvol node
//!    until its full list has arrived).
//!
//! A node that failed or left keeps its services, shown `unavailable`, for
//! `remove_after`; then they are dropped.

use crate::cloudy::{decode_services, CloudyService};
use crate::model::{Filter, ServiceEntry, Source, Status};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

/// The Serf tag in which avahi-ps (and nuvol, for Cloudy peers) stores services.
pub const SERVICES_TAG: &str = "services";
/// The tag in which a nuvol node advertises the digest of its full list.
pub const DIGEST_TAG: &str = "nv-svc";

/// Membership state as far as the catalog cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    Alive,
    Leaving,
    Left,
    Failed,
}

/// One member as reported by the gossip layer.
#[derive(Debug, Clone)]
pub struct MemberView<'a> {
    pub name: &'a str,
    pub addr: IpAddr,
    pub state: NodeState,
    pub tags: &'a BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct NodeEntry {
    state: Option<NodeState>,
    since: Duration,
    /// Raw `services` tag last decoded, and what it gave.
    cloudy_tag: Option<String>,
    cloudy: Vec<ServiceEntry>,
    /// The digest the node advertises.
    digest_tag: Option<String>,
    /// The digest and list last pulled.
    full: Option<(String, Vec<ServiceEntry>)>,
}

impl NodeEntry {
    fn available(&self) -> bool {
        self.state == Some(NodeState::Alive)
    }
    /// The full list once pulled (even one a newer digest is replacing: it
    /// beats the partial tag meanwhile), unless the node stopped advertising
    /// a digest (a plain serf node now); else the Cloudy tag's services.
    fn current(&self) -> &[ServiceEntry] {
        match &self.full {
            Some((_, list)) if self.digest_tag.is_some() => list,
            _ => &self.cloudy,
        }
    }
}

/// What changed after an input (for events and re-deriving DNS/mDNS).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Changed(pub bool);

#[derive(Debug)]
pub struct ClusterCatalog {
    local_name: String,
    local: Vec<ServiceEntry>,
    nodes: BTreeMap<String, NodeEntry>,
    mdns: BTreeMap<(String, String, u16), ServiceEntry>,
    remove_after: Duration,
    /// Malformed `services` tags seen (counted once per distinct value).
    pub bad_tags: u64,
}

impl ClusterCatalog {
    pub fn new(local_name: &str, remove_after: Duration) -> Self {
        ClusterCatalog {
            local_name: local_name.to_owned(),
            local: Vec::new(),
            nodes: BTreeMap::new(),
            mdns: BTreeMap::new(),
            remove_after,
            bad_tags: 0,
        }
    }

    /// This node's own services (with their current health).
    pub fn set_local(&mut self, entries: Vec<ServiceEntry>) -> Changed {
        let changed = self.local != entries;
        self.local = entries;
        Changed(changed)
    }

    pub fn local(&self) -> &[ServiceEntry] {
        &self.local
    }

    /// Update one member (from the member list or a member event).
    pub fn update_member(&mut self, m: &MemberView<'_>, now: Duration) -> Changed {
        if m.name == self.local_name {
            return Changed(false);
        }
        let e = self.nodes.entry(m.name.to_owned()).or_default();
        let mut changed = false;
        if e.state != Some(m.state) {
            e.state = Some(m.state);
            e.since = now;
            changed = true;
        }
        let tag = m.tags.get(SERVICES_TAG);
        if tag != e.cloudy_tag.as_ref() {
            e.cloudy_tag = tag.cloned();
            e.cloudy = match tag {
                None => Vec::new(),
                Some(t) => match decode_services(t) {
                    Ok(d) => {
                        if d.skipped > 0 {
                            tracing::debug!(
                                node = m.name,
                                skipped = d.skipped,
                                "skipped malformed services in tag"
                            );
                        }
                        d.services
                            .into_iter()
                            .map(|s| from_cloudy(m.name, m.addr, s))
                            .collect()
                    }
                    Err(err) => {
                        self.bad_tags += 1;
                        tracing::debug!(node = m.name, %err, "ignoring malformed services tag");
                        Vec::new()
                    }
                },
            };
            changed = true;
        }
        let digest = m.tags.get(DIGEST_TAG);
        if digest != e.digest_tag.as_ref() {
            e.digest_tag = digest.cloned();
            changed = true;
        }
        Changed(changed)
    }

    /// Nodes that advertise a digest different from what was pulled, with
    /// the digest wanted. Only alive nodes.
    pub fn needs_pull(&self) -> Vec<(String, String)> {
        self.nodes
            .iter()
            .filter(|(_, e)| e.available())
            .filter_map(|(n, e)| {
                let want = e.digest_tag.as_ref()?;
                match &e.full {
                    Some((d, _)) if d == want => None,
                    _ => Some((n.clone(), want.clone())),
                }
            })
            .collect()
    }

    /// A full list pulled from `node`. Entries are re-labelled with the
    /// member's name (a peer cannot speak for another node).
    pub fn apply_pull(
        &mut self,
        node: &str,
        digest: String,
        mut entries: Vec<ServiceEntry>,
    ) -> Changed {
        let Some(e) = self.nodes.get_mut(node) else {
            return Changed(false);
        };
        if entries.len() > crate::model::MAX_SERVICES_PER_NODE {
            tracing::debug!(
                node,
                services = entries.len(),
                "peer lists too many services; keeping the first ones"
            );
            entries.truncate(crate::model::MAX_SERVICES_PER_NODE);
        }
        for s in &mut entries {
            s.node = node.to_owned();
            s.source = Source::Nuvol;
        }
        let changed = e.full.as_ref().map(|(_, l)| l) != Some(&entries);
        e.full = Some((digest, entries));
        Changed(changed)
    }

    /// Services imported from mDNS (replaces the whole imported set).
    pub fn set_mdns(&mut self, entries: Vec<ServiceEntry>) -> Changed {
        let map: BTreeMap<_, _> = entries
            .into_iter()
            .map(|e| ((e.node.clone(), e.stype.clone(), e.port), e))
            .collect();
        let changed = map != self.mdns;
        self.mdns = map;
        Changed(changed)
    }

    /// Drop nodes unavailable for longer than `remove_after`.
    pub fn reap(&mut self, now: Duration) -> Changed {
        let before = self.nodes.len();
        let limit = self.remove_after;
        self.nodes
            .retain(|_, e| e.available() || now.saturating_sub(e.since) < limit);
        Changed(before != self.nodes.len())
    }

    /// Forget a member entirely (serf reaped it and we agree).
    pub fn forget(&mut self, node: &str) -> Changed {
        Changed(self.nodes.remove(node).is_some())
    }

    /// All services matching `filter`, sorted by node, type, port.
    pub fn entries(&self, filter: &Filter) -> Vec<ServiceEntry> {
        let mut out: Vec<ServiceEntry> = Vec::new();
        out.extend(self.local.iter().filter(|s| filter.matches(s)).cloned());
        // A node filter looks the node up instead of scanning every node.
        let nodes: Box<dyn Iterator<Item = &NodeEntry>> = match &filter.node {
            Some(n) => Box::new(self.nodes.get(n).into_iter()),
            None => Box::new(self.nodes.values()),
        };
        for e in nodes {
            let list = e.current();
            let avail = e.available();
            for s in list.iter().filter(|s| filter.matches(s)) {
                let mut s = s.clone();
                if !avail {
                    s.status = Status::Unavailable;
                }
                out.push(s);
            }
        }
        out.extend(self.mdns.values().filter(|s| filter.matches(s)).cloned());
        out.sort_by(|a, b| (&a.node, &a.stype, a.port).cmp(&(&b.node, &b.stype, b.port)));
        out
    }

    /// (nodes known, services listed).
    pub fn sizes(&self) -> (usize, usize) {
        let services = self.local.len()
            + self
                .nodes
                .values()
                .map(|e| e.current().len())
                .sum::<usize>()
            + self.mdns.len();
        (self.nodes.len() + 1, services)
    }
}

fn from_cloudy(node: &str, addr: IpAddr, s: CloudyService) -> ServiceEntry {
    let ip = if s.ip.parse::<IpAddr>().is_ok() {
        s.ip
    } else {
        addr.to_string()
    };
    ServiceEntry {
        node: node.to_owned(),
        stype: s.stype,
        description: s.description,
        host: s.host,
        ip,
        port: s.port,
        cloud: s.cloud,
        txt: s.txt,
        status: Status::Passing,
        source: Source::Cloudy,
        checks: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudy::encode_services;

    fn cloudy(node: &str, port: u16) -> CloudyService {
        CloudyService::new("web", "http", port, vec![], node, "guifi", "10.0.0.1").unwrap()
    }

    fn entry(node: &str, t: &str, port: u16, status: Status) -> ServiceEntry {
        ServiceEntry {
            node: node.into(),
            stype: t.into(),
            description: "d".into(),
            host: format!("{node}.c.local"),
            ip: "10.0.0.2".into(),
            port,
            cloud: "c".into(),
            txt: vec![],
            status,
            source: Source::Nuvol,
            checks: vec![],
        }
    }

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn cloudy_tag_then_full_list_then_failure_and_removal() {
        let mut c = ClusterCatalog::new("me", Duration::from_secs(60));
        let addr: IpAddr = "10.0.0.2".parse().unwrap();
        let t = tags(&[
            (SERVICES_TAG, &encode_services(&[cloudy("n1", 80)])),
            (DIGEST_TAG, "abc"),
        ]);
        let m = MemberView {
            name: "n1",
            addr,
            state: NodeState::Alive,
            tags: &t,
        };
        assert!(c.update_member(&m, Duration::ZERO).0);
        assert!(
            !c.update_member(&m, Duration::ZERO).0,
            "same input, no change"
        );
        let all = c.entries(&Filter::default());
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].source, Source::Cloudy);
        assert_eq!(c.needs_pull(), vec![("n1".into(), "abc".into())]);

        let full = (0..100)
            .map(|p| entry("liar", "http", 1000 + p, Status::Passing))
            .collect();
        assert!(c.apply_pull("n1", "abc".into(), full).0);
        assert!(c.needs_pull().is_empty());
        let all = c.entries(&Filter::default());
        assert_eq!(all.len(), 100);
        assert!(all
            .iter()
            .all(|s| s.node == "n1" && s.source == Source::Nuvol));

        let m = MemberView {
            state: NodeState::Failed,
            ..m
        };
        c.update_member(&m, Duration::from_secs(10));
        assert!(c
            .entries(&Filter::default())
            .iter()
            .all(|s| s.status == Status::Unavailable));
        assert!(c.needs_pull().is_empty(), "no pulls from a failed node");
        assert!(!c.reap(Duration::from_secs(69)).0);
        assert!(c.reap(Duration::from_secs(70)).0);
        assert!(c.entries(&Filter::default()).is_empty());
    }

    #[test]
    fn a_peer_cannot_flood_the_catalog() {
        let mut c = ClusterCatalog::new("me", Duration::from_secs(60));
        let addr: IpAddr = "10.0.0.2".parse().unwrap();
        let t = tags(&[(DIGEST_TAG, "d")]);
        c.update_member(
            &MemberView {
                name: "big",
                addr,
                state: NodeState::Alive,
                tags: &t,
            },
            Duration::ZERO,
        );
        let many = (0..2000)
            .map(|p| entry("big", "http", 1 + p, Status::Passing))
            .collect();
        c.apply_pull("big", "d".into(), many);
        assert_eq!(
            c.entries(&Filter::default()).len(),
            crate::model::MAX_SERVICES_PER_NODE
        );
        // A pull from a node that is not a member is ignored.
        assert!(
            !c.apply_pull(
                "stranger",
                "x".into(),
                vec![entry("s", "ssh", 22, Status::Passing)]
            )
            .0
        );
    }

    #[test]
    fn malformed_tags_are_skipped_and_counted() {
        let mut c = ClusterCatalog::new("me", Duration::from_secs(60));
        let addr: IpAddr = "10.0.0.2".parse().unwrap();
        for (i, bad) in ["%%%", "aGVsbG8=", ""].iter().enumerate() {
            let t = tags(&[(SERVICES_TAG, bad)]);
            let name = format!("n{i}");
            c.update_member(
                &MemberView {
                    name: &name,
                    addr,
                    state: NodeState::Alive,
                    tags: &t,
                },
                Duration::ZERO,
            );
        }
        assert_eq!(c.bad_tags, 3);
        assert!(c.entries(&Filter::default()).is_empty());
        let good = tags(&[(SERVICES_TAG, &encode_services(&[cloudy("ok", 22)]))]);
        c.update_member(
            &MemberView {
                name: "ok",
                addr,
                state: NodeState::Alive,
                tags: &good,
            },
            Duration::ZERO,
        );
        assert_eq!(c.entries(&Filter::default()).len(), 1);
    }

    #[test]
    fn filter_and_local() {
        let mut c = ClusterCatalog::new("me", Duration::from_secs(60));
        c.set_local(vec![
            entry("me", "ssh", 22, Status::Critical),
            entry("me", "http", 80, Status::Passing),
        ]);
        let f = Filter {
            stype: Some("HTTP".into()),
            node: None,
        };
        assert_eq!(c.entries(&f).len(), 1);
        let f = Filter {
            stype: None,
            node: Some("me".into()),
        };
        assert_eq!(c.entries(&f).len(), 2);
        assert_eq!(c.sizes(), (1, 2));
    }
}
