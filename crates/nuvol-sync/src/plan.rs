//! The sans-I/O core: from this node's device, the cluster's members and
//! their `sync` tags, the folder specs and the folder modes, the Syncthing
//! configuration to write, or nothing when it already is what it should be.
//!
//! Only what nuvol decides is touched: the options that keep Syncthing off
//! the internet, the devices it added (named `nuvol/NODE`), and the folders
//! of `[sync] folders`; every other field, device and folder of Syncthing's
//! config is written back as it was read.

use crate::settings::{FolderSpec, DEFAULT_PORT};
use nuvol_gossip::{Member, MemberStatus};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// The gossip tag carrying a node's Syncthing device id (without its
/// dashes) and, when it is not 22000, `:PORT`.
pub const SYNC_TAG: &str = "sync";
/// Name prefix of the devices nuvol manages.
pub const DEVICE_PREFIX: &str = "nuvol/";
/// How long Syncthing's file watcher gathers changes before a scan, in
/// seconds, for nuvol's folders (Syncthing's default is 10).
pub const WATCH_DELAY_S: u64 = 1;

/// A Syncthing device id in its canonical form (8 groups of 7, dashes).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId(String);

/// Why a text is not a device id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a Syncthing device id")]
pub struct BadDeviceId(pub String);

impl DeviceId {
    /// Parse the dashed or the compact (56 characters) form, any case.
    pub fn parse(s: &str) -> Result<DeviceId, BadDeviceId> {
        let compact: String = s
            .chars()
            .filter(|c| *c != '-' && *c != ' ')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        if compact.len() != 56
            || !compact
                .bytes()
                .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
        {
            return Err(BadDeviceId(s.to_owned()));
        }
        // Four groups of 13 characters, each followed by its Luhn mod-32
        // check character: a typo (or garbage in a peer's tag) is refused
        // here rather than by Syncthing, which would refuse the whole
        // config.
        let b = compact.as_bytes();
        for g in 0..4 {
            let group = &b[g * 14..g * 14 + 14];
            if luhn32(&group[..13]) != Some(group[13]) {
                return Err(BadDeviceId(s.to_owned()));
            }
        }
        let groups: Vec<&str> = (0..8).map(|i| &compact[i * 7..i * 7 + 7]).collect();
        Ok(DeviceId(groups.join("-")))
    }

    /// The dashed form Syncthing shows.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Without dashes (for the tag).
    pub fn compact(&self) -> String {
        self.0.replace('-', "")
    }
}

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Syncthing's check character of a group (Luhn mod N over base32).
fn luhn32(group: &[u8]) -> Option<u8> {
    let mut factor = 1;
    let mut sum = 0usize;
    for c in group {
        let cp = BASE32.iter().position(|a| a == c)?;
        let addend = factor * cp;
        factor = if factor == 2 { 1 } else { 2 };
        sum += addend / 32 + addend % 32;
    }
    Some(BASE32[(32 - sum % 32) % 32])
}

impl std::fmt::Display for DeviceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The value of this node's `sync` tag.
pub fn tag_value(me: &DeviceId, port: u16) -> String {
    if port == DEFAULT_PORT {
        me.compact()
    } else {
        format!("{}:{port}", me.compact())
    }
}

/// A `sync` tag's device id and port.
pub fn parse_tag(v: &str) -> Result<(DeviceId, u16), BadDeviceId> {
    let (id, port) = match v.split_once(':') {
        Some((id, p)) => (
            id,
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| BadDeviceId(v.to_owned()))?,
        ),
        None => (v, DEFAULT_PORT),
    };
    Ok((DeviceId::parse(id)?, port))
}

/// How this node takes part in a folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Changes go both ways (the default).
    #[default]
    SendReceive,
    /// This node's copy is the reference (the node running an HA app).
    SendOnly,
    /// This node only takes the others' changes (a standby).
    ReceiveOnly,
}

impl Mode {
    /// Syncthing's folder type.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::SendReceive => "sendreceive",
            Mode::SendOnly => "sendonly",
            Mode::ReceiveOnly => "receiveonly",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "sendreceive" => Ok(Mode::SendReceive),
            "sendonly" => Ok(Mode::SendOnly),
            "receiveonly" => Ok(Mode::ReceiveOnly),
            _ => Err(format!(
                "unknown folder mode {s:?} (sendreceive, sendonly, receiveonly)"
            )),
        }
    }
}

/// Another node with sync on, as gossip shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub node: String,
    pub ip: IpAddr,
    pub device: DeviceId,
    pub port: u16,
}

impl Peer {
    /// The address Syncthing is given for it.
    pub fn address(&self) -> String {
        match self.ip {
            IpAddr::V4(ip) => format!("tcp://{ip}:{}", self.port),
            IpAddr::V6(ip) => format!("tcp://[{ip}]:{}", self.port),
        }
    }
}

/// The peers among `members`: every node but `me` with a valid `sync` tag
/// that has not left (a failed node stays: it may come back). Members
/// with a tag that does not parse are returned apart, with why.
pub fn peers(members: &[Member], me: &str) -> (Vec<Peer>, Vec<(String, String)>) {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for m in members {
        if m.name == me || matches!(m.status, MemberStatus::Left | MemberStatus::None) {
            continue;
        }
        let Some(v) = m.tags.get(SYNC_TAG) else {
            continue;
        };
        match parse_tag(v) {
            Ok((device, port)) => out.push(Peer {
                node: m.name.clone(),
                ip: m.addr.ip(),
                device,
                port,
            }),
            Err(e) => bad.push((m.name.clone(), e.to_string())),
        }
    }
    out.sort_by(|a, b| a.node.cmp(&b.node));
    (out, bad)
}

/// The parts of Syncthing's `/rest/config` nuvol reads and writes; every
/// other field is kept in `rest` and written back unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StConfig {
    #[serde(default)]
    pub folders: Vec<StFolder>,
    #[serde(default)]
    pub devices: Vec<StDevice>,
    #[serde(default)]
    pub options: Map<String, Value>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StFolder {
    pub id: String,
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub path: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub devices: Vec<StFolderDevice>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StFolderDevice {
    #[serde(rename = "deviceID")]
    pub device_id: String,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StDevice {
    #[serde(rename = "deviceID")]
    pub device_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl StConfig {
    /// The template Syncthing fills new folders or devices from
    /// (`defaults.folder`, `defaults.device`).
    fn default_of<T: serde::de::DeserializeOwned>(&self, which: &str) -> Option<T> {
        let v = self.rest.get("defaults")?.get(which)?.clone();
        serde_json::from_value(v).ok()
    }
}

fn same_device(a: &str, b: &DeviceId) -> bool {
    DeviceId::parse(a).is_ok_and(|a| &a == b)
}

/// What [`plan`] is given.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// This node's gossip name and Syncthing device.
    pub node: &'a str,
    pub me: &'a DeviceId,
    pub peers: &'a [Peer],
    pub folders: &'a [FolderSpec],
    /// This node's mode per folder id (absent: send and receive).
    pub modes: &'a BTreeMap<String, Mode>,
    /// Syncthing's listen address (`tcp://IP:PORT`).
    pub listen: &'a str,
}

/// The options nuvol sets: no global or local discovery, no relays, no
/// NAT traversal, no usage or crash reports, no upgrades, no browser.
pub fn options(listen: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("listenAddresses", Value::from(vec![listen.to_owned()])),
        ("globalAnnounceEnabled", Value::Bool(false)),
        ("localAnnounceEnabled", Value::Bool(false)),
        ("relaysEnabled", Value::Bool(false)),
        ("natEnabled", Value::Bool(false)),
        ("urAccepted", Value::from(-1)),
        ("autoUpgradeIntervalH", Value::from(0)),
        ("crashReportingEnabled", Value::Bool(false)),
        ("startBrowser", Value::Bool(false)),
    ]
}

/// The peers sharing `f` with this node (none if this node does not).
pub fn folder_peers<'p>(f: &FolderSpec, node: &str, peers: &'p [Peer]) -> Vec<&'p Peer> {
    if !f.shared_by(node) {
        return Vec::new();
    }
    peers.iter().filter(|p| f.shared_by(&p.node)).collect()
}

/// The config to write, or `None` when `current` already is it.
pub fn plan(i: &Inputs<'_>, current: &StConfig) -> Option<StConfig> {
    let mut next = current.clone();
    for (k, v) in options(i.listen) {
        next.options.insert(k.to_owned(), v);
    }

    // Folders: those of the specs this node shares, with their peers.
    let mut wanted_devices: BTreeSet<&str> = BTreeSet::new();
    for spec in i.folders {
        let pos = next.folders.iter().position(|f| f.id == spec.id);
        if !spec.shared_by(i.node) {
            if let Some(p) = pos {
                next.folders.remove(p);
            }
            continue;
        }
        let sharing = folder_peers(spec, i.node, i.peers);
        wanted_devices.extend(sharing.iter().map(|p| p.node.as_str()));
        let mut f = match pos {
            Some(p) => next.folders[p].clone(),
            None => current
                .default_of::<StFolder>("folder")
                .unwrap_or_else(|| StFolder {
                    id: String::new(),
                    label: String::new(),
                    path: String::new(),
                    kind: String::new(),
                    devices: Vec::new(),
                    rest: Map::new(),
                }),
        };
        f.id = spec.id.clone();
        if f.label.is_empty() {
            f.label = spec.id.clone();
        }
        f.path = spec.path.to_string_lossy().into_owned();
        f.kind = i
            .modes
            .get(&spec.id)
            .copied()
            .unwrap_or_default()
            .as_str()
            .to_owned();
        f.rest
            .insert("fsWatcherEnabled".to_owned(), Value::Bool(true));
        f.rest
            .insert("fsWatcherDelayS".to_owned(), Value::from(WATCH_DELAY_S));
        f.rest.insert("paused".to_owned(), Value::Bool(false));
        let mut want: Vec<&DeviceId> = std::iter::once(i.me)
            .chain(sharing.iter().map(|p| &p.device))
            .collect();
        // Kept in their order (with their own fields), the new ones after.
        f.devices
            .retain(|d| want.iter().any(|w| same_device(&d.device_id, w)));
        want.retain(|w| !f.devices.iter().any(|d| same_device(&d.device_id, w)));
        want.sort();
        for w in want {
            f.devices.push(StFolderDevice {
                device_id: w.as_str().to_owned(),
                rest: Map::new(),
            });
        }
        match pos {
            Some(p) => next.folders[p] = f,
            None => next.folders.push(f),
        }
    }

    // Devices: nuvol's are those of the peers sharing a folder; the ones
    // it added for nodes that left (or share nothing now) go.
    let wanted: Vec<&Peer> = i
        .peers
        .iter()
        .filter(|p| wanted_devices.contains(p.node.as_str()))
        .collect();
    next.devices.retain(|d| {
        same_device(&d.device_id, i.me)
            || !d.name.starts_with(DEVICE_PREFIX)
            || wanted.iter().any(|p| same_device(&d.device_id, &p.device))
    });
    for p in wanted {
        let name = format!("{DEVICE_PREFIX}{}", p.node);
        let pos = next
            .devices
            .iter()
            .position(|d| same_device(&d.device_id, &p.device));
        let mut d = match pos {
            Some(x) => next.devices[x].clone(),
            None => current
                .default_of::<StDevice>("device")
                .unwrap_or_else(|| StDevice {
                    device_id: String::new(),
                    name: String::new(),
                    addresses: Vec::new(),
                    rest: Map::new(),
                }),
        };
        d.device_id = p.device.as_str().to_owned();
        d.name = name;
        d.addresses = vec![p.address()];
        d.rest
            .insert("autoAcceptFolders".to_owned(), Value::Bool(false));
        d.rest.insert("introducer".to_owned(), Value::Bool(false));
        d.rest.insert("paused".to_owned(), Value::Bool(false));
        match pos {
            Some(x) => next.devices[x] = d,
            None => next.devices.push(d),
        }
    }
    // A device nuvol removed must not linger in a folder it does not
    // manage either.
    let kept: Vec<String> = next.devices.iter().map(|d| d.device_id.clone()).collect();
    for f in &mut next.folders {
        f.devices.retain(|fd| {
            kept.iter()
                .any(|k| DeviceId::parse(k).is_ok_and(|k| same_device(&fd.device_id, &k)))
        });
    }

    (next != *current).then_some(next)
}

/// Where the app a folder follows runs, as this node's catalog shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AppPlace {
    /// Published and healthy on this node.
    Here,
    /// Published and healthy on another node (and not here).
    Elsewhere,
    /// Nowhere healthy (stopped, moving, or its node cut off).
    Nowhere,
}

impl AppPlace {
    pub fn as_str(self) -> &'static str {
        match self {
            AppPlace::Here => "here",
            AppPlace::Elsewhere => "elsewhere",
            AppPlace::Nowhere => "nowhere",
        }
    }
}

/// The modes to change for the folders that follow an app: send-only
/// where the app runs, receive-only where it does not but runs elsewhere.
/// Where it runs nowhere the last mode is kept (a failover in progress
/// must not make every copy send-receive); a folder with no mode yet
/// starts receive-only. Folders this node does not share are left out.
pub fn follow(
    specs: &[FolderSpec],
    node: &str,
    place: impl Fn(&str) -> AppPlace,
    modes: &BTreeMap<String, Mode>,
) -> Vec<(String, Mode)> {
    let mut out = Vec::new();
    for spec in specs.iter().filter(|s| s.shared_by(node)) {
        let Some(app) = &spec.follow_app else {
            continue;
        };
        let now = modes.get(&spec.id).copied();
        let want = match place(app) {
            AppPlace::Here => Mode::SendOnly,
            AppPlace::Elsewhere => Mode::ReceiveOnly,
            AppPlace::Nowhere => now.unwrap_or(Mode::ReceiveOnly),
        };
        if now != Some(want) {
            out.push((spec.id.clone(), want));
        }
    }
    out
}

/// The version of the modes file (`DATA_DIR/sync-modes.json`).
pub const MODES_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct ModesFile {
    version: u32,
    modes: BTreeMap<String, Mode>,
}

/// The modes file's content.
pub fn encode_modes(modes: &BTreeMap<String, Mode>) -> Vec<u8> {
    let f = ModesFile {
        version: MODES_VERSION,
        modes: modes.clone(),
    };
    let mut v = serde_json::to_vec_pretty(&f).unwrap_or_default();
    v.push(b'\n');
    v
}

/// The modes of a modes file, or why it cannot be read.
pub fn decode_modes(bytes: &[u8]) -> Result<BTreeMap<String, Mode>, String> {
    let f: ModesFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if f.version != MODES_VERSION {
        return Err(format!(
            "version {} (this agent reads {MODES_VERSION})",
            f.version
        ));
    }
    Ok(f.modes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const A: &str = "WAU5JIY-TOV4WJY-WWDKIQ5-IIXE6NL-SIK7AKH-ZRX35QB-GDZ6YXZ-GRDYTA4";
    // Real ids (Syncthing 1.19's), in their sort order.
    const B: &str = "ZUBA3T6-DHFOVO7-EAQB67K-GIKBGWY-7M7VWQU-SIAZG7D-A6UVWW4-WZVG4AV";
    const C: &str = "ZVRDJ5Z-EGAISJE-U47ALSG-KJ2EL6U-TXRSZTI-WSVQTF2-AD5RYJE-ULELOQZ";

    /// A config as Syncthing 1.19 answers `GET /rest/config` on a fresh
    /// home (trimmed, with a field nuvol does not know in each part).
    fn fresh() -> StConfig {
        serde_json::from_value(serde_json::json!({
            "version": 36,
            "folders": [],
            "devices": [{"deviceID": A, "name": "vm", "addresses": ["dynamic"], "compression": "metadata", "autoAcceptFolders": false}],
            "gui": {"address": "127.0.0.1:8384", "apiKey": "k"},
            "options": {"listenAddresses": ["default"], "globalAnnounceEnabled": true, "relaysEnabled": true, "urAccepted": 0, "someFutureOption": 7},
            "remoteIgnoredDevices": [],
            "defaults": {
                "folder": {"id": "", "label": "", "path": "~", "type": "sendreceive", "devices": [{"deviceID": A, "introducedBy": "", "encryptionPassword": ""}], "rescanIntervalS": 3600, "fsWatcherEnabled": true, "fsWatcherDelayS": 10, "markerName": ".stfolder"},
                "device": {"deviceID": "", "name": "", "addresses": ["dynamic"], "compression": "metadata", "introducer": false, "autoAcceptFolders": false, "maxRequestKiB": 0}
            }
        }))
        .unwrap()
    }

    fn peer(node: &str, id: &str, ip: &str, port: u16) -> Peer {
        Peer {
            node: node.into(),
            ip: ip.parse().unwrap(),
            device: DeviceId::parse(id).unwrap(),
            port,
        }
    }

    fn spec(id: &str, path: &str, nodes: &[&str]) -> FolderSpec {
        FolderSpec {
            id: id.into(),
            path: PathBuf::from(path),
            nodes: nodes.iter().map(|n| (*n).to_owned()).collect(),
            follow_app: None,
        }
    }

    struct Case {
        me: DeviceId,
        peers: Vec<Peer>,
        folders: Vec<FolderSpec>,
        modes: BTreeMap<String, Mode>,
    }

    impl Case {
        fn new(peers: Vec<Peer>, folders: Vec<FolderSpec>) -> Case {
            Case {
                me: DeviceId::parse(A).unwrap(),
                peers,
                folders,
                modes: BTreeMap::new(),
            }
        }
        fn plan(&self, current: &StConfig) -> Option<StConfig> {
            plan(
                &Inputs {
                    node: "a",
                    me: &self.me,
                    peers: &self.peers,
                    folders: &self.folders,
                    modes: &self.modes,
                    listen: "tcp://0.0.0.0:22001",
                },
                current,
            )
        }
    }

    fn devices_of(c: &StConfig, folder: &str) -> Vec<String> {
        c.folders
            .iter()
            .find(|f| f.id == folder)
            .map(|f| f.devices.iter().map(|d| d.device_id.clone()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn device_ids_and_tags() {
        let a = DeviceId::parse(A).unwrap();
        assert_eq!(DeviceId::parse(&a.compact()).unwrap(), a);
        assert_eq!(DeviceId::parse(&A.to_lowercase()).unwrap(), a);
        assert!(DeviceId::parse("WAU5JIY").is_err());
        assert!(DeviceId::parse(&A.replace('W', "1")).is_err(), "not base32");
        // One character changed: its group's check character no longer fits.
        let typo = A.replacen("TOV4", "TOV5", 1);
        assert!(DeviceId::parse(&typo).is_err(), "Luhn check");
        for id in [B, C] {
            assert_eq!(DeviceId::parse(id).unwrap().as_str(), id);
        }
        assert_eq!(
            tag_value(&a, 22000).len(),
            56,
            "compact: no dashes, no port"
        );
        assert_eq!(
            parse_tag(&tag_value(&a, 22000)).unwrap(),
            (a.clone(), 22000)
        );
        assert_eq!(
            parse_tag(&tag_value(&a, 23456)).unwrap(),
            (a.clone(), 23456)
        );
        assert!(parse_tag(&format!("{}:0", a.compact())).is_err());
        assert!(parse_tag(&format!("{}:x", a.compact())).is_err());
    }

    #[test]
    fn members_become_peers_unless_they_left_or_have_no_tag() {
        let a = DeviceId::parse(A).unwrap();
        let b = DeviceId::parse(B).unwrap();
        let m = |name: &str, status, tag: Option<String>| Member {
            name: name.into(),
            addr: "127.0.0.9:7946".parse().unwrap(),
            tags: tag.map(|t| (SYNC_TAG.to_owned(), t)).into_iter().collect(),
            status,
            vsn: [0; 6],
        };
        let members = vec![
            m("a", MemberStatus::Alive, Some(tag_value(&a, 22000))),
            m("b", MemberStatus::Failed, Some(tag_value(&b, 22001))),
            m("c", MemberStatus::Left, Some(tag_value(&b, 22000))),
            m("d", MemberStatus::Alive, None),
            m("e", MemberStatus::Alive, Some("garbage".into())),
        ];
        let (p, bad) = peers(&members, "a");
        assert_eq!(p, vec![peer("b", B, "127.0.0.9", 22001)]);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, "e");
        assert_eq!(p[0].address(), "tcp://127.0.0.9:22001");
        let v6 = Peer {
            ip: "::1".parse().unwrap(),
            ..p[0].clone()
        };
        assert_eq!(v6.address(), "tcp://[::1]:22001");
    }

    #[test]
    fn a_fresh_syncthing_gets_the_options_devices_and_folder() {
        let c = Case::new(
            vec![
                peer("b", B, "127.0.0.2", 22000),
                peer("c", C, "127.0.0.3", 22002),
            ],
            vec![spec("docs", "/srv/docs", &[])],
        );
        let cur = fresh();
        let next = c.plan(&cur).expect("a change");
        let o = &next.options;
        assert_eq!(
            o["listenAddresses"],
            serde_json::json!(["tcp://0.0.0.0:22001"])
        );
        for k in [
            "globalAnnounceEnabled",
            "localAnnounceEnabled",
            "relaysEnabled",
            "natEnabled",
            "crashReportingEnabled",
        ] {
            assert_eq!(o[k], false, "{k}");
        }
        assert_eq!(o["urAccepted"], -1);
        assert_eq!(o["autoUpgradeIntervalH"], 0);
        assert_eq!(o["someFutureOption"], 7, "unknown options kept");
        // Devices: ours kept as it was, the peers' with explicit addresses,
        // filled from Syncthing's defaults.
        assert_eq!(next.devices.len(), 3);
        assert_eq!(next.devices[0], cur.devices[0]);
        let b = &next.devices[1];
        assert_eq!((b.device_id.as_str(), b.name.as_str()), (B, "nuvol/b"));
        assert_eq!(b.addresses, ["tcp://127.0.0.2:22000"]);
        assert_eq!(b.rest["autoAcceptFolders"], false);
        assert_eq!(b.rest["maxRequestKiB"], 0, "from defaults.device");
        assert_eq!(next.devices[2].addresses, ["tcp://127.0.0.3:22002"]);
        // The folder, from defaults.folder.
        let f = &next.folders[0];
        assert_eq!((f.id.as_str(), f.label.as_str()), ("docs", "docs"));
        assert_eq!(
            (f.path.as_str(), f.kind.as_str()),
            ("/srv/docs", "sendreceive")
        );
        assert_eq!(f.rest["markerName"], ".stfolder", "from defaults.folder");
        assert_eq!(f.rest["fsWatcherDelayS"], WATCH_DELAY_S);
        assert_eq!(devices_of(&next, "docs"), [A, B, C]);
        assert_eq!(
            f.devices[0].rest["encryptionPassword"], "",
            "own entry kept"
        );
        // Unknown top-level parts kept.
        assert_eq!(next.rest["gui"]["apiKey"], "k");
        assert_eq!(next.rest["version"], 36);
        // Idempotent: what was planned needs nothing more, also through
        // JSON as Syncthing gives it back.
        assert_eq!(c.plan(&next), None);
        let back: StConfig = serde_json::from_str(&serde_json::to_string(&next).unwrap()).unwrap();
        assert_eq!(c.plan(&back), None);
    }

    #[test]
    fn nodes_that_leave_are_removed_and_addresses_follow_tags() {
        let mut c = Case::new(
            vec![
                peer("b", B, "127.0.0.2", 22000),
                peer("c", C, "127.0.0.3", 22000),
            ],
            vec![spec("docs", "/srv/docs", &[])],
        );
        let first = c.plan(&fresh()).unwrap();
        // c left: gone from the folder and the devices.
        c.peers.pop();
        let second = c.plan(&first).expect("c removed");
        assert_eq!(devices_of(&second, "docs"), [A, B]);
        assert!(!second.devices.iter().any(|d| d.device_id == C));
        // b moved: its address follows.
        c.peers[0].ip = "127.0.0.22".parse().unwrap();
        c.peers[0].port = 23000;
        let third = c.plan(&second).expect("b moved");
        let b = third.devices.iter().find(|d| d.device_id == B).unwrap();
        assert_eq!(b.addresses, ["tcp://127.0.0.22:23000"]);
        assert_eq!(c.plan(&third), None);
    }

    #[test]
    fn folders_are_shared_only_with_their_nodes() {
        let c = Case::new(
            vec![
                peer("b", B, "127.0.0.2", 22000),
                peer("c", C, "127.0.0.3", 22000),
            ],
            vec![
                spec("ab", "/srv/ab", &["a", "b"]),
                spec("bc", "/srv/bc", &["b", "c"]),
            ],
        );
        let next = c.plan(&fresh()).unwrap();
        assert_eq!(devices_of(&next, "ab"), [A, B]);
        assert!(
            !next.folders.iter().any(|f| f.id == "bc"),
            "this node does not share bc"
        );
        assert!(
            !next.devices.iter().any(|d| d.device_id == C),
            "c shares no folder with this node"
        );
        // A folder the node stopped sharing is removed.
        let mut cur = next.clone();
        cur.folders.push(StFolder {
            id: "bc".into(),
            label: "bc".into(),
            path: "/srv/bc".into(),
            kind: "sendreceive".into(),
            devices: Vec::new(),
            rest: Map::new(),
        });
        assert_eq!(c.plan(&cur), Some(next));
    }

    #[test]
    fn modes_set_the_folder_type() {
        let mut c = Case::new(
            vec![peer("b", B, "127.0.0.2", 22000)],
            vec![spec("app", "/srv/app", &[])],
        );
        let kind = |cfg: &StConfig| cfg.folders[0].kind.clone();
        let first = c.plan(&fresh()).unwrap();
        assert_eq!(kind(&first), "sendreceive");
        c.modes.insert("app".into(), Mode::SendOnly);
        let second = c.plan(&first).unwrap();
        assert_eq!(kind(&second), "sendonly");
        assert_eq!(c.plan(&second), None);
        c.modes.insert("app".into(), Mode::ReceiveOnly);
        let third = c.plan(&second).unwrap();
        assert_eq!(kind(&third), "receiveonly");
        assert_eq!(devices_of(&third, "app"), [A, B], "only the type changed");
        assert_eq!("receiveonly".parse::<Mode>(), Ok(Mode::ReceiveOnly));
        assert!("both".parse::<Mode>().is_err());
    }

    #[test]
    fn what_nuvol_does_not_manage_is_kept() {
        let c = Case::new(
            vec![peer("b", B, "127.0.0.2", 22000)],
            vec![spec("docs", "/srv/docs", &[])],
        );
        let mut cur = fresh();
        // The user's own device and folder, with a field from a newer
        // Syncthing.
        cur.devices.push(StDevice {
            device_id: C.into(),
            name: "laptop".into(),
            addresses: vec!["dynamic".into()],
            rest: Map::from_iter([("futureField".to_owned(), Value::from("x"))]),
        });
        cur.folders.push(StFolder {
            id: "photos".into(),
            label: "Photos".into(),
            path: "/home/u/photos".into(),
            kind: "sendreceive".into(),
            devices: vec![StFolderDevice {
                device_id: C.into(),
                rest: Map::new(),
            }],
            rest: Map::from_iter([("fsWatcherDelayS".to_owned(), Value::from(10))]),
        });
        let next = c.plan(&cur).unwrap();
        assert!(next.devices.iter().any(|d| d == &cur.devices[1]));
        assert_eq!(next.folders[0], cur.folders[0]);
        assert_eq!(c.plan(&next), None);
    }

    #[test]
    fn a_folder_follows_its_app_and_keeps_its_mode_when_it_runs_nowhere() {
        let mut f = spec("db", "/srv/db", &[]);
        f.follow_app = Some("db".into());
        let mut other = spec("docs", "/srv/docs", &[]);
        other.follow_app = None;
        let mut elsewhere_only = spec("x", "/srv/x", &["b"]);
        elsewhere_only.follow_app = Some("db".into());
        let specs = vec![f, other, elsewhere_only];
        let mut modes = BTreeMap::new();
        let at = |p: AppPlace| move |_: &str| p;
        // Never placed, and nowhere: receive-only.
        assert_eq!(
            follow(&specs, "a", at(AppPlace::Nowhere), &modes),
            [("db".to_owned(), Mode::ReceiveOnly)]
        );
        assert_eq!(
            follow(&specs, "a", at(AppPlace::Here), &modes),
            [("db".to_owned(), Mode::SendOnly)]
        );
        modes.insert("db".to_owned(), Mode::SendOnly);
        // Runs here: nothing to change; nowhere: the last mode is kept.
        assert!(follow(&specs, "a", at(AppPlace::Here), &modes).is_empty());
        assert!(follow(&specs, "a", at(AppPlace::Nowhere), &modes).is_empty());
        // It moved.
        assert_eq!(
            follow(&specs, "a", at(AppPlace::Elsewhere), &modes),
            [("db".to_owned(), Mode::ReceiveOnly)]
        );
        modes.insert("db".to_owned(), Mode::ReceiveOnly);
        assert!(follow(&specs, "a", at(AppPlace::Nowhere), &modes).is_empty());
        // The place is asked by the app's name.
        let by_name = |app: &str| {
            if app == "db" {
                AppPlace::Here
            } else {
                AppPlace::Elsewhere
            }
        };
        assert_eq!(
            follow(&specs, "a", by_name, &modes),
            [("db".to_owned(), Mode::SendOnly)]
        );
    }

    #[test]
    fn modes_files_round_trip_and_bad_ones_are_refused() {
        let mut m = BTreeMap::new();
        m.insert("db".to_owned(), Mode::SendOnly);
        m.insert("pics".to_owned(), Mode::ReceiveOnly);
        let bytes = encode_modes(&m);
        assert_eq!(decode_modes(&bytes).unwrap(), m);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("\"version\": 1"), "{text}");
        assert!(text.contains("\"db\": \"sendonly\""), "{text}");
        assert!(decode_modes(b"{not json").is_err());
        assert!(decode_modes(br#"{"version":1,"modes":{"db":"sideways"}}"#).is_err());
        let e = decode_modes(br#"{"version":9,"modes":{}}"#).unwrap_err();
        assert!(e.contains("version 9"), "{e}");
    }
}
