//! `[swarm]`: whether nuvol forms and keeps a Docker Swarm with the other
//! swarm-enabled nodes, and its tuning for fast failover.

use nuvol_agent::config::{ConfigError, Validate};
use std::time::Duration;

nuvol_agent::settings! {
    /// Docker Swarm, formed and kept by nuvol.
    pub struct SwarmSettings in "swarm", "Swarm" {
        /// Form a Docker Swarm with the other nodes that have it on (the
        /// first node initialises it, the others join with tokens shared
        /// over encrypted gossip).
        enable: bool = false, flag "swarm";
        /// The Docker Engine's socket ("" is /var/run/docker.sock).
        docker: String = String::new(), flag "swarm-docker";
        /// The address the Swarm advertises for this node ("" is the
        /// gossip advertise IP).
        advertise: String = String::new(), flag "swarm-advertise";
        /// How many nodes are managers (at most; fewer when fewer nodes).
        managers: u32 = 3, flag "swarm-managers";
        /// The dispatcher heartbeat period set when nuvol initialises the
        /// swarm: a node is down after a few missed heartbeats (Swarm's
        /// default is 5s).
        heartbeat: Duration = Duration::from_secs(1), flag "swarm-heartbeat";
        /// The raft election timeout set when nuvol initialises the swarm,
        /// in raft ticks (one a second): how long managers wait for a lost
        /// leader before electing another (Swarm's default is 10; at least
        /// 2, the heartbeat being 1 tick).
        election_ticks: u32 = 3, flag "swarm-election-ticks";
        /// The restart delay of the tasks of services nuvol creates
        /// (Swarm's default is 5s); offered to other components by the
        /// SwarmHandle.
        task_restart_delay: Duration = Duration::from_secs(1), flag "swarm-task-restart-delay";
        /// Keep the tasks of one-replica HA services off the raft leader:
        /// the leader labels itself nuvol.swarm.leader=true (while another
        /// node can take such a task) and those services avoid that label,
        /// so losing the node that runs one costs no raft election before
        /// Swarm reschedules it. When leadership moves to the node running
        /// one, Swarm moves the task (a short planned restart).
        singletons_off_leader: bool = true, flag "swarm-singletons-off-leader";
        /// On `nuvol leave`: how long to wait for this node's tasks to move
        /// away once it is drained (a worker is drained by a manager), before
        /// it leaves the swarm.
        leave_drain_timeout: Duration = Duration::from_secs(30), flag "swarm-leave-drain-timeout";
        /// Fencing: how long this node must be on the minority side of a
        /// partition (a strict majority of the gossip members that have not
        /// left is not alive in its view) before it stops its containers
        /// labelled nuvol.ha.singleton=true, and keeps stopping them while
        /// cut off, so that only the majority side's copy runs. A shorter
        /// cut (a blip) stops nothing.
        fence_after: Duration = Duration::from_secs(5), flag "swarm-fence-after";
        /// Time between two looks at the Swarm (membership changes are
        /// acted on at once).
        poll_every: Duration = Duration::from_secs(1), flag "swarm-poll-every";
    }
}

/// The socket path used for `docker`.
pub fn socket_path(docker: &str) -> String {
    let s = docker.trim_start_matches("unix://");
    if s.is_empty() {
        "/var/run/docker.sock".to_owned()
    } else {
        s.to_owned()
    }
}

impl Validate for SwarmSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.managers == 0 {
            return Err(ConfigError::invalid::<Self>(
                "managers",
                "must be at least 1",
            ));
        }
        if !self.advertise.is_empty() && self.advertise.parse::<std::net::IpAddr>().is_err() {
            return Err(ConfigError::invalid::<Self>(
                "advertise",
                format!("{:?} is not an IP address", self.advertise),
            ));
        }
        if self.election_ticks < 2 {
            return Err(ConfigError::invalid::<Self>(
                "election_ticks",
                "must be at least 2 (more than raft's heartbeat of 1 tick)",
            ));
        }
        if self.heartbeat < Duration::from_millis(100) {
            return Err(ConfigError::invalid::<Self>(
                "heartbeat",
                "must be at least 100ms",
            ));
        }
        if self.poll_every < Duration::from_millis(100) {
            return Err(ConfigError::invalid::<Self>(
                "poll_every",
                "must be at least 100ms",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nuvol_agent::config::{ConfigFile, Section};

    fn load(file: &str, args: &[&str]) -> Result<SwarmSettings, ConfigError> {
        let m = clap::Command::new("t")
            .args(SwarmSettings::args())
            .try_get_matches_from(std::iter::once("t").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{e}"));
        let f = ConfigFile::parse(file, None)?;
        let s = SwarmSettings::load(f.section("swarm"), &m)?;
        s.validate()?;
        Ok(s)
    }

    #[test]
    fn defaults_and_flags() {
        let s = load("", &[]).unwrap();
        assert!(!s.enable);
        assert_eq!(s.managers, 3);
        assert_eq!(s.heartbeat, Duration::from_secs(1));
        assert_eq!(s.leave_drain_timeout, Duration::from_secs(30));
        assert_eq!(s.election_ticks, 3);
        let s = load(
            "[swarm]\nenable = true\nheartbeat = '2s'\n",
            &["--swarm-managers", "5", "--swarm-docker", "/tmp/d.sock"],
        )
        .unwrap();
        assert!(s.enable);
        assert_eq!(s.managers, 5);
        assert_eq!(s.heartbeat, Duration::from_secs(2));
        assert_eq!(socket_path(&s.docker), "/tmp/d.sock");
    }

    #[test]
    fn bad_values_are_refused_naming_the_key() {
        for (file, key) in [
            ("[swarm]\nmanagers = 0\n", "managers"),
            ("[swarm]\nadvertise = 'nope'\n", "advertise"),
            ("[swarm]\nheartbeat = '0s'\n", "heartbeat"),
            ("[swarm]\nelection_ticks = 1\n", "election_ticks"),
        ] {
            let e = load(file, &[]).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
    }

    #[test]
    fn the_socket_defaults_to_dockers() {
        assert_eq!(socket_path(""), "/var/run/docker.sock");
        assert_eq!(socket_path("unix:///run/d.sock"), "/run/d.sock");
    }
}
