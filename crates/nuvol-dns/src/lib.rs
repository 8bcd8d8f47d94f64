//! nuvol's DNS server for the community service catalog.
//!
//! The agent keeps a [`DnsView`] (healthy instances by service type, node
//! addresses) in a `tokio::sync::watch` channel and rebuilds it whenever the
//! catalog changes; [`DnsServer`] answers from whatever the channel holds at
//! the moment a query arrives. Names served, case-insensitive, with or
//! without the trailing dot (`DOMAIN` is [`DnsConfig::domain`], `nuvol` by
//! default):
//!
//! | name | type | answer |
//! | --- | --- | --- |
//! | `TYPE.service.DOMAIN` | A / AAAA | the addresses of the type's healthy instances (the other family: NOERROR, no answers) |
//! | `TYPE.service.DOMAIN`, `_TYPE._tcp.service.DOMAIN` (`_udp` too) | SRV | priority 1, weight 1, the port, target `NODE.node.DOMAIN.`; the targets' A/AAAA records in the additional section |
//! | `NODE.node.DOMAIN` | A / AAAA | the node's addresses ([`label`] makes node names labels) |
//! | `DOMAIN` | SOA | the zone's SOA |
//! | `service.DOMAIN`, `node.DOMAIN`, other types on existing names | any | NOERROR, no answers, SOA in authority |
//! | anything else under `DOMAIN`, a type with no healthy instance | any | NXDOMAIN, SOA in authority |
//! | names outside `DOMAIN` | any | REFUSED |
//!
//! ANY gets the A and AAAA records (plus SRV on the `_TYPE._tcp` form).
//! Service records have [`DnsConfig::service_ttl`], which is also the
//! negative-caching TTL (the SOA's minimum and TTL); node records have
//! [`DnsConfig::node_ttl`]. Answers are authoritative (AA) and their order is
//! shuffled per response, for load spreading as Consul does.
//!
//! UDP responses are limited to 512 bytes, or the client's EDNS payload size
//! (at most 4096): a longer answer carries as many whole records as fit and
//! sets TC, and the same query over TCP (2-byte length framing, several
//! queries per connection, idle timeout, capped connection count) gets
//! everything. An EDNS OPT record is echoed when the client sent one.
//! Malformed packets are counted ([`DnsStats::dropped_malformed`]) and
//! dropped, never answered and never a panic.
//!
//! ```no_run
//! # async fn demo() -> Result<(), nuvol_dns::DnsError> {
//! use nuvol_dns::{DnsConfig, DnsServer, DnsView};
//! use std::sync::Arc;
//! let (tx, rx) = tokio::sync::watch::channel(Arc::new(DnsView::default()));
//! let server = DnsServer::bind(DnsConfig::default(), rx).await?;
//! let stats = server.stats();
//! tokio::spawn(server.run(std::future::pending()));
//! // Later, whenever the catalog changes:
//! let _ = tx.send(Arc::new(DnsView::default()));
//! # let _ = stats; Ok(()) }
//! ```

mod answer;
pub mod component;
mod server;
mod view;

pub use answer::{ADVERTISED_PAYLOAD, MAX_UDP_PAYLOAD};

/// The query handling without sockets, for the `dns_respond` fuzz target
/// (`fuzz/`), which is a separate crate: the server's bytes-in/bytes-out
/// function is crate-private. Not part of the API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    use crate::answer::{respond, Scratch, Transport, Zone};
    use crate::view::{DnsView, Index};

    /// A zone and an index built once, answering packets as a server
    /// worker does.
    pub struct Responder {
        zone: Zone,
        index: Index,
        scratch: Scratch,
    }

    impl Responder {
        /// `domain` as in `DnsConfig` (e.g. `nuvol`).
        pub fn new(view: &DnsView, domain: &str) -> Result<Responder, String> {
            let zone = Zone::new(domain, 5, 30)?;
            let index = Index::build(view, &zone.domain);
            Ok(Responder {
                zone,
                index,
                scratch: Scratch::default(),
            })
        }

        /// The response to one query (UDP limits unless `tcp`), or `None`
        /// when the server would drop the packet.
        pub fn respond(&mut self, packet: &[u8], tcp: bool) -> Option<&[u8]> {
            let transport = if tcp { Transport::Tcp } else { Transport::Udp };
            respond(
                &self.zone,
                &self.index,
                packet,
                transport,
                &mut self.scratch,
            )
            .ok()
            .map(|_| self.scratch.out.as_slice())
        }
    }
}
pub use component::{Dns, DnsSettings};
pub use server::{DnsConfig, DnsError, DnsServer, DnsStats, DnsStatsSnapshot};
pub use view::{label, DnsView, Instance};
