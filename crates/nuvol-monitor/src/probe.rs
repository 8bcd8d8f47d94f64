//! One probe of one device (ICMP echo and SNMP at the same time), and
//! what a monitor keeps of a device it owns ([`Tracker`], sans-I/O): the
//! latest sample as the API shows it, failure counts, the interfaces'
//! counter bases for rates, and the open ring points of its metrics.

use crate::counters::RateTracker;
use crate::devices::Device;
use crate::ping::{PingOptions, PingStats, Pinger};
use crate::rings::{Closed, Open};
use crate::snmp::{self, SnmpError};
use crate::view::{IfView, ProbeCounts, Sample};

/// What one probe saw.
#[derive(Debug)]
pub struct Probe {
    /// When it started (seconds since the epoch).
    pub at: u64,
    /// The echo round, or why no echo could be sent.
    pub ping: Result<PingStats, String>,
    /// The SNMP reading; `None` for a device without SNMP.
    pub snmp: Option<Result<snmp::Sample, SnmpError>>,
}

/// Ping and read SNMP at once. `pinger` is `None` when this node has no
/// ICMP socket (`no_ping` says why). `snmp_limit` bounds the SNMP
/// sessions open at once (each a UDP socket; the receive buffer is shared,
/// see [`crate::snmp`]).
pub async fn probe(
    device: &Device,
    at: u64,
    pinger: Option<&Pinger>,
    no_ping: &str,
    ping_opts: &PingOptions,
    snmp_opts: &snmp::Options,
    snmp_limit: &tokio::sync::Semaphore,
) -> Probe {
    let ping = async {
        match pinger {
            Some(p) => p
                .ping(device.address, ping_opts)
                .await
                .map_err(|e| e.to_string()),
            None => Err(no_ping.to_owned()),
        }
    };
    let snmp = async {
        match device.snmp {
            Some(_) => {
                let _permit = snmp_limit.acquire().await;
                Some(snmp::sample(device, snmp_opts).await)
            }
            None => None,
        }
    };
    let (ping, snmp) = tokio::join!(ping, snmp);
    Probe { at, ping, snmp }
}

/// The metric names of a device's series.
pub const RTT: &str = "rtt_ms";
pub const LOSS: &str = "loss";

pub fn if_metric(index: u32, dir: &str) -> String {
    format!("if.{index}.{dir}_bps")
}

/// A metric of a device, as the tracker keys its open points: a small
/// value rather than its name (a monitor of 1,000 devices keeps a dozen
/// per device).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    Rtt,
    Loss,
    IfIn(u32),
    IfOut(u32),
}

impl Metric {
    /// The series' name (`rtt_ms`, `loss`, `if.N.in_bps`, `if.N.out_bps`).
    pub fn name(self) -> String {
        match self {
            Metric::Rtt => RTT.to_owned(),
            Metric::Loss => LOSS.to_owned(),
            Metric::IfIn(i) => if_metric(i, "in"),
            Metric::IfOut(i) => if_metric(i, "out"),
        }
    }

    pub fn parse(name: &str) -> Option<Metric> {
        match name {
            RTT => Some(Metric::Rtt),
            LOSS => Some(Metric::Loss),
            _ => {
                let rest = name.strip_prefix("if.")?;
                let (i, dir) = rest.split_once('.')?;
                let i: u32 = i.parse().ok()?;
                match dir {
                    "in_bps" => Some(Metric::IfIn(i)),
                    "out_bps" => Some(Metric::IfOut(i)),
                    _ => None,
                }
            }
        }
    }
}

/// What a monitor keeps of one device it owns.
#[derive(Debug, Default)]
pub struct Tracker {
    pub counts: ProbeCounts,
    /// The counter bases per ifIndex, sorted.
    rates: Vec<(u32, RateTracker)>,
    pub latest: Option<Sample>,
    /// The open ring points per metric, sorted by metric.
    open: Vec<(Metric, Open)>,
}

impl Tracker {
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// The open points of `metric`, created on first use with `resume`
    /// (the rows the store holds for the current slots).
    fn open_mut(
        &mut self,
        metric: Metric,
        at: u64,
        resume: &mut dyn FnMut(&str) -> Vec<(u32, crate::rings::StoredPoint)>,
    ) -> &mut Open {
        let i = match self.open.binary_search_by(|(m, _)| m.cmp(&metric)) {
            Ok(i) => i,
            Err(i) => {
                let mut o = Open::new();
                for (step, p) in resume(&metric.name()) {
                    o.resume(step, p, at);
                }
                self.open.insert(i, (metric, o));
                i
            }
        };
        &mut self.open[i].1
    }

    /// Record a probe taken by `monitor`; returns the points it closed,
    /// `(metric, point)`, for the store.
    pub fn record(
        &mut self,
        monitor: &str,
        p: Probe,
        resume: &mut dyn FnMut(&str) -> Vec<(u32, crate::rings::StoredPoint)>,
    ) -> Vec<(String, Closed)> {
        let at = p.at;
        self.counts.probes += 1;
        let mut s = Sample {
            monitor: monitor.to_owned(),
            at,
            answered: false,
            rtt_ms: None,
            rtt_min_ms: None,
            rtt_max_ms: None,
            loss: None,
            sent: 0,
            received: 0,
            uptime: None,
            interfaces: Vec::new(),
            ping_error: None,
            snmp_error: None,
            counts: ProbeCounts::default(),
        };
        let mut values: Vec<(Metric, f64)> = Vec::new();
        match p.ping {
            Ok(st) => {
                if st.received == 0 {
                    self.counts.ping_silent += 1;
                }
                s.answered |= st.received > 0;
                s.sent = st.sent;
                s.received = st.received;
                s.loss = Some(st.loss);
                s.rtt_ms = st.avg_ms;
                s.rtt_min_ms = st.min_ms;
                s.rtt_max_ms = st.max_ms;
                values.push((Metric::Loss, st.loss));
                if let Some(avg) = st.avg_ms {
                    values.push((Metric::Rtt, avg));
                }
            }
            Err(e) => {
                self.counts.ping_errors += 1;
                s.ping_error = Some(e);
            }
        }
        match p.snmp {
            None => {}
            Some(Ok(sample)) => {
                s.answered = true;
                s.uptime = Some(f64::from(sample.uptime_cs) / 100.0);
                for i in &sample.interfaces {
                    let (mut in_bps, mut out_bps) = (None, None);
                    if let Some(point) = sample.point(i.index) {
                        let k = match self.rates.binary_search_by_key(&i.index, |(k, _)| *k) {
                            Ok(k) => k,
                            Err(k) => {
                                self.rates.insert(k, (i.index, RateTracker::default()));
                                k
                            }
                        };
                        if let Ok(r) = self.rates[k].1.update(point) {
                            in_bps = Some(r.in_bps);
                            out_bps = Some(r.out_bps);
                            values.push((Metric::IfIn(i.index), r.in_bps));
                            values.push((Metric::IfOut(i.index), r.out_bps));
                        }
                    }
                    s.interfaces.push(IfView {
                        index: i.index,
                        oper_up: i.oper_up,
                        in_octets: i.in_octets,
                        out_octets: i.out_octets,
                        hc: i.hc,
                        in_bps,
                        out_bps,
                    });
                }
                // Interfaces gone from the agent: their bases go too.
                self.rates
                    .retain(|(idx, _)| sample.interfaces.iter().any(|i| i.index == *idx));
            }
            Some(Err(e)) => {
                match &e {
                    SnmpError::Garbage { .. } | SnmpError::Agent { .. } => {
                        self.counts.snmp_garbage += 1;
                    }
                    SnmpError::NoAnswer { .. } | SnmpError::Io { .. } => {
                        self.counts.snmp_timeouts += 1;
                    }
                    SnmpError::NotConfigured(_) => {}
                }
                s.snmp_error = Some(e.to_string());
            }
        }
        s.counts = self.counts.clone();
        let mut closed = Vec::new();
        for (metric, v) in values {
            for c in self.open_mut(metric, at, resume).add(at, v) {
                closed.push((metric.name(), c));
            }
        }
        self.latest = Some(s);
        closed
    }

    /// The open point of `metric` at resolution `step`.
    pub fn open_point(&self, metric: &str, step: u32) -> Option<crate::rings::StoredPoint> {
        let m = Metric::parse(metric)?;
        let i = self.open.binary_search_by(|(k, _)| k.cmp(&m)).ok()?;
        self.open[i].1.open(step)
    }

    /// The metrics this device has series of.
    pub fn metrics(&self) -> Vec<String> {
        let mut m: Vec<Metric> = vec![Metric::Rtt, Metric::Loss];
        if let Some(s) = &self.latest {
            for i in &s.interfaces {
                m.push(Metric::IfIn(i.index));
                m.push(Metric::IfOut(i.index));
            }
        }
        m.extend(self.open.iter().map(|(k, _)| *k));
        m.sort();
        m.dedup();
        m.into_iter().map(Metric::name).collect()
    }

    /// Every open point, for a flush at a stop.
    pub fn pending(&self) -> Vec<(String, Closed)> {
        self.open
            .iter()
            .flat_map(|(m, o)| o.pending().into_iter().map(move |c| (m.name(), c)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snmp::IfSample;

    fn no_resume(_: &str) -> Vec<(u32, crate::rings::StoredPoint)> {
        Vec::new()
    }

    fn snmp_sample(uptime_cs: u32, in_octets: u64) -> snmp::Sample {
        snmp::Sample {
            uptime_cs,
            interfaces: vec![IfSample {
                index: 2,
                oper_up: true,
                in_octets,
                out_octets: in_octets / 2,
                hc: true,
            }],
            missing: Vec::new(),
        }
    }

    #[test]
    fn samples_rates_and_counts() {
        let mut t = Tracker::new();
        let t0 = 1_764_547_200;
        let ping = PingStats::from_rtts(5, &[std::time::Duration::from_millis(3); 4]);
        let closed = t.record(
            "m1",
            Probe {
                at: t0,
                ping: Ok(ping.clone()),
                snmp: Some(Ok(snmp_sample(1000, 1_000_000))),
            },
            &mut no_resume,
        );
        assert!(closed.is_empty());
        let s = t.latest.clone().unwrap();
        assert!(s.answered);
        assert_eq!((s.sent, s.received), (5, 4));
        assert!((s.loss.unwrap() - 0.2).abs() < 1e-9);
        assert_eq!(s.uptime, Some(10.0));
        assert_eq!(s.interfaces[0].in_bps, None, "no rate from one sample");
        assert_eq!(s.cause(), None);
        // 60 s later, 750 000 octets more in: 100 000 bit/s.
        t.record(
            "m1",
            Probe {
                at: t0 + 60,
                ping: Ok(ping),
                snmp: Some(Ok(snmp_sample(7000, 1_750_000))),
            },
            &mut no_resume,
        );
        let s = t.latest.clone().unwrap();
        let r = s.interfaces[0].in_bps.unwrap();
        assert!((r - 100_000.0).abs() < 1.0, "{r}");
        assert!(t.metrics().contains(&"if.2.in_bps".to_owned()));
        // Silent on ping, SNMP times out: not answered, counted, a cause.
        let silent = PingStats::from_rtts(5, &[]);
        t.record(
            "m1",
            Probe {
                at: t0 + 120,
                ping: Ok(silent),
                snmp: Some(Err(SnmpError::NoAnswer {
                    addr: "10.0.0.1:161".parse().unwrap(),
                    attempts: 2,
                    timeout: std::time::Duration::from_secs(1),
                    refused: false,
                })),
            },
            &mut no_resume,
        );
        let s = t.latest.clone().unwrap();
        assert!(!s.answered);
        assert_eq!(s.counts.probes, 3);
        assert_eq!(s.counts.ping_silent, 1);
        assert_eq!(s.counts.snmp_timeouts, 1);
        let cause = s.cause().unwrap();
        assert!(
            cause.contains("ping: no reply") && cause.contains("SNMP"),
            "{cause}"
        );
        // No ICMP socket: counted, and no loss value.
        let closed = t.record(
            "m1",
            Probe {
                at: t0 + 180,
                ping: Err("no ICMP socket".into()),
                snmp: None,
            },
            &mut no_resume,
        );
        assert!(closed.is_empty());
        assert!(t.latest.as_ref().unwrap().ping_error.is_some());
        assert_eq!(t.counts.ping_errors, 1);
        // 5 minutes on, the first 5-minute point of the loss closes: three
        // samples, 0.2, 0.2 and 1.
        let closed = t.record(
            "m1",
            Probe {
                at: t0 + 300,
                ping: Ok(PingStats::from_rtts(5, &[])),
                snmp: None,
            },
            &mut no_resume,
        );
        let (_, c) = closed
            .iter()
            .find(|(m, c)| m == LOSS && c.step == 300)
            .unwrap();
        assert_eq!(c.stored.point.count, 3);
        assert_eq!((c.stored.point.min, c.stored.point.max), (0.2, 1.0));
        assert_eq!(t.pending().len(), t.open.len() * 4, "every open point");
        assert!(t.open_point(LOSS, 300).is_some());
        assert!(t.open_point("if.2.out_bps", 1800).is_some());
        assert_eq!(t.open_point("if.9.out_bps", 300), None);
    }

    #[test]
    fn metric_names_round_trip() {
        for m in [
            Metric::Rtt,
            Metric::Loss,
            Metric::IfIn(7),
            Metric::IfOut(4_000_000_000),
        ] {
            assert_eq!(Metric::parse(&m.name()), Some(m));
        }
        for bad in [
            "",
            "rtt",
            "if.x.in_bps",
            "if.1.sideways_bps",
            "if.1",
            "if..in_bps",
        ] {
            assert_eq!(Metric::parse(bad), None, "{bad}");
        }
    }
}
