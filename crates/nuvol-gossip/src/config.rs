//! Timing and protocol configuration, with the values of memberlist's and
//! Serf's own profiles so that mixed clusters agree on timeouts.

use std::time::Duration;

/// memberlist protocol range we speak (memberlist v0.2.x).
pub const ML_PROTOCOL_MIN: u8 = 1;
pub const ML_PROTOCOL_MAX: u8 = 5;
/// Serf protocol range we speak.
pub const SERF_PROTOCOL_MIN: u8 = 2;
pub const SERF_PROTOCOL_MAX: u8 = 5;

/// A timing profile, as serf's `-profile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    #[default]
    Lan,
    Wan,
    Local,
}

impl std::str::FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "lan" | "" => Ok(Profile::Lan),
            "wan" => Ok(Profile::Wan),
            "local" => Ok(Profile::Local),
            other => Err(format!(
                "unknown profile {other:?} (expected lan, wan or local)"
            )),
        }
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Profile::Lan => "lan",
            Profile::Wan => "wan",
            Profile::Local => "local",
        })
    }
}

/// A configuration the core cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Configuration of the gossip core. Build with [`Config::new`] and adjust.
#[derive(Debug, Clone)]
pub struct Config {
    pub node_name: String,
    /// Serf protocol version to speak (2..=5).
    pub protocol: u8,
    pub profile: Profile,
    // memberlist timings
    pub tcp_timeout: Duration,
    pub indirect_checks: usize,
    pub retransmit_mult: usize,
    pub suspicion_mult: usize,
    pub suspicion_max_timeout_mult: u32,
    pub push_pull_interval: Duration,
    pub probe_timeout: Duration,
    pub probe_interval: Duration,
    pub awareness_max_multiplier: u32,
    pub gossip_nodes: usize,
    pub gossip_interval: Duration,
    pub gossip_to_the_dead_time: Duration,
    pub enable_compression: bool,
    pub udp_buffer_size: usize,
    pub disable_tcp_pings: bool,
    // serf timings and limits
    pub broadcast_timeout: Duration,
    pub leave_propagate_delay: Duration,
    pub event_buffer: usize,
    pub query_buffer: usize,
    pub reap_interval: Duration,
    pub recent_intent_timeout: Duration,
    pub reconnect_interval: Duration,
    pub reconnect_timeout: Duration,
    pub tombstone_timeout: Duration,
    pub query_timeout_mult: u32,
    pub query_response_size_limit: usize,
    pub query_size_limit: usize,
    pub user_event_size_limit: usize,
    pub max_queue_depth: usize,
    pub enable_name_conflict_resolution: bool,
    pub disable_coordinates: bool,
    pub coalesce_period: Duration,
    pub quiescent_period: Duration,
    pub user_coalesce_period: Duration,
    pub user_quiescent_period: Duration,
}

impl Config {
    /// Serf's defaults with the given profile's memberlist timings.
    pub fn new(node_name: impl Into<String>, profile: Profile) -> Self {
        let mut c = Config {
            node_name: node_name.into(),
            protocol: SERF_PROTOCOL_MAX,
            profile,
            tcp_timeout: Duration::from_secs(10),
            indirect_checks: 3,
            retransmit_mult: 4,
            suspicion_mult: 4,
            suspicion_max_timeout_mult: 6,
            push_pull_interval: Duration::from_secs(30),
            probe_timeout: Duration::from_millis(500),
            probe_interval: Duration::from_secs(1),
            awareness_max_multiplier: 8,
            gossip_nodes: 3,
            gossip_interval: Duration::from_millis(200),
            gossip_to_the_dead_time: Duration::from_secs(30),
            enable_compression: true,
            udp_buffer_size: 1400,
            disable_tcp_pings: false,
            broadcast_timeout: Duration::from_secs(5),
            leave_propagate_delay: Duration::from_secs(1),
            event_buffer: 512,
            query_buffer: 512,
            reap_interval: Duration::from_secs(15),
            recent_intent_timeout: Duration::from_secs(300),
            reconnect_interval: Duration::from_secs(30),
            reconnect_timeout: Duration::from_secs(24 * 3600),
            tombstone_timeout: Duration::from_secs(24 * 3600),
            query_timeout_mult: 16,
            query_response_size_limit: 1024,
            query_size_limit: 1024,
            user_event_size_limit: 512,
            max_queue_depth: 4096,
            enable_name_conflict_resolution: true,
            disable_coordinates: false,
            coalesce_period: Duration::from_secs(3),
            quiescent_period: Duration::from_secs(1),
            user_coalesce_period: Duration::from_secs(3),
            user_quiescent_period: Duration::from_secs(1),
        };
        match profile {
            Profile::Lan => {}
            Profile::Wan => {
                c.tcp_timeout = Duration::from_secs(30);
                c.suspicion_mult = 6;
                c.push_pull_interval = Duration::from_secs(60);
                c.probe_timeout = Duration::from_secs(3);
                c.probe_interval = Duration::from_secs(5);
                c.gossip_nodes = 4;
                c.gossip_interval = Duration::from_millis(500);
                c.gossip_to_the_dead_time = Duration::from_secs(60);
            }
            Profile::Local => {
                c.tcp_timeout = Duration::from_secs(1);
                c.indirect_checks = 1;
                c.retransmit_mult = 2;
                c.suspicion_mult = 3;
                c.push_pull_interval = Duration::from_secs(15);
                c.probe_timeout = Duration::from_millis(200);
                c.probe_interval = Duration::from_secs(1);
                c.gossip_interval = Duration::from_millis(100);
                c.gossip_to_the_dead_time = Duration::from_secs(15);
            }
        }
        c
    }

    /// Check the values a user can set.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(SERF_PROTOCOL_MIN..=SERF_PROTOCOL_MAX).contains(&self.protocol) {
            return Err(ConfigError(format!(
                "protocol version {} is not supported (must be {SERF_PROTOCOL_MIN} to {SERF_PROTOCOL_MAX})",
                self.protocol
            )));
        }
        if self.node_name.is_empty() {
            return Err(ConfigError("node name must not be empty".into()));
        }
        if self.node_name.len() > 128 {
            return Err(ConfigError("node name is longer than 128 bytes".into()));
        }
        Ok(())
    }

    /// memberlist protocol version for our Serf protocol (serf maps all to 2).
    pub fn ml_protocol(&self) -> u8 {
        2
    }

    /// `[pmin, pmax, pcur, dmin, dmax, dcur]` for our alive messages.
    pub fn vsn(&self) -> [u8; 6] {
        [
            ML_PROTOCOL_MIN,
            ML_PROTOCOL_MAX,
            self.ml_protocol(),
            SERF_PROTOCOL_MIN,
            SERF_PROTOCOL_MAX,
            self.protocol,
        ]
    }
}

/// memberlist's suspicion timeout: `mult * max(1, log10(n)) * interval`.
pub fn suspicion_timeout(mult: usize, n: usize, interval: Duration) -> Duration {
    let scale = (n.max(1) as f64).log10().max(1.0);
    let ms = (scale * 1000.0) as u64;
    interval * (mult as u32) * (ms as u32) / 1000
}

/// memberlist's retransmit limit: `mult * ceil(log10(n + 1))`.
pub fn retransmit_limit(mult: usize, n: usize) -> usize {
    mult * ((n as f64 + 1.0).log10().ceil() as usize)
}

/// memberlist's push/pull interval scaling above 32 nodes.
pub fn push_pull_scale(interval: Duration, n: usize) -> Duration {
    if n <= 32 {
        return interval;
    }
    let mult = ((n as f64).log2() - 32f64.log2()).ceil() + 1.0;
    interval * (mult as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_match_serf() {
        let wan = Config::new("a", Profile::Wan);
        assert_eq!(wan.probe_interval, Duration::from_secs(5));
        assert_eq!(wan.suspicion_mult, 6);
        let local = Config::new("a", Profile::Local);
        assert_eq!(local.gossip_interval, Duration::from_millis(100));
        assert_eq!(local.indirect_checks, 1);
        assert_eq!(Config::new("a", Profile::Lan).vsn(), [1, 5, 2, 2, 5, 5]);
    }

    #[test]
    fn scaling_formulas() {
        assert_eq!(retransmit_limit(4, 1), 4);
        assert_eq!(retransmit_limit(4, 10), 8);
        assert_eq!(retransmit_limit(4, 99), 8);
        assert_eq!(retransmit_limit(4, 100), 12);
        assert_eq!(
            suspicion_timeout(4, 3, Duration::from_secs(1)),
            Duration::from_secs(4)
        );
        assert_eq!(
            suspicion_timeout(4, 100, Duration::from_secs(1)),
            Duration::from_secs(8)
        );
        assert_eq!(
            push_pull_scale(Duration::from_secs(30), 64),
            Duration::from_secs(60)
        );
    }
}
