//! The DNS component: serves the names components registered (the
//! catalog's `TYPE.service`) and the alive members (`NODE.node`) under the
//! configured domain.

use crate::{label, DnsConfig, DnsServer, DnsStats, DnsView, Instance};
use nuvol_agent::config::{ConfigError, Listen, Validate};
use nuvol_agent::metrics::Fed;
use nuvol_agent::rpc_server::RpcAddr;
use nuvol_agent::{BuildCtx, BuildError, Component, ComponentError, RunCtx};
use nuvol_gossip::MemberStatus;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

nuvol_agent::settings! {
    /// The DNS interface to the catalog.
    pub struct DnsSettings in "dns", "DNS" {
        /// DNS address for TYPE.service.DOMAIN and NODE.node.DOMAIN
        /// (default: the RPC address's IP, port 8600; "" turns DNS off).
        addr: Listen<8600> = Listen::Default, flag "dns-addr";
        /// DNS domain.
        domain: String = "nuvol".into(), flag "domain";
    }
}

impl Validate for DnsSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        let d = normalize(&self.domain);
        let ok = !d.is_empty()
            && d.len() <= 200
            && d.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !ok {
            return Err(ConfigError::invalid::<Self>(
                "domain",
                format!("{:?} is not a valid DNS domain", self.domain),
            ));
        }
        Ok(())
    }
}

fn normalize(domain: &str) -> String {
    domain.trim_matches('.').to_ascii_lowercase()
}

/// The DNS component.
pub struct Dns {
    addr: SocketAddr,
    domain: String,
    counters: Counters,
}

#[derive(Default)]
struct Counters {
    queries: Fed,
    tcp_queries: Fed,
    nxdomain: Fed,
    refused: Fed,
    other_errors: Fed,
    truncated: Fed,
    dropped_malformed: Fed,
    tcp_rejected: Fed,
}

impl Counters {
    fn feed(&self, s: &DnsStats) {
        let s = s.snapshot();
        self.queries.feed(s.queries);
        self.tcp_queries.feed(s.tcp_queries);
        self.nxdomain.feed(s.nxdomain);
        self.refused.feed(s.refused);
        self.other_errors.feed(s.other_errors);
        self.truncated.feed(s.truncated);
        self.dropped_malformed.feed(s.dropped_malformed);
        self.tcp_rejected.feed(s.tcp_rejected);
    }
}

impl Component for Dns {
    type Config = DnsSettings;
    const NAME: &'static str = "dns";

    fn build(cfg: DnsSettings, ctx: &mut BuildCtx<'_>) -> Result<Option<Self>, BuildError> {
        let Some(addr) = cfg.addr.resolve(RpcAddr::default_ip(ctx)) else {
            return Ok(None);
        };
        let counters = Counters::default();
        let r = ctx.metrics();
        for (name, help, fed) in [
            (
                "dns_queries",
                "DNS queries answered (UDP and TCP)",
                &counters.queries,
            ),
            (
                "dns_tcp_queries",
                "DNS queries answered over TCP",
                &counters.tcp_queries,
            ),
            (
                "dns_nxdomain",
                "DNS answers with NXDOMAIN",
                &counters.nxdomain,
            ),
            ("dns_refused", "DNS answers with REFUSED", &counters.refused),
            (
                "dns_other_errors",
                "DNS answers with another error code",
                &counters.other_errors,
            ),
            (
                "dns_truncated",
                "UDP DNS answers truncated (TC)",
                &counters.truncated,
            ),
            (
                "dns_dropped_malformed",
                "DNS packets dropped unanswered (malformed)",
                &counters.dropped_malformed,
            ),
            (
                "dns_tcp_rejected",
                "DNS TCP connections refused by the connection cap",
                &counters.tcp_rejected,
            ),
        ] {
            r.register(name, help, fed.counter());
        }
        Ok(Some(Dns {
            addr,
            domain: normalize(&cfg.domain),
            counters,
        }))
    }

    async fn run(&mut self, ctx: &RunCtx) -> Result<(), ComponentError> {
        let (tx, rx) = watch::channel(Arc::new(self.view(ctx).await));
        let server = DnsServer::bind(
            DnsConfig {
                addr: self.addr,
                domain: self.domain.clone(),
                ..DnsConfig::default()
            },
            rx,
        )
        .await?;
        let local = server.local_addr();
        let stats = server.stats();
        ctx.registry().info.set("dns_addr", local.to_string());
        ctx.registry().info.set("dns_domain", self.domain.clone());
        tracing::info!(addr = %local, domain = %self.domain, "DNS listening");
        let stop = ctx.stop_token();
        let mut serve = tokio::spawn(server.run(async move { stop.cancelled().await }));
        let mut sources: Vec<_> = ctx.registry().dns_sources().to_vec();
        let mut members = ctx.cluster().member_events();
        // Member addresses can change without an event reaching us (a lag):
        // refresh now and then too.
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        let mut sample = tokio::time::interval(Duration::from_secs(1));
        ctx.ready();
        let result = loop {
            let changed = async {
                let futs = sources.iter_mut().map(|s| Box::pin(s.changed()));
                if futs.len() == 0 {
                    std::future::pending::<()>().await;
                }
                // A source whose component is gone: stop watching it.
                let (r, i, _) = futures::future::select_all(futs).await;
                r.err().map(|_| i)
            };
            tokio::select! {
                r = &mut serve => break r.map_err(ComponentError::from).and_then(|r| r.map_err(Into::into)),
                () = ctx.stopping() => break Ok(()),
                gone = changed => {
                    if let Some(i) = gone {
                        sources.swap_remove(i);
                    }
                }
                _ = members.recv() => {}
                _ = tick.tick() => {}
                _ = sample.tick() => {
                    self.counters.feed(&stats);
                    continue;
                }
            }
            let view = self.view(ctx).await;
            tx.send_replace(Arc::new(view));
        };
        ctx.registry().info.remove("dns_addr");
        if !serve.is_finished() {
            let _ = (&mut serve).await;
        }
        result
    }
}

impl Dns {
    /// The registered names plus the alive members' addresses.
    async fn view(&self, ctx: &RunCtx) -> DnsView {
        let mut view = DnsView::default();
        for src in ctx.registry().dns_sources() {
            let names = src.borrow().clone();
            for i in &names.instances {
                view.add_instance(
                    &i.service,
                    Instance {
                        node: i.node.clone(),
                        ip: i.ip,
                        port: i.port,
                    },
                );
            }
            for (n, ip) in &names.nodes {
                view.add_node_addr(n, *ip);
            }
        }
        for m in ctx.cluster().members().await.unwrap_or_default() {
            if m.status == MemberStatus::Alive {
                view.add_node_addr(&m.name, m.addr.ip());
            }
        }
        view
    }
}

/// The DNS view of registered names and alive nodes, as the component
/// builds it (for the benchmark).
pub fn view_of<'a>(
    names: &[nuvol_agent::dns::DnsNames],
    nodes: impl IntoIterator<Item = (&'a str, IpAddr)>,
) -> DnsView {
    let mut view = DnsView::default();
    for n in names {
        for i in &n.instances {
            view.add_instance(
                &i.service,
                Instance {
                    node: i.node.clone(),
                    ip: i.ip,
                    port: i.port,
                },
            );
        }
    }
    for (name, ip) in nodes {
        view.add_node_addr(name, ip);
    }
    let _ = label;
    view
}
