//! Which address to advertise when the agent binds to `0.0.0.0` and no
//! `--advertise` is given.
//!
//! Two parts:
//! - [`choose`]: a pure decision over a plain description of the machine's
//!   interfaces and which one holds the default route ([`Facts`]); returns
//!   the address and why ([`Choice`], whose `Display` is the log line).
//! - [`from_system`]: gathers those facts from the running system (Linux)
//!   and calls [`choose`].
//!
//! The order of preference:
//! 1. an address of the interface that holds the IPv4 default route, if
//!    that interface is up and is not a container or VM network (a host's
//!    own `br0` is fine here: on a VM host the LAN address and the default
//!    route often sit on a bridge);
//! 2. else a private (RFC 1918) address of an up interface that is neither
//!    a bridge nor a container/VM network;
//! 3. else any other address of an up interface that is not a container/VM
//!    network (plain interfaces before bridges, link-local last);
//! 4. else `127.0.0.1`.
//!
//! A down interface is never chosen (Docker's `docker0` without containers
//! has no carrier, so it is down), and neither is an interface whose name
//! says it belongs to a container or VM network ([`is_container_network`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

/// One network interface, as far as the choice is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    /// Operationally up (Linux `IFF_RUNNING`: administratively up and, for
    /// devices with a carrier, the carrier present).
    pub up: bool,
    /// A Linux bridge (`/sys/class/net/NAME/bridge` exists).
    pub bridge: bool,
    /// Its IPv4 addresses, primary first.
    pub addrs: Vec<Ipv4Addr>,
}

/// What [`choose`] looks at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// In the system's order.
    pub interfaces: Vec<Interface>,
    /// The interface holding the IPv4 default route (the one with the
    /// lowest metric when there are several).
    pub default_route: Option<String>,
}

/// Why an address was chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// It is on the interface that holds the default route.
    DefaultRoute,
    /// A private address of an up, non-virtual interface.
    Private,
    /// Another address of an up interface (no private one).
    Other,
    /// Nothing else usable: loopback.
    Loopback,
}

/// The chosen address and why; `Display` gives the log line, e.g.
/// `advertising 10.1.2.3 (interface eth0, holds the default route)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    pub addr: IpAddr,
    /// The interface the address belongs to (`None` for the loopback
    /// fallback).
    pub interface: Option<String>,
    pub reason: Reason,
    /// Why the default route's interface was not used, when there is one
    /// and it was not.
    pub default_route_skipped: Option<String>,
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "advertising {} (", self.addr)?;
        if let Some(i) = &self.interface {
            write!(f, "interface {i}, ")?;
        }
        f.write_str(match self.reason {
            Reason::DefaultRoute => "holds the default route",
            Reason::Private => "a private address of an up interface",
            Reason::Other => "an address of an up interface, none of them private",
            Reason::Loopback => {
                "no up interface with a usable IPv4 address; other machines \
                 cannot reach this; give --advertise"
            }
        })?;
        match (&self.reason, &self.default_route_skipped) {
            (Reason::DefaultRoute, _) => {}
            (_, Some(why)) => write!(f, "; {why}")?,
            (_, None) => f.write_str("; no default route")?,
        }
        f.write_str(")")
    }
}

/// True for interface names that container runtimes, orchestrators and VM
/// managers create for their own networks: Docker (`docker0`,
/// `docker_gwbridge`, `br-<id>`), the host ends of veth pairs, libvirt
/// (`virbr0`), CNI plugins (`cni0`, `flannel.1`, Calico's `cali*`,
/// `vxlan.calico` and `tunl0`, Cilium's `cilium_*` and `lxc*`, Weave,
/// kube-router's `kube-*`), LXC/LXD/Incus (`lxcbr0`, `lxdbr0`, `incusbr0`),
/// Podman, VirtualBox host-only (`vboxnet*`), VMware (`vmnet*`) and
/// Kubernetes' `nodelocaldns`. Overlays a user may mean to use (WireGuard,
/// Tailscale, ZeroTier) are not in the list.
pub fn is_container_network(name: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "docker",
        "br-",
        "veth",
        "virbr",
        "cni",
        "flannel",
        "cali",
        "vxlan.calico",
        "tunl",
        "cilium",
        "lxc",
        "lxdbr",
        "incusbr",
        "podman",
        "weave",
        "kube-",
        "vboxnet",
        "vmnet",
        "nodelocaldns",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p))
}

/// An address worth advertising at all: not loopback, not 0.0.0.0, not
/// multicast or broadcast.
fn usable(a: &Ipv4Addr) -> bool {
    !a.is_loopback() && !a.is_unspecified() && !a.is_multicast() && !a.is_broadcast()
}

/// Decide which address to advertise (see the module documentation).
pub fn choose(facts: &Facts) -> Choice {
    let mut skipped = None;
    if let Some(name) = &facts.default_route {
        match facts.interfaces.iter().find(|i| &i.name == name) {
            None => {
                skipped = Some(format!(
                    "the default route's interface {name} has no IPv4 address"
                ))
            }
            Some(i) if !i.up => {
                skipped = Some(format!("the default route's interface {name} is down"))
            }
            Some(i) if is_container_network(&i.name) => {
                skipped = Some(format!(
                    "the default route's interface {name} is a container or VM network"
                ))
            }
            Some(i) => {
                // Link-local only as a last resort: it is what an interface
                // gets when DHCP failed.
                let best = i
                    .addrs
                    .iter()
                    .filter(|a| usable(a))
                    .min_by_key(|a| a.is_link_local());
                match best {
                    Some(a) => {
                        return Choice {
                            addr: IpAddr::V4(*a),
                            interface: Some(i.name.clone()),
                            reason: Reason::DefaultRoute,
                            default_route_skipped: None,
                        }
                    }
                    None => {
                        skipped = Some(format!(
                            "the default route's interface {name} has no usable IPv4 address"
                        ))
                    }
                }
            }
        }
    }
    let candidates = || {
        facts
            .interfaces
            .iter()
            .filter(|i| i.up && !is_container_network(&i.name))
            .flat_map(|i| i.addrs.iter().filter(|a| usable(a)).map(move |a| (i, *a)))
    };
    let pick = |(i, a): (&Interface, Ipv4Addr), reason| Choice {
        addr: IpAddr::V4(a),
        interface: Some(i.name.clone()),
        reason,
        default_route_skipped: skipped.clone(),
    };
    if let Some(c) = candidates().find(|(i, a)| !i.bridge && a.is_private()) {
        return pick(c, Reason::Private);
    }
    // min_by_key keeps the first of equals: the system's order otherwise.
    if let Some(c) = candidates().min_by_key(|(i, a)| (a.is_link_local(), i.bridge)) {
        return pick(c, Reason::Other);
    }
    Choice {
        addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
        interface: None,
        reason: Reason::Loopback,
        default_route_skipped: skipped,
    }
}

/// The interface of the IPv4 default route in the text of
/// `/proc/net/route`: destination and mask 0, flag `RTF_UP`, the lowest
/// metric (the kernel's own choice among several).
///
/// Written by hand: the table is a stable kernel interface of fixed,
/// whitespace-separated hexadecimal columns, and the crates that report the
/// default route (`netdev`, `net-route`) bring a netlink stack with them
/// for what is a dozen lines here.
pub fn default_route_from_proc(text: &str) -> Option<String> {
    const RTF_UP: u32 = 0x1;
    let mut best: Option<(u32, &str)> = None;
    // The first line is the header.
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [iface, dest, _gw, flags, _refcnt, _use, metric, mask, ..] = f[..] else {
            continue;
        };
        let hex = |s: &str| u32::from_str_radix(s, 16).ok();
        let (Some(dest), Some(flags), Some(mask), Ok(metric)) =
            (hex(dest), hex(flags), hex(mask), metric.parse::<u32>())
        else {
            continue;
        };
        if dest != 0 || mask != 0 || flags & RTF_UP == 0 {
            continue;
        }
        match best {
            Some((m, _)) if m <= metric => {}
            _ => best = Some((metric, iface)),
        }
    }
    best.map(|(_, i)| i.to_owned())
}

/// Gather the facts from this machine: interfaces and their IPv4 addresses
/// and state from `getifaddrs` (the `if-addrs` crate), bridges from
/// `/sys/class/net/NAME/bridge`, the default route from `/proc/net/route`.
/// What cannot be read is left out (no interfaces, no default route), so
/// the choice falls back as documented.
pub fn gather() -> Facts {
    let mut interfaces: Vec<Interface> = Vec::new();
    for ifa in if_addrs::get_if_addrs().unwrap_or_default() {
        let IpAddr::V4(a) = ifa.ip() else { continue };
        let up = ifa.is_oper_up();
        match interfaces.iter_mut().find(|i| i.name == ifa.name) {
            Some(i) => {
                i.addrs.push(a);
                i.up |= up;
            }
            None => interfaces.push(Interface {
                bridge: std::path::Path::new("/sys/class/net")
                    .join(&ifa.name)
                    .join("bridge")
                    .exists(),
                name: ifa.name,
                up,
                addrs: vec![a],
            }),
        }
    }
    let default_route = std::fs::read_to_string("/proc/net/route")
        .ok()
        .and_then(|t| default_route_from_proc(&t));
    Facts {
        interfaces,
        default_route,
    }
}

/// [`choose`] over this machine's [`gather`]ed facts.
pub fn from_system() -> Choice {
    choose(&gather())
}

/// The gossip address the agent advertises when bound to `bound` with
/// `configured` as its `[gossip] advertise`: the configured one (port 0:
/// the bound port), else the bound one, else (bound to 0.0.0.0)
/// [`from_system`]'s choice with the bound port, returned too so the
/// caller can say why. One function for the agent and for `nuvol init` /
/// `nuvol join-cmd`, which print the address the next board joins.
pub fn advertised(
    bound: std::net::SocketAddr,
    configured: Option<std::net::SocketAddr>,
) -> (std::net::SocketAddr, Option<Choice>) {
    use std::net::SocketAddr;
    match configured {
        Some(a) if a.port() == 0 => (SocketAddr::new(a.ip(), bound.port()), None),
        Some(a) => (a, None),
        None if bound.ip().is_unspecified() => {
            let choice = from_system();
            (SocketAddr::new(choice.addr, bound.port()), Some(choice))
        }
        None => (bound, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, up: bool, addrs: &[&str]) -> Interface {
        Interface {
            name: name.into(),
            up,
            bridge: false,
            addrs: addrs
                .iter()
                .map(|a| a.parse().expect("test address"))
                .collect(),
        }
    }

    fn bridge(name: &str, up: bool, addrs: &[&str]) -> Interface {
        Interface {
            bridge: true,
            ..iface(name, up, addrs)
        }
    }

    fn facts(interfaces: Vec<Interface>, default_route: Option<&str>) -> Facts {
        Facts {
            interfaces,
            default_route: default_route.map(str::to_owned),
        }
    }

    fn lo() -> Interface {
        iface("lo", true, &["127.0.0.1"])
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn docker0_down_listed_first_loses_to_the_default_route() {
        // The reported case: docker0 comes first and holds the only private
        // address, but its link is down; the default route is on eth0.
        let f = facts(
            vec![
                lo(),
                bridge("docker0", false, &["172.17.0.1"]),
                iface("eth0", true, &["10.1.2.3"]),
            ],
            Some("eth0"),
        );
        let c = choose(&f);
        assert_eq!(c.addr, ip("10.1.2.3"));
        assert_eq!(c.reason, Reason::DefaultRoute);
        assert_eq!(
            c.to_string(),
            "advertising 10.1.2.3 (interface eth0, holds the default route)"
        );
    }

    #[test]
    fn docker0_down_with_the_only_private_address_is_never_chosen() {
        let f = facts(
            vec![
                lo(),
                bridge("docker0", false, &["172.17.0.1"]),
                iface("eth0", true, &["203.0.113.7"]),
            ],
            None,
        );
        let c = choose(&f);
        assert_eq!(c.addr, ip("203.0.113.7"));
        assert_eq!(c.reason, Reason::Other);
        assert_eq!(
            c.to_string(),
            "advertising 203.0.113.7 (interface eth0, an address of an up \
             interface, none of them private; no default route)"
        );
    }

    #[test]
    fn default_route_on_a_public_address_beats_a_private_one_elsewhere() {
        let f = facts(
            vec![
                lo(),
                iface("eth1", true, &["192.168.5.9"]),
                iface("eth0", true, &["198.51.100.20"]),
            ],
            Some("eth0"),
        );
        let c = choose(&f);
        assert_eq!(c.addr, ip("198.51.100.20"));
        assert_eq!(c.interface.as_deref(), Some("eth0"));
        assert_eq!(c.reason, Reason::DefaultRoute);
    }

    #[test]
    fn no_default_route_takes_a_private_address_of_an_up_plain_interface() {
        let f = facts(
            vec![
                lo(),
                iface("eth0", false, &["10.0.0.5"]),
                bridge("docker0", true, &["172.17.0.1"]),
                bridge("br0", true, &["192.168.1.2"]),
                iface("wlan0", true, &["100.64.3.3", "192.168.7.7"]),
                iface("eth2", true, &["10.9.9.9"]),
            ],
            None,
        );
        let c = choose(&f);
        // eth0 is down; docker0 is a container network and br0 a bridge;
        // wlan0's CGNAT address is not private, its second one is.
        assert_eq!(c.addr, ip("192.168.7.7"));
        assert_eq!(c.reason, Reason::Private);
        assert_eq!(
            c.to_string(),
            "advertising 192.168.7.7 (interface wlan0, a private address of an \
             up interface; no default route)"
        );
    }

    #[test]
    fn container_networks_by_name_are_skipped_even_when_up_and_not_bridges() {
        let f = facts(
            vec![
                lo(),
                iface("veth12ab", true, &["10.200.0.1"]),
                iface("cni0", true, &["10.244.0.1"]),
                iface("flannel.1", true, &["10.244.0.0"]),
                bridge("br-0123456789ab", true, &["172.18.0.1"]),
                bridge("virbr0", true, &["192.168.122.1"]),
                iface("enp3s0", true, &["192.168.0.40"]),
            ],
            None,
        );
        assert_eq!(choose(&f).addr, ip("192.168.0.40"));
    }

    #[test]
    fn only_loopback() {
        let c = choose(&facts(vec![lo()], None));
        assert_eq!(c.addr, ip("127.0.0.1"));
        assert_eq!(c.reason, Reason::Loopback);
        assert_eq!(c.interface, None);
        assert!(c.to_string().contains("give --advertise"), "{c}");
    }

    #[test]
    fn nothing_at_all_is_loopback() {
        let c = choose(&Facts::default());
        assert_eq!(c.addr, ip("127.0.0.1"));
        assert_eq!(c.reason, Reason::Loopback);
    }

    #[test]
    fn only_down_or_container_interfaces_is_loopback() {
        let f = facts(
            vec![
                lo(),
                bridge("docker0", true, &["172.17.0.1"]),
                iface("eth0", false, &["10.0.0.5"]),
            ],
            Some("eth0"),
        );
        let c = choose(&f);
        assert_eq!(c.addr, ip("127.0.0.1"));
        assert_eq!(
            c.default_route_skipped.as_deref(),
            Some("the default route's interface eth0 is down")
        );
        assert!(c.to_string().contains("eth0 is down"), "{c}");
    }

    #[test]
    fn default_route_on_a_down_interface_falls_back_and_says_so() {
        let f = facts(
            vec![
                lo(),
                iface("eth0", false, &["10.0.0.5"]),
                iface("wlan0", true, &["192.168.1.30"]),
            ],
            Some("eth0"),
        );
        let c = choose(&f);
        assert_eq!(c.addr, ip("192.168.1.30"));
        assert_eq!(c.reason, Reason::Private);
        assert_eq!(
            c.to_string(),
            "advertising 192.168.1.30 (interface wlan0, a private address of an \
             up interface; the default route's interface eth0 is down)"
        );
    }

    #[test]
    fn default_route_on_a_container_network_is_not_used() {
        let f = facts(
            vec![
                lo(),
                bridge("docker0", true, &["172.17.0.1"]),
                iface("eth0", true, &["10.0.0.5"]),
            ],
            Some("docker0"),
        );
        let c = choose(&f);
        assert_eq!(c.addr, ip("10.0.0.5"));
        assert!(c
            .to_string()
            .contains("docker0 is a container or VM network"));
    }

    #[test]
    fn default_route_on_a_host_bridge_is_used() {
        // A VM host: the LAN address and the default route are on br0.
        let f = facts(
            vec![
                lo(),
                iface("eno1", true, &[]),
                bridge("virbr0", true, &["192.168.122.1"]),
                bridge("br0", true, &["192.168.1.10"]),
            ],
            Some("br0"),
        );
        let c = choose(&f);
        assert_eq!(c.addr, ip("192.168.1.10"));
        assert_eq!(c.reason, Reason::DefaultRoute);
    }

    #[test]
    fn default_route_interface_without_ipv4_falls_back() {
        // E.g. a PPP link with IPv6 only, or a route via a device whose
        // address getifaddrs did not report.
        let f = facts(vec![lo(), iface("eth1", true, &["10.4.4.4"])], Some("ppp0"));
        let c = choose(&f);
        assert_eq!(c.addr, ip("10.4.4.4"));
        assert_eq!(
            c.default_route_skipped.as_deref(),
            Some("the default route's interface ppp0 has no IPv4 address")
        );
    }

    #[test]
    fn link_local_only_as_a_last_resort() {
        let f = facts(
            vec![
                lo(),
                iface("eth0", true, &["169.254.10.10", "198.51.100.3"]),
                iface("eth1", true, &["169.254.3.3"]),
            ],
            Some("eth0"),
        );
        assert_eq!(choose(&f).addr, ip("198.51.100.3"));
        let f = facts(
            vec![
                lo(),
                iface("eth1", true, &["169.254.3.3"]),
                bridge("br0", true, &["198.51.100.3"]),
            ],
            None,
        );
        // No private address: a routable address, even on a bridge, beats
        // a link-local one.
        assert_eq!(choose(&f).addr, ip("198.51.100.3"));
        let f = facts(vec![lo(), iface("eth1", true, &["169.254.3.3"])], None);
        assert_eq!(choose(&f).addr, ip("169.254.3.3"));
    }

    #[test]
    fn plain_interfaces_before_bridges_without_a_private_address() {
        let f = facts(
            vec![
                lo(),
                bridge("br0", true, &["198.51.100.1"]),
                iface("eth0", true, &["203.0.113.9"]),
            ],
            None,
        );
        assert_eq!(choose(&f).addr, ip("203.0.113.9"));
        // A private address on a bridge is no better than a public one:
        // step 2 takes plain interfaces only.
        let f = facts(
            vec![
                lo(),
                bridge("br0", true, &["192.168.1.2"]),
                iface("eth0", true, &["203.0.113.9"]),
            ],
            None,
        );
        assert_eq!(choose(&f).addr, ip("203.0.113.9"));
    }

    #[test]
    fn loopback_addresses_on_other_interfaces_are_not_usable() {
        let f = facts(
            vec![lo(), iface("dummy0", true, &["127.0.0.2"])],
            Some("dummy0"),
        );
        let c = choose(&f);
        assert_eq!(c.reason, Reason::Loopback);
        assert!(c.to_string().contains("no usable IPv4 address"), "{c}");
    }

    #[test]
    fn container_names() {
        for n in [
            "docker0",
            "docker_gwbridge",
            "br-5f1c2a3b4d6e",
            "veth1a2b3c4",
            "virbr0",
            "cni0",
            "cni-podman0",
            "flannel.1",
            "cali1234abcd",
            "vxlan.calico",
            "tunl0",
            "cilium_host",
            "lxc12ab",
            "lxcbr0",
            "lxdbr0",
            "incusbr0",
            "podman0",
            "weave",
            "kube-bridge",
            "vboxnet0",
            "vmnet8",
            "nodelocaldns",
        ] {
            assert!(is_container_network(n), "{n}");
        }
        for n in [
            "eth0",
            "enp3s0",
            "wlan0",
            "wlp2s0",
            "br0",
            "bond0",
            "eth0.100",
            "wg0",
            "tailscale0",
            "ztabcdef",
            "lo",
            "enx001122",
        ] {
            assert!(!is_container_network(n), "{n}");
        }
    }

    const ROUTE: &str = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
eth0\t00000000\t0102000A\t0003\t0\t0\t100\t00000000\t0\t0\t0
eth0\t0002000A\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0
";

    #[test]
    fn proc_route_lowest_metric_default() {
        assert_eq!(default_route_from_proc(ROUTE).as_deref(), Some("eth0"));
    }

    #[test]
    fn proc_route_without_default_or_malformed() {
        let header = ROUTE.lines().next().expect("header");
        assert_eq!(default_route_from_proc(header), None);
        assert_eq!(default_route_from_proc(""), None);
        let t = format!("{header}\neth0\t00000000\tzz\n\x00garbage\n");
        assert_eq!(default_route_from_proc(&t), None);
        // Destination 0 but a non-zero mask is not a default route.
        let t = format!("{header}\neth0\t00000000\t0102000A\t0003\t0\t0\t0\t000000FF\t0\t0\t0\n");
        assert_eq!(default_route_from_proc(&t), None);
    }

    #[test]
    fn proc_route_ignores_routes_that_are_not_up() {
        let header = ROUTE.lines().next().expect("header");
        let t = format!(
            "{header}\neth0\t00000000\t0102000A\t0002\t0\t0\t0\t00000000\t0\t0\t0\n\
             wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n"
        );
        assert_eq!(default_route_from_proc(&t).as_deref(), Some("wlan0"));
    }

    #[test]
    fn advertised_prefers_the_configured_then_the_bound_address() {
        let sa = |s: &str| -> std::net::SocketAddr { s.parse().expect("test address") };
        let bound = sa("10.0.0.5:5000");
        assert_eq!(advertised(bound, None), (bound, None));
        assert_eq!(
            advertised(bound, Some(sa("10.9.9.9:7000"))).0,
            sa("10.9.9.9:7000")
        );
        // Port 0: the bound port.
        assert_eq!(
            advertised(bound, Some(sa("10.9.9.9:0"))).0,
            sa("10.9.9.9:5000")
        );
        let any = sa("0.0.0.0:5000");
        let (a, choice) = advertised(any, None);
        let choice = choice.expect("bound to 0.0.0.0: the system's choice");
        assert_eq!(a, std::net::SocketAddr::new(choice.addr, 5000));
        assert_eq!(advertised(any, Some(sa("10.9.9.9:0"))).1, None);
    }

    #[test]
    fn gather_runs_here() {
        // Whatever this machine has, the choice is one of its addresses or
        // loopback, and the log line names it.
        let f = gather();
        let c = choose(&f);
        match &c.interface {
            Some(name) => {
                let i = f
                    .interfaces
                    .iter()
                    .find(|i| &i.name == name)
                    .expect("chosen interface listed");
                assert!(i.addrs.iter().any(|a| IpAddr::V4(*a) == c.addr), "{c}");
                assert!(i.up, "{c}");
            }
            None => assert_eq!(c.addr, ip("127.0.0.1")),
        }
        assert!(c
            .to_string()
            .starts_with(&format!("advertising {}", c.addr)));
    }
}
