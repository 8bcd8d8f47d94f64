//! Who may see and who may act.
//!
//! - Viewing: by the client's address ([`ViewRule`]: loopback by default,
//!   the LAN, anyone, or listed networks), or with a session.
//! - Acting: the API token (a bearer header, as the REST API takes it), or a
//!   session obtained from it at `/login` ([`Sessions`]): a random id in an
//!   `HttpOnly; SameSite=Strict` cookie, and a per-session CSRF token every
//!   form carries. The core's router checks both (see `nuvol_agent::http`);
//!   this module is the [`Authenticator`] that recognises the cookie.
//!
//! Sessions live in memory: a restarted agent asks for the token again.

use nuvol_agent::http::{Access, Authenticator, Credential, Principal};
use rand::RngCore;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "nuvol_session";
/// The language cookie's name.
pub const LANG_COOKIE: &str = "nuvol_lang";
/// Most sessions kept (the oldest is dropped beyond).
pub const MAX_SESSIONS: usize = 256;
/// Failed logins allowed per client address per minute.
pub const LOGIN_ATTEMPTS_PER_MINUTE: u32 = 5;

/// One network of a view rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Net {
    Loopback,
    /// Private, link-local and unique-local addresses (and loopback).
    Lan,
    Any,
    Cidr(IpAddr, u8),
}

/// Who may view without logging in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewRule(pub Vec<Net>);

impl ViewRule {
    /// Parse `loopback`, `lan`, `any`, `none`, `IP` or `IP/PREFIX` items.
    pub fn parse(items: &[String]) -> Result<ViewRule, String> {
        let mut nets = Vec::new();
        for it in items {
            let it = it.trim();
            nets.push(match it {
                "loopback" => Net::Loopback,
                "lan" => Net::Lan,
                "any" => Net::Any,
                "none" => continue,
                _ => {
                    let (ip, len) = match it.split_once('/') {
                        Some((ip, len)) => (ip, Some(len)),
                        None => (it, None),
                    };
                    let ip: IpAddr = ip.parse().map_err(|_| {
                        format!("{it:?} is not loopback, lan, any, none, an IP or IP/PREFIX")
                    })?;
                    let max = if ip.is_ipv4() { 32 } else { 128 };
                    let len = match len {
                        None => max,
                        Some(l) => match l.parse::<u8>() {
                            Ok(l) if l <= max => l,
                            _ => return Err(format!("{it:?}: the prefix must be 0-{max}")),
                        },
                    };
                    Net::Cidr(ip, len)
                }
            });
        }
        Ok(ViewRule(nets))
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|n| match n {
            Net::Any => true,
            Net::Loopback => ip.is_loopback(),
            Net::Lan => ip.is_loopback() || is_lan(ip),
            Net::Cidr(net, len) => in_cidr(ip, canonical(*net), *len),
        })
    }
}

/// IPv4-mapped IPv6 addresses as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn is_lan(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_link_local()
                // Carrier-grade NAT space, as community networks use it.
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xC0) == 64)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments()[0];
            (s & 0xfe00) == 0xfc00 || (s & 0xffc0) == 0xfe80
        }
    }
}

fn in_cidr(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            (u32::from(a) & mask) == (u32::from(b) & mask)
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            (u128::from(a) & mask) == (u128::from(b) & mask)
        }
        _ => false,
    }
}

struct Session {
    csrf: Arc<str>,
    id: Arc<str>,
    last_seen: Instant,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<String, Session>,
    /// Failed logins per address: (window start, count).
    failures: HashMap<IpAddr, (Instant, u32)>,
}

/// The dashboard's sessions.
#[derive(Clone)]
pub struct Sessions {
    inner: Arc<Mutex<Inner>>,
    ttl: Duration,
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Sessions {
    /// Sessions idle for longer than `ttl` end.
    pub fn new(ttl: Duration) -> Self {
        Sessions {
            inner: Arc::default(),
            ttl,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new session; returns its id (the cookie's value).
    pub fn create(&self) -> String {
        let id = random_token();
        let now = Instant::now();
        let mut g = self.lock();
        let ttl = self.ttl;
        g.sessions
            .retain(|_, s| now.duration_since(s.last_seen) < ttl);
        if g.sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = g
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| k.clone())
            {
                g.sessions.remove(&oldest);
            }
        }
        g.sessions.insert(
            id.clone(),
            Session {
                csrf: Arc::from(random_token()),
                id: Arc::from(id.as_str()),
                last_seen: now,
            },
        );
        id
    }

    /// The principal of a live session (and it is kept alive).
    pub fn lookup(&self, id: &str) -> Option<Principal> {
        let now = Instant::now();
        let mut g = self.lock();
        let s = g.sessions.get_mut(id)?;
        if now.duration_since(s.last_seen) >= self.ttl {
            g.sessions.remove(id);
            return None;
        }
        s.last_seen = now;
        Some(Principal {
            // Sessions come from the API token, whose holder is an admin;
            // users with lesser roles will get their own sessions.
            role: Access::Admin,
            via: Credential::Session {
                id: s.id.clone(),
                csrf: s.csrf.clone(),
            },
        })
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn end(&self, id: &str) {
        self.lock().sessions.remove(id);
    }

    pub fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `ip` may try to log in now.
    pub fn may_try(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let g = self.lock();
        match g.failures.get(&ip) {
            Some((start, n)) => {
                now.duration_since(*start) >= Duration::from_secs(60)
                    || *n < LOGIN_ATTEMPTS_PER_MINUTE
            }
            None => true,
        }
    }

    pub fn failed(&self, ip: IpAddr) {
        let now = Instant::now();
        let mut g = self.lock();
        if g.failures.len() > 4096 {
            g.failures
                .retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(60));
        }
        let e = g.failures.entry(ip).or_insert((now, 0));
        if now.duration_since(e.0) >= Duration::from_secs(60) {
            *e = (now, 0);
        }
        e.1 += 1;
    }
}

/// A cookie's value from a `Cookie` header.
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl Authenticator for Sessions {
    fn authenticate(&self, parts: &axum::http::request::Parts) -> Option<Principal> {
        self.lookup(cookie(&parts.headers, SESSION_COOKIE)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(items: &[&str]) -> ViewRule {
        ViewRule::parse(&items.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn view_rules() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let lo = rule(&["loopback"]);
        assert!(lo.allows(ip("127.0.0.1")) && lo.allows(ip("127.8.9.1")) && lo.allows(ip("::1")));
        assert!(lo.allows(ip("::ffff:127.0.0.1")));
        assert!(!lo.allows(ip("192.168.1.5")));
        let lan = rule(&["lan"]);
        for ok in [
            "10.1.2.3",
            "192.168.1.5",
            "172.16.0.1",
            "fe80::1",
            "fd00::1",
            "100.64.0.1",
        ] {
            assert!(lan.allows(ip(ok)), "{ok}");
        }
        assert!(!lan.allows(ip("8.8.8.8")) && !lan.allows(ip("2001:db8::1")));
        let nets = rule(&["10.228.0.0/16", "2001:db8::/32"]);
        assert!(nets.allows(ip("10.228.3.4")) && !nets.allows(ip("10.229.0.1")));
        assert!(nets.allows(ip("2001:db8:1::5")) && !nets.allows(ip("127.0.0.1")));
        assert!(rule(&["any"]).allows(ip("8.8.8.8")));
        assert!(!rule(&["none"]).allows(ip("127.0.0.1")));
        assert!(rule(&["0.0.0.0/0"]).allows(ip("1.2.3.4")));
        for bad in ["lan2", "10.0.0.0/33", "::/129", "x/8", "10.0.0.0/"] {
            assert!(ViewRule::parse(&[bad.to_string()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn sessions_expire_and_end() {
        let s = Sessions::new(Duration::from_millis(50));
        let id = s.create();
        let p = s.lookup(&id).unwrap();
        assert_eq!(p.role, Access::Admin);
        assert_eq!(p.csrf().map(str::len), Some(64));
        assert!(s.lookup("nope").is_none());
        std::thread::sleep(Duration::from_millis(80));
        assert!(s.lookup(&id).is_none());
        let id = s.create();
        s.end(&id);
        assert!(s.lookup(&id).is_none());
    }

    #[test]
    fn sessions_are_bounded() {
        let s = Sessions::new(Duration::from_secs(60));
        let first = s.create();
        for _ in 0..MAX_SESSIONS {
            s.create();
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(s.lookup(&first).is_none());
    }

    #[test]
    fn login_attempts_are_limited() {
        let s = Sessions::new(Duration::from_secs(60));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..LOGIN_ATTEMPTS_PER_MINUTE {
            assert!(s.may_try(ip));
            s.failed(ip);
        }
        assert!(!s.may_try(ip));
        assert!(s.may_try("10.0.0.2".parse().unwrap()));
    }

    #[test]
    fn cookies_are_found() {
        let mut h = axum::http::HeaderMap::new();
        h.append("cookie", "a=1; nuvol_session=abc".parse().unwrap());
        h.append("cookie", "b=2".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
