//! `[monitor]`: whether this node is a monitor, and the devices.

use crate::devices::{Device, Snmp, SnmpVersion};
use nuvol_agent::config::{BadValue, ConfigError, Setting, Validate};
use std::net::Ipv4Addr;
use std::time::Duration;
use toml::Value;

nuvol_agent::settings! {
    /// Decentralised network monitoring: devices watched by `k` monitors
    /// each, chosen from the gossip membership.
    pub struct MonitorSettings in "monitor", "Monitor" {
        /// This node is a monitor: it takes its share of the devices.
        enable: bool = false, flag "monitor";
        /// Owners per device.
        k: u32 = 2, flag "monitor-k";
        /// Time between two probes of a device.
        interval: Duration = Duration::from_secs(60), flag "monitor-interval";
        /// This monitor's share of the devices, relative to the others'
        /// (1 to 64).
        weight: u32 = 1, flag "monitor-weight";
        /// How long a monitor must be alive without a break before it
        /// takes devices (a flapping node causes no churn).
        settle: Duration = Duration::from_secs(30), flag "monitor-settle";
        /// The devices' CNML (Guifi.net's network description): a file
        /// path or an http(s) URL; "" for none.
        cnml: String = String::new(), flag "monitor-cnml";
        /// How often the CNML source is read again (a URL's network
        /// description changes as the community builds).
        cnml_refresh: Duration = Duration::from_secs(3600), flag "monitor-cnml-refresh";
        /// The SNMP community of the CNML's devices (CNML does not say).
        cnml_community: String = "public".to_owned(), flag "monitor-cnml-community";
        /// Devices: a list of tables { id, address, snmp_community,
        /// snmp_port, snmp_version, snmp } (snmp = false: ping only).
        devices: DeviceList = DeviceList::default(), flag "monitor-device";
    }
}

/// The `devices` list (`--monitor-device ID=ADDRESS` flags added).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceList(pub Vec<Device>);

fn device_from_table(v: Value, i: usize) -> Result<Device, BadValue> {
    let Value::Table(mut t) = v else {
        return Err(BadValue(format!(
            "devices[{i}]: expected a table {{ id, address, snmp_community, snmp_port, snmp_version }}"
        )));
    };
    let text = |t: &mut toml::Table, k: &str| -> Result<Option<String>, BadValue> {
        match t.remove(k) {
            Some(Value::String(s)) => Ok(Some(s)),
            Some(Value::Integer(n)) if k == "id" || k == "snmp_version" => Ok(Some(n.to_string())),
            Some(_) => Err(BadValue(format!("devices[{i}].{k}: expected a string"))),
            None => Ok(None),
        }
    };
    let id = text(&mut t, "id")?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| BadValue(format!("devices[{i}]: id is missing")))?;
    let address: Ipv4Addr = text(&mut t, "address")?
        .ok_or_else(|| BadValue(format!("devices[{i}] ({id}): address is missing")))?
        .parse()
        .map_err(|_| {
            BadValue(format!(
                "devices[{i}] ({id}).address: expected an IPv4 address"
            ))
        })?;
    let mut snmp = Snmp::default();
    if let Some(c) = text(&mut t, "snmp_community")? {
        snmp.community = c;
    }
    match t.remove("snmp_port") {
        None => {}
        Some(Value::Integer(p)) => {
            snmp.port = u16::try_from(p).ok().filter(|p| *p > 0).ok_or_else(|| {
                BadValue(format!("devices[{i}] ({id}).snmp_port: {p} is not a port"))
            })?;
        }
        Some(_) => {
            return Err(BadValue(format!(
                "devices[{i}] ({id}).snmp_port: expected a number"
            )))
        }
    }
    if let Some(v) = text(&mut t, "snmp_version")? {
        snmp.version = v
            .parse::<SnmpVersion>()
            .map_err(|e| BadValue(format!("devices[{i}] ({id}).snmp_version: {e}")))?;
    }
    let use_snmp = match t.remove("snmp") {
        None => true,
        Some(Value::Boolean(b)) => b,
        Some(_) => {
            return Err(BadValue(format!(
                "devices[{i}] ({id}).snmp: expected true or false"
            )))
        }
    };
    let title = text(&mut t, "title")?.unwrap_or_default();
    if let Some(k) = t.keys().next() {
        return Err(BadValue(format!("devices[{i}] ({id}): unknown key {k:?}")));
    }
    Ok(Device {
        id,
        title,
        address,
        snmp: use_snmp.then_some(snmp),
        interfaces: Vec::new(),
    })
}

impl Setting for DeviceList {
    const VALUE_NAME: &'static str = "ID=ADDRESS";
    const REPEATED: bool = true;
    fn from_toml(v: Value) -> Result<Self, BadValue> {
        match v {
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| device_from_table(v, i))
                .collect::<Result<_, _>>()
                .map(DeviceList),
            _ => Err(BadValue(
                "expected a list of tables { id, address, ... }".into(),
            )),
        }
    }
    fn from_flag(s: &str) -> Result<Self, BadValue> {
        let (id, addr) = s
            .split_once('=')
            .ok_or_else(|| BadValue(format!("invalid device {s:?}: expected ID=ADDRESS")))?;
        let mut t = toml::Table::new();
        t.insert("id".into(), Value::String(id.to_owned()));
        t.insert("address".into(), Value::String(addr.to_owned()));
        Ok(DeviceList(vec![device_from_table(Value::Table(t), 0)?]))
    }
    fn merge(file: Option<Self>, flags: Option<Self>) -> Option<Self> {
        match (file, flags) {
            (Some(mut a), Some(b)) => {
                a.0.extend(b.0);
                Some(a)
            }
            (a, b) => b.or(a),
        }
    }
}

impl Validate for MonitorSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.k == 0 {
            return Err(ConfigError::invalid::<Self>("k", "must be at least 1"));
        }
        if !(1..=crate::assign::MAX_WEIGHT).contains(&self.weight) {
            return Err(ConfigError::invalid::<Self>(
                "weight",
                format!("must be 1 to {}", crate::assign::MAX_WEIGHT),
            ));
        }
        if self.interval < Duration::from_secs(1) {
            return Err(ConfigError::invalid::<Self>(
                "interval",
                "must be at least 1s",
            ));
        }
        let mut ids = std::collections::BTreeSet::new();
        if let Some(d) = self.devices.0.iter().find(|d| !ids.insert(d.id.as_str())) {
            return Err(ConfigError::invalid::<Self>(
                "devices",
                format!("the id {:?} is listed twice", d.id),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nuvol_agent::config::{ConfigFile, Section};

    fn load(file: &str, args: &[&str]) -> Result<MonitorSettings, ConfigError> {
        let m = clap::Command::new("t")
            .args(MonitorSettings::args())
            .try_get_matches_from(std::iter::once("t").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{e}"));
        let f = ConfigFile::parse(file, None)?;
        let s = MonitorSettings::load(f.section("monitor"), &m)?;
        s.validate()?;
        Ok(s)
    }

    #[test]
    fn defaults_devices_and_flags() {
        let s = load("", &[]).unwrap();
        assert!(!s.enable);
        assert_eq!((s.k, s.weight), (2, 1));
        assert_eq!(s.interval, Duration::from_secs(60));
        let s = load(
            r#"[monitor]
enable = true
k = 3
interval = "30s"
devices = [
  { id = "r1", address = "10.0.0.1" },
  { id = 7, address = "10.0.0.2", snmp_community = "guifi", snmp_port = 1161, snmp_version = "1" },
  { id = "p", address = "10.0.0.3", snmp = false },
]
"#,
            &["--monitor-device", "r9=10.0.0.9"],
        )
        .unwrap();
        assert!(s.enable);
        assert_eq!(s.k, 3);
        let d = &s.devices.0;
        assert_eq!(d.len(), 4);
        assert_eq!(d[0].snmp, Some(Snmp::default()));
        assert_eq!(d[1].id, "7");
        let snmp = d[1].snmp.as_ref().unwrap();
        assert_eq!(
            (snmp.community.as_str(), snmp.port, snmp.version),
            ("guifi", 1161, SnmpVersion::V1)
        );
        assert_eq!(d[2].snmp, None);
        assert_eq!(d[3].id, "r9");
    }

    #[test]
    fn bad_values_name_the_device_and_key() {
        for (file, want) in [
            ("[monitor]\nk = 0", "k"),
            ("[monitor]\nweight = 65", "weight"),
            ("[monitor]\ninterval = \"100ms\"", "interval"),
            ("[monitor]\ndevices = [{ address = \"10.0.0.1\" }]", "id is missing"),
            ("[monitor]\ndevices = [{ id = \"a\", address = \"10.0.0\" }]", "(a).address"),
            ("[monitor]\ndevices = [{ id = \"a\", address = \"10.0.0.1\", snmp_port = 70000 }]", "70000"),
            ("[monitor]\ndevices = [{ id = \"a\", address = \"10.0.0.1\", snmp_version = \"3\" }]", "SNMP version"),
            ("[monitor]\ndevices = [{ id = \"a\", address = \"10.0.0.1\", colour = \"red\" }]", "colour"),
            ("[monitor]\ndevices = [{ id = \"a\", address = \"10.0.0.1\" }, { id = \"a\", address = \"10.0.0.2\" }]", "twice"),
            ("[monitor]\ndevices = \"r1\"", "list of tables"),
        ] {
            let e = load(file, &[]).unwrap_err().to_string();
            assert!(e.contains(want), "{file}: {e}");
        }
    }
}
