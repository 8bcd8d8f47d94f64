//! Event coalescing as Serf's agent does it before handlers and RPC streams:
//! member events are batched per type, and a member whose state did not
//! change since the last flush is left out; user events sent with
//! `coalesce` keep only the newest Lamport time per name. A batch is flushed
//! after `period` from its first event, or after `quiescent` without events.

use crate::types::{Event, Member, MemberEventKind};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug)]
struct Window {
    flush_at: Duration,
    quiet_at: Duration,
}

/// Sans-I/O coalescer: feed events with [`Coalescer::push`], flush with
/// [`Coalescer::poll`] when [`Coalescer::poll_timeout`] is reached.
#[derive(Debug)]
pub struct Coalescer {
    period: Duration,
    quiescent: Duration,
    user_period: Duration,
    user_quiescent: Duration,
    members_window: Option<Window>,
    users_window: Option<Window>,
    /// Last type flushed per member.
    last: BTreeMap<String, MemberEventKind>,
    /// Latest pending event per member.
    latest: BTreeMap<String, (MemberEventKind, Member)>,
    /// name → (ltime, events at that ltime)
    users: BTreeMap<String, (u64, Vec<Event>)>,
}

impl Coalescer {
    pub fn new(
        period: Duration,
        quiescent: Duration,
        user_period: Duration,
        user_quiescent: Duration,
    ) -> Self {
        Coalescer {
            period,
            quiescent,
            user_period,
            user_quiescent,
            members_window: None,
            users_window: None,
            last: BTreeMap::new(),
            latest: BTreeMap::new(),
            users: BTreeMap::new(),
        }
    }

    fn member_enabled(&self) -> bool {
        !self.period.is_zero() && !self.quiescent.is_zero()
    }
    fn user_enabled(&self) -> bool {
        !self.user_period.is_zero() && !self.user_quiescent.is_zero()
    }

    /// Take an event; returns it at once if it is not coalesced.
    pub fn push(&mut self, ev: Event, now: Duration) -> Option<Event> {
        match ev {
            Event::Member { kind, members } if self.member_enabled() => {
                for m in members {
                    self.latest.insert(m.name.clone(), (kind, m));
                }
                touch(&mut self.members_window, now, self.period, self.quiescent);
                None
            }
            Event::User {
                ltime,
                ref name,
                coalesce: true,
                ..
            } if self.user_enabled() => {
                let entry = self.users.entry(name.clone()).or_insert((0, Vec::new()));
                if ltime > entry.0 {
                    *entry = (ltime, vec![ev]);
                } else if ltime == entry.0 {
                    entry.1.push(ev);
                }
                touch(
                    &mut self.users_window,
                    now,
                    self.user_period,
                    self.user_quiescent,
                );
                None
            }
            other => Some(other),
        }
    }

    pub fn poll_timeout(&self) -> Option<Duration> {
        let due = |w: &Option<Window>| w.as_ref().map(|w| w.flush_at.min(w.quiet_at));
        match (due(&self.members_window), due(&self.users_window)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Flush whatever is due at `now`.
    pub fn poll(&mut self, now: Duration) -> Vec<Event> {
        let mut out = Vec::new();
        if is_due(&self.members_window, now) {
            self.members_window = None;
            let mut batches: Vec<(MemberEventKind, Vec<Member>)> = Vec::new();
            for (name, (kind, member)) in std::mem::take(&mut self.latest) {
                if self.last.get(&name) == Some(&kind) && kind != MemberEventKind::Update {
                    continue;
                }
                self.last.insert(name, kind);
                match batches.iter_mut().find(|(k, _)| *k == kind) {
                    Some((_, v)) => v.push(member),
                    None => batches.push((kind, vec![member])),
                }
            }
            out.extend(
                batches
                    .into_iter()
                    .map(|(kind, members)| Event::Member { kind, members }),
            );
        }
        if is_due(&self.users_window, now) {
            self.users_window = None;
            for (_, (_, evs)) in std::mem::take(&mut self.users) {
                out.extend(evs);
            }
        }
        out
    }
}

fn touch(w: &mut Option<Window>, now: Duration, period: Duration, quiescent: Duration) {
    match w {
        Some(w) => w.quiet_at = now + quiescent,
        None => {
            *w = Some(Window {
                flush_at: now + period,
                quiet_at: now + quiescent,
            })
        }
    }
}

fn is_due(w: &Option<Window>, now: Duration) -> bool {
    w.as_ref()
        .is_some_and(|w| now >= w.flush_at || now >= w.quiet_at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::MemberStatus;

    fn member(name: &str) -> Member {
        Member {
            name: name.into(),
            addr: "127.0.0.1:1".parse().unwrap(),
            tags: BTreeMap::new(),
            status: MemberStatus::Alive,
            vsn: [1, 5, 2, 2, 5, 5],
        }
    }
    fn mev(kind: MemberEventKind, name: &str) -> Event {
        Event::Member {
            kind,
            members: vec![member(name)],
        }
    }
    const S: Duration = Duration::from_secs(1);

    #[test]
    fn member_events_batch_and_collapse() {
        let mut c = Coalescer::new(3 * S, S, 3 * S, S);
        assert!(c.push(mev(MemberEventKind::Join, "a"), S).is_none());
        assert!(c.push(mev(MemberEventKind::Join, "b"), S).is_none());
        assert!(c.push(mev(MemberEventKind::Failed, "c"), S).is_none());
        assert!(c.push(mev(MemberEventKind::Join, "c"), S).is_none());
        assert!(c.poll(S + S / 2).is_empty(), "not yet quiet");
        assert_eq!(c.poll_timeout(), Some(2 * S));
        let out = c.poll(2 * S);
        assert_eq!(out.len(), 1);
        match &out[0] {
            Event::Member { kind, members } => {
                assert_eq!(*kind, MemberEventKind::Join);
                assert_eq!(members.len(), 3);
            }
            _ => panic!(),
        }
        // A repeated join for "a" with no change in between is dropped.
        c.push(mev(MemberEventKind::Join, "a"), 10 * S);
        assert!(c.poll(11 * S).is_empty());
    }

    #[test]
    fn period_caps_a_busy_window() {
        let mut c = Coalescer::new(3 * S, S, 3 * S, S);
        for i in 0..10u64 {
            c.push(
                mev(MemberEventKind::Join, &format!("n{i}")),
                S * (i as u32) / 2,
            );
        }
        // Events every 0.5s never go quiet; the 3s period flushes.
        assert_eq!(c.poll_timeout(), Some(3 * S));
        assert_eq!(c.poll(3 * S).len(), 1);
    }

    #[test]
    fn user_events_keep_newest_ltime() {
        let mut c = Coalescer::new(3 * S, S, 3 * S, S);
        let ue = |lt: u64, p: &str, cc: bool| Event::User {
            ltime: lt,
            name: "deploy".into(),
            payload: p.as_bytes().to_vec(),
            coalesce: cc,
        };
        assert!(c.push(ue(1, "a", true), S).is_none());
        assert!(c.push(ue(3, "c", true), S).is_none());
        assert!(c.push(ue(2, "b", true), S).is_none());
        assert!(
            c.push(ue(5, "x", false), S).is_some(),
            "no-coalesce passes through"
        );
        let out = c.poll(2 * S);
        assert_eq!(out, vec![ue(3, "c", true)]);
    }
}
