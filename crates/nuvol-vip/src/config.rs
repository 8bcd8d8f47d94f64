//! `[[vip]]`: one table per floating IP (`[vip]` for a single one). The
//! entries have no flags: a VIP is several settings that belong together.

use crate::router::{GarpConfig, RouterConfig};
use nuvol_agent::config::{
    entries, Arg, ArgMatches, ConfigError, Key, Section, SectionFile, Setting, Table, Validate,
};
use std::net::Ipv4Addr;
use std::time::Duration;

/// One floating IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipEntry {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub interface: String,
    pub vrid: u8,
    pub priority: u8,
    pub advert_interval: Duration,
    pub preempt: bool,
    pub preempt_delay: Duration,
    pub unicast_peers: Vec<Ipv4Addr>,
    pub track_services: Vec<String>,
    pub track_apps: Vec<String>,
    pub tie_breaker: Option<Ipv4Addr>,
    pub source: Option<Ipv4Addr>,
    pub garp_count: u32,
    pub garp_delay: Option<Duration>,
    pub garp_refresh: Option<Duration>,
}

impl VipEntry {
    /// The router's settings, once the interface's own address is known.
    pub fn router_config(&self, local: Ipv4Addr) -> RouterConfig {
        RouterConfig {
            vrid: self.vrid,
            priority: self.priority,
            advert_interval: self.advert_interval,
            preempt: self.preempt,
            preempt_delay: self.preempt_delay,
            addresses: vec![self.address],
            local,
            unicast_peers: self.unicast_peers.clone(),
            garp: GarpConfig {
                count: self.garp_count,
                second_delay: self.garp_delay,
                refresh: self.garp_refresh,
            },
        }
    }
}

/// Every `[[vip]]` entry.
#[derive(Debug, Clone, Default)]
pub struct VipSettings {
    pub entries: Vec<VipEntry>,
}

const SECTION: &str = "vip";

const KEYS: &[Key] = &[
    Key {
        name: "address",
        flag: "",
        doc: "The floating address with its prefix length, e.g. \"10.1.2.100/24\" (required).",
    },
    Key {
        name: "interface",
        flag: "",
        doc: "The interface it lives on, e.g. \"eth0\" (required).",
    },
    Key {
        name: "vrid",
        flag: "",
        doc: "The VRRP virtual router id, 1 to 255, the same on every node of this VIP (keepalived's virtual_router_id; required).",
    },
    Key {
        name: "priority",
        flag: "",
        doc: "1 to 255: the highest alive and healthy node holds the VIP; 255 is the address owner, master at once.",
    },
    Key {
        name: "advert_interval",
        flag: "",
        doc: "How often the master advertises (10ms to 40.95s in steps of 10ms; the same on every node).",
    },
    Key {
        name: "preempt",
        flag: "",
        doc: "A higher-priority node takes the VIP back from a lower master.",
    },
    Key {
        name: "preempt_delay",
        flag: "",
        doc: "How long after start (or after first seeing a lower master) a node waits before preempting.",
    },
    Key {
        name: "unicast_peers",
        flag: "",
        doc: "The other nodes' addresses, for networks without multicast; empty: multicast to 224.0.0.18.",
    },
    Key {
        name: "track_services",
        flag: "",
        doc: "Catalog service types (e.g. \"http\") this node must publish, healthy, to hold the VIP.",
    },
    Key {
        name: "track_apps",
        flag: "",
        doc: "Apps that must run here, healthy, for this node to hold the VIP.",
    },
    Key {
        name: "tie_breaker",
        flag: "",
        doc: "A gateway address: with exactly half of the members alive, the side that reaches it keeps the VIP (or add a witness node).",
    },
    Key {
        name: "source",
        flag: "",
        doc: "The adverts' source address; default: the interface's first IPv4 address.",
    },
    Key {
        name: "garp_count",
        flag: "",
        doc: "Gratuitous ARPs per burst on takeover.",
    },
    Key {
        name: "garp_delay",
        flag: "",
        doc: "A second burst this long after a takeover; \"0s\": none.",
    },
    Key {
        name: "garp_refresh",
        flag: "",
        doc: "A burst every so often while master; \"0s\": none.",
    },
];

fn invalid(i: usize, key: &str, message: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        setting: format!("vip[{i}].{key}"),
        message: message.to_string(),
    }
}

fn parse_cidr(i: usize, s: &str) -> Result<(Ipv4Addr, u8), ConfigError> {
    let (a, p) = s.split_once('/').ok_or_else(|| {
        invalid(
            i,
            "address",
            format!("{s:?}: expected ADDRESS/PREFIX, e.g. 10.1.2.100/24"),
        )
    })?;
    let addr: Ipv4Addr = a
        .parse()
        .map_err(|_| invalid(i, "address", format!("{a:?} is not an IPv4 address")))?;
    let prefix: u8 = p
        .parse()
        .ok()
        .filter(|p| (1..=32).contains(p))
        .ok_or_else(|| invalid(i, "address", format!("prefix {p:?} must be 1 to 32")))?;
    if addr.is_unspecified() || addr.is_multicast() || addr.is_broadcast() || addr.is_loopback() {
        return Err(invalid(
            i,
            "address",
            format!("{addr} cannot be a floating address"),
        ));
    }
    Ok((addr, prefix))
}

fn parse_ip(i: usize, key: &str, s: &str) -> Result<Ipv4Addr, ConfigError> {
    s.parse()
        .map_err(|_| invalid(i, key, format!("{s:?} is not an IPv4 address")))
}

fn take<T: Setting>(f: &mut SectionFile, key: &'static str) -> Result<Option<T>, ConfigError> {
    f.take::<T>(key, "")
}

fn number(
    i: usize,
    key: &str,
    v: Option<String>,
    lo: u32,
    hi: u32,
    default: u32,
) -> Result<u32, ConfigError> {
    match v {
        None => Ok(default),
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|n| (lo..=hi).contains(n))
            .ok_or_else(|| invalid(i, key, format!("{s:?}: must be {lo} to {hi}"))),
    }
}

fn entry(i: usize, table: &Table) -> Result<VipEntry, ConfigError> {
    // Integers are read as text so that one error shape covers both.
    let mut t = table.clone();
    for k in ["vrid", "priority", "garp_count"] {
        if let Some(v) = t.get(k) {
            if let Some(n) = v.as_integer() {
                t.insert(k.to_owned(), toml::Value::String(n.to_string()));
            }
        }
    }
    let mut f = SectionFile::new(SECTION, Some(&t), KEYS).map_err(|e| match e {
        ConfigError::UnknownKey { key, known, .. } => ConfigError::Invalid {
            setting: format!("vip[{i}].{key}"),
            message: format!("unknown key (keys of [[vip]]: {known})"),
        },
        e => e,
    })?;
    let named = |e: ConfigError| match e {
        ConfigError::Invalid { setting, message } => ConfigError::Invalid {
            setting: setting.replacen("vip.", &format!("vip[{i}]."), 1),
            message,
        },
        e => e,
    };
    let address: String = take(&mut f, "address")
        .map_err(named)?
        .ok_or_else(|| invalid(i, "address", "required, e.g. \"10.1.2.100/24\""))?;
    let (address, prefix) = parse_cidr(i, &address)?;
    let interface: String = take(&mut f, "interface")
        .map_err(named)?
        .ok_or_else(|| invalid(i, "interface", "required, e.g. \"eth0\""))?;
    if interface.is_empty() || interface.len() > 15 || interface.contains(['/', ' ', '\0']) {
        return Err(invalid(
            i,
            "interface",
            format!("{interface:?} is not an interface name"),
        ));
    }
    let vrid = take::<String>(&mut f, "vrid").map_err(named)?;
    if vrid.is_none() {
        return Err(invalid(
            i,
            "vrid",
            "required (1 to 255, the same on every node)",
        ));
    }
    let vrid = number(i, "vrid", vrid, 1, 255, 0)? as u8;
    let priority = number(
        i,
        "priority",
        take(&mut f, "priority").map_err(named)?,
        1,
        255,
        100,
    )? as u8;
    let advert_interval: Duration = take(&mut f, "advert_interval")
        .map_err(named)?
        .unwrap_or(Duration::from_secs(1));
    let preempt: bool = take(&mut f, "preempt").map_err(named)?.unwrap_or(true);
    let preempt_delay: Duration = take(&mut f, "preempt_delay")
        .map_err(named)?
        .unwrap_or_default();
    let peers: Vec<String> = take(&mut f, "unicast_peers")
        .map_err(named)?
        .unwrap_or_default();
    let unicast_peers = peers
        .iter()
        .map(|p| parse_ip(i, "unicast_peers", p))
        .collect::<Result<Vec<_>, _>>()?;
    let track_services: Vec<String> = take(&mut f, "track_services")
        .map_err(named)?
        .unwrap_or_default();
    let track_apps: Vec<String> = take(&mut f, "track_apps")
        .map_err(named)?
        .unwrap_or_default();
    let tie_breaker = take::<String>(&mut f, "tie_breaker")
        .map_err(named)?
        .map(|s| parse_ip(i, "tie_breaker", &s))
        .transpose()?;
    let source = take::<String>(&mut f, "source")
        .map_err(named)?
        .map(|s| parse_ip(i, "source", &s))
        .transpose()?;
    let garp_count = number(
        i,
        "garp_count",
        take(&mut f, "garp_count").map_err(named)?,
        1,
        100,
        5,
    )?;
    let garp_delay: Option<Duration> = take(&mut f, "garp_delay").map_err(named)?;
    let garp_refresh: Option<Duration> = take(&mut f, "garp_refresh").map_err(named)?;
    let e = VipEntry {
        address,
        prefix,
        interface,
        vrid,
        priority,
        advert_interval,
        preempt,
        preempt_delay,
        unicast_peers,
        track_services,
        track_apps,
        tie_breaker,
        source,
        garp_count,
        garp_delay: match garp_delay {
            None => Some(Duration::from_secs(5)),
            Some(d) if d.is_zero() => None,
            d => d,
        },
        garp_refresh: garp_refresh.filter(|d| !d.is_zero()),
    };
    // The router's own checks (interval steps, peers), with the source
    // or a placeholder that is not the VIP.
    let local = e.source.unwrap_or(Ipv4Addr::new(192, 0, 2, 1));
    let local = if local == e.address {
        Ipv4Addr::new(192, 0, 2, 2)
    } else {
        local
    };
    e.router_config(local).validate().map_err(|err| {
        let key = match err {
            crate::router::RouterConfigError::Interval => "advert_interval",
            crate::router::RouterConfigError::Peer(_) => "unicast_peers",
            crate::router::RouterConfigError::LocalIsVirtual(_) => "source",
            _ => "address",
        };
        invalid(i, key, err)
    })?;
    Ok(e)
}

impl Validate for VipSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        for (i, a) in self.entries.iter().enumerate() {
            for b in &self.entries[..i] {
                if a.interface == b.interface && a.vrid == b.vrid {
                    return Err(invalid(
                        i,
                        "vrid",
                        format!(
                            "VRID {} is already used on {} by another [[vip]]",
                            a.vrid, a.interface
                        ),
                    ));
                }
                if a.address == b.address {
                    return Err(invalid(
                        i,
                        "address",
                        format!("{} is already another [[vip]]", a.address),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Section for VipSettings {
    const NAME: &'static str = SECTION;
    const TITLE: &'static str = "Floating IPs";

    fn keys() -> &'static [Key] {
        KEYS
    }

    fn args() -> Vec<Arg> {
        Vec::new()
    }

    fn load(file: Option<&Table>, _flags: &ArgMatches) -> Result<Self, ConfigError> {
        let entries = entries(SECTION, file)?
            .iter()
            .enumerate()
            .map(|(i, t)| entry(i, t))
            .collect::<Result<Vec<_>, _>>()?;
        let s = VipSettings { entries };
        s.validate()?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nuvol_agent::config::ConfigFile;

    fn load(text: &str) -> Result<VipSettings, String> {
        let f = ConfigFile::parse(text, None).map_err(|e| e.to_string())?;
        let m = clap::Command::new("t").get_matches_from(["t"]);
        VipSettings::load(f.section("vip"), &m).map_err(|e| e.to_string())
    }

    #[test]
    fn entries_and_defaults() {
        let s = load(
            "[[vip]]\naddress = '10.1.2.100/24'\ninterface = 'eth0'\nvrid = 51\n\
             [[vip]]\naddress = '10.1.2.101/24'\ninterface = 'eth0'\nvrid = 52\npriority = 200\n\
             advert_interval = '200ms'\npreempt = false\nunicast_peers = ['10.1.2.2']\n\
             track_apps = ['web']\ngarp_delay = '0s'\ngarp_refresh = '60s'\n",
        )
        .unwrap();
        assert_eq!(s.entries.len(), 2);
        let a = &s.entries[0];
        assert_eq!(
            (a.address, a.prefix, a.vrid, a.priority),
            (Ipv4Addr::new(10, 1, 2, 100), 24, 51, 100)
        );
        assert_eq!(a.advert_interval, Duration::from_secs(1));
        assert!(a.preempt && a.unicast_peers.is_empty());
        assert_eq!(a.garp_delay, Some(Duration::from_secs(5)));
        let b = &s.entries[1];
        assert_eq!(b.advert_interval, Duration::from_millis(200));
        assert!(!b.preempt);
        assert_eq!(b.unicast_peers, [Ipv4Addr::new(10, 1, 2, 2)]);
        assert_eq!(b.garp_delay, None);
        assert_eq!(b.garp_refresh, Some(Duration::from_secs(60)));
        // One table works too.
        let s = load("[vip]\naddress = '10.1.2.100/24'\ninterface = 'eth0'\nvrid = 51\n").unwrap();
        assert_eq!(s.entries.len(), 1);
        assert!(load("").unwrap().entries.is_empty());
    }

    #[test]
    fn errors_name_the_entry_and_key() {
        let base = "address = '10.1.2.100/24'\ninterface = 'eth0'\nvrid = 51\n";
        let e = |extra: &str| load(&format!("[[vip]]\n{base}{extra}")).unwrap_err();
        assert_eq!(
            e("priority = 0\n"),
            "invalid vip[0].priority: \"0\": must be 1 to 255"
        );
        assert_eq!(
            e("priority = 256\n"),
            "invalid vip[0].priority: \"256\": must be 1 to 255"
        );
        assert_eq!(
            e("advert_interval = '15ms'\n"),
            "invalid vip[0].advert_interval: advert_interval must be 10ms to 40.95s in steps of 10ms"
        );
        assert_eq!(
            e("unicast_peers = ['nope']\n"),
            "invalid vip[0].unicast_peers: \"nope\" is not an IPv4 address"
        );
        assert!(e("colour = 'red'\n")
            .starts_with("invalid vip[0].colour: unknown key (keys of [[vip]]: address"));
        assert_eq!(
            load("[[vip]]\naddress = '10.1.2.100'\ninterface = 'eth0'\nvrid = 1\n").unwrap_err(),
            "invalid vip[0].address: \"10.1.2.100\": expected ADDRESS/PREFIX, e.g. 10.1.2.100/24"
        );
        assert_eq!(
            load("[[vip]]\naddress = '10.1.2.100/24'\ninterface = 'eth0'\n").unwrap_err(),
            "invalid vip[0].vrid: required (1 to 255, the same on every node)"
        );
        assert_eq!(
            load("[[vip]]\ninterface = 'eth0'\nvrid = 1\n").unwrap_err(),
            "invalid vip[0].address: required, e.g. \"10.1.2.100/24\""
        );
        assert_eq!(
            load(&format!("[[vip]]\n{base}[[vip]]\naddress = '10.1.2.101/24'\ninterface = 'eth0'\nvrid = 51\n"))
                .unwrap_err(),
            "invalid vip[1].vrid: VRID 51 is already used on eth0 by another [[vip]]"
        );
        assert_eq!(
            e("preempt_delay = 'soon'\n"),
            "invalid vip[0].preempt_delay: invalid duration \"soon\" (examples: 5s, 1m30s, 500ms)"
        );
    }
}
