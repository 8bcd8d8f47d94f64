//! The thin I/O around a [`Router`](crate::router::Router): the VRRP raw
//! socket (socket2, driven by tokio), the interface's addresses (netlink,
//! through rtnetlink) and gratuitous ARPs (an AF_PACKET channel from
//! pnet_datalink, opened for a burst and closed again, so that no socket
//! copies the LAN's frames while nobody reads them), and the ARP probe
//! that tells, before a first claim, whether another host holds the VIP.

use crate::packet::{arp_claimant, arp_probe, gratuitous_arp, MULTICAST, PROTO_VRRP, TTL};
use futures::TryStreamExt;
use netlink_packet_route::address::AddressAttribute;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

/// What went wrong talking to the kernel, named for the operator.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("interface {0} does not exist")]
    NoInterface(String),
    #[error("interface {0} has no IPv4 address to send adverts from")]
    NoAddress(String),
    #[error("cannot open the VRRP socket on {interface}: {error} (needs CAP_NET_RAW)")]
    Socket { interface: String, error: io::Error },
    #[error("netlink: {0}")]
    Netlink(String),
    #[error("cannot send ARPs on {interface}: {error}")]
    Arp { interface: String, error: String },
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A raw IPv4 socket for protocol 112 on one interface: adverts in (with
/// their IP header) and out (the kernel adds the header, TTL 255).
pub struct VrrpSocket {
    sock: tokio::net::UdpSocket,
}

impl VrrpSocket {
    pub fn open(interface: &str, local: Ipv4Addr) -> Result<VrrpSocket, NetError> {
        let err = |error: io::Error| NetError::Socket {
            interface: interface.to_owned(),
            error,
        };
        let s = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(i32::from(PROTO_VRRP))),
        )
        .map_err(err)?;
        s.bind_device(Some(interface.as_bytes())).map_err(err)?;
        s.set_ttl_v4(u32::from(TTL)).map_err(err)?;
        s.set_multicast_ttl_v4(u32::from(TTL)).map_err(err)?;
        s.set_multicast_loop_v4(false).map_err(err)?;
        s.set_multicast_if_v4(&local).map_err(err)?;
        // keepalived's TOS: network control.
        s.set_tos_v4(0xc0).map_err(err)?;
        s.join_multicast_v4(&MULTICAST, &local).map_err(err)?;
        s.set_nonblocking(true).map_err(err)?;
        // A raw socket is driven like a datagram socket: recvfrom/sendto.
        let std: std::net::UdpSocket = s.into();
        let sock = tokio::net::UdpSocket::from_std(std).map_err(err)?;
        Ok(VrrpSocket { sock })
    }

    /// One IPv4 packet (header included).
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let (n, _) = self.sock.recv_from(buf).await?;
        Ok(n)
    }

    pub async fn send(&self, to: Ipv4Addr, bytes: &[u8]) -> io::Result<()> {
        self.sock
            .send_to(bytes, SocketAddr::V4(SocketAddrV4::new(to, 0)))
            .await
            .map(drop)
    }
}

/// The interface's addresses, over netlink.
#[derive(Clone)]
pub struct Netlink {
    handle: rtnetlink::Handle,
}

impl Netlink {
    /// Opens a netlink connection; its task runs until the handle and its
    /// clones are dropped.
    pub fn open() -> Result<Netlink, NetError> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    pub async fn index(&self, interface: &str) -> Result<u32, NetError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(interface.to_owned())
            .execute();
        match links.try_next().await {
            Ok(Some(l)) => Ok(l.header.index),
            Ok(None) => Err(NetError::NoInterface(interface.to_owned())),
            // ENODEV: netlink's answer for a name no link has.
            Err(e) if e.to_string().contains("No such device") => {
                Err(NetError::NoInterface(interface.to_owned()))
            }
            Err(e) => Err(NetError::Netlink(e.to_string())),
        }
    }

    /// The IPv4 addresses on the interface, with their prefix lengths.
    pub async fn addresses(&self, index: u32) -> Result<Vec<(Ipv4Addr, u8)>, NetError> {
        let mut out = Vec::new();
        let mut s = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        while let Some(m) = s
            .try_next()
            .await
            .map_err(|e| NetError::Netlink(e.to_string()))?
        {
            let prefix = m.header.prefix_len;
            for a in &m.attributes {
                if let AddressAttribute::Local(IpAddr::V4(ip)) = a {
                    out.push((*ip, prefix));
                }
            }
        }
        Ok(out)
    }

    /// Add `ip/prefix` (already there: fine).
    pub async fn add(&self, index: u32, ip: Ipv4Addr, prefix: u8) -> Result<(), NetError> {
        if self.addresses(index).await?.iter().any(|(a, _)| *a == ip) {
            return Ok(());
        }
        self.handle
            .address()
            .add(index, IpAddr::V4(ip), prefix)
            .execute()
            .await
            .map_err(|e| NetError::Netlink(format!("cannot add {ip}/{prefix}: {e}")))
    }

    /// Remove `ip` (absent: fine). Returns whether it was there.
    pub async fn remove(&self, index: u32, ip: Ipv4Addr) -> Result<bool, NetError> {
        let mut s = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(IpAddr::V4(ip))
            .execute();
        let mut removed = false;
        while let Some(m) = s
            .try_next()
            .await
            .map_err(|e| NetError::Netlink(e.to_string()))?
        {
            let ours = m
                .attributes
                .iter()
                .any(|a| matches!(a, AddressAttribute::Local(IpAddr::V4(x)) if *x == ip));
            if ours {
                self.handle
                    .address()
                    .del(m)
                    .execute()
                    .await
                    .map_err(|e| NetError::Netlink(format!("cannot remove {ip}: {e}")))?;
                removed = true;
            }
        }
        Ok(removed)
    }
}

/// The interface's MAC address (from sysfs).
pub fn mac_address(interface: &str) -> Result<[u8; 6], NetError> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{interface}/address"))
        .map_err(|_| NetError::NoInterface(interface.to_owned()))?;
    parse_mac(text.trim()).ok_or_else(|| NetError::Arp {
        interface: interface.to_owned(),
        error: format!("not an Ethernet address: {}", text.trim()),
    })
}

/// The interface's MAC as the kernel reports it to this network namespace
/// (getifaddrs). `/sys/class/net` is the namespace's only where sysfs was
/// mounted in it (`ip netns exec` does, a bare `setns` does not), so it is
/// the fallback.
fn interface_mac(iface: &pnet_datalink::NetworkInterface) -> Result<[u8; 6], NetError> {
    match iface.mac.map(|m| m.octets()) {
        Some(mac) if mac != [0; 6] => Ok(mac),
        _ => mac_address(&iface.name),
    }
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Whether the interface is up (operstate up, or unknown for virtual
/// links that do not report one).
pub fn link_up(interface: &str) -> bool {
    std::fs::read_to_string(format!("/sys/class/net/{interface}/operstate"))
        .map(|s| matches!(s.trim(), "up" | "unknown"))
        .unwrap_or(false)
}

/// Send `count` gratuitous ARPs for each address, from the interface's
/// MAC. Blocking (a few frames): run it off the async threads.
pub fn send_garps(interface: &str, ips: &[Ipv4Addr], count: u32) -> Result<(), NetError> {
    let err = |error: String| NetError::Arp {
        interface: interface.to_owned(),
        error,
    };
    let iface = pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == interface)
        .ok_or_else(|| NetError::NoInterface(interface.to_owned()))?;
    let mac = interface_mac(&iface)?;
    let cfg = pnet_datalink::Config {
        read_buffer_size: 64,
        ..Default::default()
    };
    let mut tx = match pnet_datalink::channel(&iface, cfg) {
        Ok(pnet_datalink::Channel::Ethernet(tx, _rx)) => tx,
        Ok(_) => return Err(err("not an Ethernet interface".into())),
        Err(e) => return Err(err(e.to_string())),
    };
    for _ in 0..count {
        for ip in ips {
            let frame = gratuitous_arp(mac, *ip);
            match tx.send_to(&frame, None) {
                Some(Ok(())) => {}
                Some(Err(e)) => return Err(err(e.to_string())),
                None => return Err(err("the channel refused the frame".into())),
            }
        }
    }
    Ok(())
}

/// Whether another host answers for `ip` on `interface`: two ARP probes
/// (RFC 5227) 100 ms apart, then the frames seen within `wait`. The MAC of
/// the first host that claims `ip` (a reply, or its own gratuitous ARP).
/// Blocking: run it off the async threads.
pub fn probe_in_use(
    interface: &str,
    ip: Ipv4Addr,
    wait: Duration,
) -> Result<Option<[u8; 6]>, NetError> {
    let err = |error: String| NetError::Arp {
        interface: interface.to_owned(),
        error,
    };
    let iface = pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == interface)
        .ok_or_else(|| NetError::NoInterface(interface.to_owned()))?;
    let mac = interface_mac(&iface)?;
    let cfg = pnet_datalink::Config {
        read_timeout: Some(Duration::from_millis(50)),
        ..Default::default()
    };
    let (mut tx, mut rx) = match pnet_datalink::channel(&iface, cfg) {
        Ok(pnet_datalink::Channel::Ethernet(tx, rx)) => (tx, rx),
        Ok(_) => return Err(err("not an Ethernet interface".into())),
        Err(e) => return Err(err(e.to_string())),
    };
    let probe = arp_probe(mac, ip);
    let start = std::time::Instant::now();
    let mut sent = 0;
    while start.elapsed() < wait {
        if sent < 2 && start.elapsed() >= Duration::from_millis(100) * sent {
            match tx.send_to(&probe, None) {
                Some(Ok(())) => sent += 1,
                Some(Err(e)) => return Err(err(e.to_string())),
                None => return Err(err("the channel refused the frame".into())),
            }
        }
        match rx.next() {
            Ok(frame) => {
                if let Some(other) = arp_claimant(frame, ip, mac) {
                    return Ok(Some(other));
                }
            }
            Err(e)
                if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::WouldBlock => {
            }
            Err(e) => return Err(err(e.to_string())),
        }
    }
    Ok(None)
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("ca:57:c9:e3:95:1d"),
            Some([0xca, 0x57, 0xc9, 0xe3, 0x95, 0x1d])
        );
        assert_eq!(parse_mac("ca:57:c9:e3:95"), None);
        assert_eq!(parse_mac("ca:57:c9:e3:95:1d:00"), None);
        assert_eq!(parse_mac("zz:57:c9:e3:95:1d"), None);
    }
}
