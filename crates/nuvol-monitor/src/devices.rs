//! The devices to watch: from Guifi.net's CNML or a TOML list.
//!
//! **CNML** (the network description guifi.net publishes per zone):
//! `zone` (nested) → `node` → `device` (`id`, `title`, `type`, `status`,
//! `snmp_index` or `snmp_name`) → `radio` (`id`, `mode`, `snmp_index`) and
//! `interface` (`ipv4`, `type`), interfaces also inside radios. As
//! snpservices does, a device is left out when its status is Planned,
//! Building, Reserved, Dropped or Inactive, and when no interface has an
//! IPv4 address. Its address is its first `Lan` or `wLan/Lan` interface's
//! (a client radio: `Wan`), else any interface's; its SNMP interface
//! indexes are the device's and its radios' numeric `snmp_index`es.
//!
//! The file is read as a stream (quick-xml): a whole zone can be tens of
//! megabytes, and a DOM of it would not fit beside the agent on a 1 GB
//! board. Malformed XML is an error with its byte position; the caller
//! keeps the previous set.

use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use xxhash_rust::xxh64::xxh64;

/// Statuses snpservices does not graph.
pub const SKIPPED_STATUSES: [&str; 5] = ["Planned", "Building", "Reserved", "Dropped", "Inactive"];

/// SNMP protocol versions (community-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum SnmpVersion {
    #[serde(rename = "1")]
    V1,
    #[default]
    #[serde(rename = "2c")]
    V2c,
}

impl std::str::FromStr for SnmpVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "1" | "v1" => Ok(SnmpVersion::V1),
            "2c" | "v2c" | "2" => Ok(SnmpVersion::V2c),
            _ => Err(format!("{s:?} is not an SNMP version (1 or 2c)")),
        }
    }
}

/// One device to watch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// CNML's device id, or the TOML list's `id`.
    pub id: String,
    /// CNML's title (empty from TOML).
    #[serde(default)]
    pub title: String,
    pub address: Ipv4Addr,
    /// `None`: ping only.
    #[serde(default)]
    pub snmp: Option<Snmp>,
    /// The SNMP interface indexes to read (empty: every interface).
    #[serde(default)]
    pub interfaces: Vec<u32>,
}

/// How to reach a device's SNMP agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snmp {
    pub community: String,
    pub port: u16,
    pub version: SnmpVersion,
}

impl Default for Snmp {
    fn default() -> Self {
        Snmp {
            community: "public".into(),
            port: 161,
            version: SnmpVersion::V2c,
        }
    }
}

/// A device set and its version (a digest of its canonical form: every
/// node that holds the same devices holds the same version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DeviceSet {
    /// Sorted by id, ids unique.
    pub devices: Vec<Device>,
}

impl DeviceSet {
    /// Sorts by id; a repeated id keeps its first device.
    pub fn new(mut devices: Vec<Device>) -> DeviceSet {
        devices.sort_by(|a, b| a.id.cmp(&b.id));
        devices.dedup_by(|b, a| a.id == b.id);
        DeviceSet { devices }
    }

    /// xxHash64 (seed 0) of the set's JSON, as 16 hex digits.
    pub fn digest(&self) -> String {
        let json = serde_json::to_vec(&self.devices).unwrap_or_default();
        format!("{:016x}", xxh64(&json, 0))
    }

    pub fn get(&self, id: &str) -> Option<&Device> {
        self.devices
            .binary_search_by(|d| d.id.as_str().cmp(id))
            .ok()
            .map(|i| &self.devices[i])
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.devices.iter().map(|d| d.id.as_str())
    }
}

/// What reading a CNML file left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CnmlReport {
    /// Devices in the file.
    pub seen: usize,
    /// Left out for their status (Planned, Building, ...).
    pub skipped_status: usize,
    /// Left out for having no interface with an IPv4 address (or a bad one).
    pub no_address: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DevicesError {
    #[error("CNML is not well-formed XML at byte {position}: {message}")]
    Xml { position: u64, message: String },
    #[error("CNML has no <cnml> root element")]
    NotCnml,
}

#[derive(Default)]
struct Partial {
    id: String,
    title: String,
    kind: String,
    status: String,
    snmp_index: Option<u32>,
    radios: Vec<u32>,
    client_radio: bool,
    /// (type, ipv4) in document order.
    interfaces: Vec<(String, String)>,
}

impl Partial {
    fn finish(self, snmp: &Snmp, report: &mut CnmlReport) -> Option<Device> {
        report.seen += 1;
        if SKIPPED_STATUSES
            .iter()
            .any(|s| s.eq_ignore_ascii_case(self.status.trim()))
        {
            report.skipped_status += 1;
            return None;
        }
        let parse = |t: &str| -> Option<Ipv4Addr> {
            self.interfaces
                .iter()
                .filter(|(ty, _)| ty == t)
                .find_map(|(_, ip)| ip.trim().parse().ok())
        };
        let mut address = parse("Lan").or_else(|| parse("wLan/Lan"));
        if address.is_none() && (self.client_radio || self.kind == "radio") {
            address = parse("Wan");
        }
        let address = address.or_else(|| {
            self.interfaces
                .iter()
                .find_map(|(_, ip)| ip.trim().parse::<Ipv4Addr>().ok())
        });
        let Some(address) = address.filter(|a| !a.is_unspecified()) else {
            report.no_address += 1;
            return None;
        };
        let mut interfaces: Vec<u32> = self.snmp_index.into_iter().chain(self.radios).collect();
        interfaces.sort_unstable();
        interfaces.dedup();
        Some(Device {
            id: self.id,
            title: self.title,
            address,
            snmp: Some(snmp.clone()),
            interfaces,
        })
    }
}

/// Parse a CNML document; `snmp` is how its devices' agents are reached
/// (CNML does not say).
pub fn parse_cnml(xml: &str, snmp: &Snmp) -> Result<(DeviceSet, CnmlReport), DevicesError> {
    use quick_xml::events::{BytesStart, Event};
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut report = CnmlReport::default();
    let mut out = Vec::new();
    let mut current: Option<Partial> = None;
    let mut depth_in_device = 0usize;
    let mut root_seen = false;
    let err = |reader: &quick_xml::Reader<&[u8]>, e: &dyn std::fmt::Display| DevicesError::Xml {
        position: reader.buffer_position(),
        message: e.to_string(),
    };
    let attrs = |e: &BytesStart<'_>| -> Vec<(String, String)> {
        e.attributes()
            .filter_map(Result::ok)
            .map(|a| {
                let k = String::from_utf8_lossy(a.key.as_ref()).into_owned();
                let v = a
                    .unescape_value()
                    .map(|v| v.into_owned())
                    .unwrap_or_else(|_| String::from_utf8_lossy(&a.value).into_owned());
                (k, v)
            })
            .collect()
    };
    let get = |a: &[(String, String)], k: &str| -> Option<String> {
        a.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    };
    loop {
        let ev = reader.read_event().map_err(|e| err(&reader, &e))?;
        let (start, empty) = match &ev {
            Event::Start(e) => (Some(e.clone()), false),
            Event::Empty(e) => (Some(e.clone()), true),
            Event::End(_) => {
                if current.is_some() {
                    depth_in_device -= 1;
                    if depth_in_device == 0 {
                        if let Some(d) = current.take().and_then(|p| p.finish(snmp, &mut report)) {
                            out.push(d);
                        }
                    }
                }
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        let Some(e) = start else { continue };
        let name = e.name();
        let name = name.as_ref();
        if !root_seen {
            if name != b"cnml" {
                return Err(DevicesError::NotCnml);
            }
            root_seen = true;
            continue;
        }
        match (&mut current, name) {
            (None, b"device") => {
                let a = attrs(&e);
                let p = Partial {
                    id: get(&a, "id").unwrap_or_default(),
                    title: get(&a, "title").unwrap_or_default(),
                    kind: get(&a, "type").unwrap_or_default(),
                    status: get(&a, "status").unwrap_or_default(),
                    snmp_index: get(&a, "snmp_index").and_then(|v| v.trim().parse().ok()),
                    ..Partial::default()
                };
                if empty {
                    if let Some(d) = p.finish(snmp, &mut report) {
                        out.push(d);
                    }
                } else {
                    current = Some(p);
                    depth_in_device = 1;
                }
            }
            (Some(p), tag) => {
                if !empty {
                    depth_in_device += 1;
                }
                let a = attrs(&e);
                match tag {
                    b"radio" => {
                        if let Some(i) = get(&a, "snmp_index").and_then(|v| v.trim().parse().ok()) {
                            p.radios.push(i);
                        }
                        if get(&a, "mode").as_deref() == Some("client") {
                            p.client_radio = true;
                        }
                    }
                    b"interface" => {
                        if let Some(ip) = get(&a, "ipv4") {
                            p.interfaces.push((get(&a, "type").unwrap_or_default(), ip));
                        }
                    }
                    _ => {}
                }
            }
            (None, _) => {}
        }
    }
    if !root_seen {
        return Err(DevicesError::NotCnml);
    }
    if current.is_some() {
        return Err(DevicesError::Xml {
            position: reader.buffer_position(),
            message: "the document ends inside a <device>".into(),
        });
    }
    // Devices without an id cannot be owned or asked for.
    out.retain(|d| !d.id.is_empty());
    Ok((DeviceSet::new(out), report))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZONE: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<cnml version="0.1" server_id="1" server_url="http://guifi.net" generated="20261201 1200">
  <class network_description="detail" mapping="y"/>
  <network nodes="3" devices="6" ap="1" client="1" services="0" links="1">
    <zone id="2413" title="Osona" graph_server="9">
      <zone id="2500" title="Vic &amp; rodalies">
        <node id="100" title="Vic-Centre" status="Working">
          <device id="1001" title="vic-router" type="radio" status="Working" graph_server="9">
            <radio id="0" ssid="guifi-vic" mode="ap" snmp_index="5">
              <interface id="11" type="wLan/Lan" ipv4="10.138.1.1" mask="255.255.255.224">
                <link id="1" linked_device_id="1002" link_type="ap/client" status="Working"/>
              </interface>
            </radio>
            <interface id="12" type="Lan" ipv4="10.138.1.33" mask="255.255.255.224"/>
          </device>
          <device id="1003" title="vic-server" type="server" status="Working" snmp_index="2">
            <interface id="13" type="Lan" ipv4="10.138.1.40"/>
          </device>
          <device id="1004" title="planned" type="radio" status="Planned">
            <interface id="14" type="Lan" ipv4="10.138.1.50"/>
          </device>
        </node>
        <node id="101" title="Vic-Est" status="Working">
          <device id="1002" title="client" type="radio" status="Testing">
            <radio id="0" mode="client" snmp_name="wlan0"/>
            <interface id="15" type="Wan" ipv4="10.138.1.2"/>
          </device>
          <device id="1005" title="no ip" type="radio" status="Working">
            <radio id="0" mode="ap"/>
          </device>
          <device id="1006" title="dropped" type="radio" status="dropped"/>
        </node>
      </zone>
    </zone>
  </network>
</cnml>"#;

    #[test]
    fn a_zone_gives_its_working_devices_with_addresses_and_indexes() {
        let (set, report) = parse_cnml(ZONE, &Snmp::default()).unwrap();
        let ids: Vec<&str> = set.ids().collect();
        assert_eq!(ids, ["1001", "1002", "1003"]);
        assert_eq!(
            report,
            CnmlReport {
                seen: 6,
                skipped_status: 2,
                no_address: 1
            }
        );
        let r = set.get("1001").unwrap();
        assert_eq!(r.title, "vic-router");
        assert_eq!(r.address, Ipv4Addr::new(10, 138, 1, 33), "Lan first");
        assert_eq!(r.interfaces, [5]);
        let c = set.get("1002").unwrap();
        assert_eq!(c.address, Ipv4Addr::new(10, 138, 1, 2), "a client: Wan");
        assert!(c.interfaces.is_empty(), "snmp_name only");
        let s = set.get("1003").unwrap();
        assert_eq!(s.interfaces, [2]);
        assert_eq!(s.snmp, Some(Snmp::default()));
    }

    #[test]
    fn the_digest_follows_the_content_only() {
        let (a, _) = parse_cnml(ZONE, &Snmp::default()).unwrap();
        let mut rev = a.devices.clone();
        rev.reverse();
        let b = DeviceSet::new(rev);
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.digest().len(), 16);
        let mut c = a.clone();
        c.devices[0].address = Ipv4Addr::new(10, 0, 0, 1);
        assert_ne!(a.digest(), c.digest());
    }

    #[test]
    fn malformed_cnml_is_an_error_naming_where() {
        for (bad, want) in [
            ("<cnml><zone><node></zone></cnml>", "byte"),
            ("<html><body/></html>", "no <cnml>"),
            ("", "no <cnml>"),
            (
                "<cnml><device id=\"1\"><interface ipv4=\"10.0.0.1\"/>",
                "ends inside",
            ),
            ("<cnml><device id=\"1\" title=\"&bogus;\"/></cnml>", ""),
        ] {
            match parse_cnml(bad, &Snmp::default()) {
                Err(e) => assert!(e.to_string().contains(want), "{bad}: {e}"),
                Ok((set, _)) => assert!(want.is_empty(), "{bad}: accepted {set:?}"),
            }
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let bytes = ZONE.as_bytes();
        for _ in 0..2000 {
            let mut v = bytes.to_vec();
            for _ in 0..rng.gen_range(1..20) {
                let i = rng.gen_range(0..v.len());
                v[i] = rng.gen();
            }
            let cut = rng.gen_range(0..v.len());
            v.truncate(cut);
            let s = String::from_utf8_lossy(&v);
            let _ = parse_cnml(&s, &Snmp::default());
        }
    }
}
