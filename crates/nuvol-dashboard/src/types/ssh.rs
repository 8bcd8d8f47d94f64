//! `ssh`: the command to connect (TXT `user` when it is a plain user name).

use super::{txt, TypeActions};
use crate::i18n::{Lang, T};
use maud::{html, Markup};
use nuvol_catalog::model::ServiceEntry;
use std::net::IpAddr;

pub struct Ssh;

fn safe_user(u: &str) -> Option<&str> {
    let ok = !u.is_empty()
        && u.len() <= 32
        && !u.starts_with('-')
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    ok.then_some(u)
}

/// `ssh -p PORT [user@]IP`, or None when the IP is not an address.
pub fn command(e: &ServiceEntry) -> Option<String> {
    let ip: IpAddr = e.ip.parse().ok()?;
    let user = txt(e, "user")
        .and_then(safe_user)
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    Some(if e.port == 22 {
        format!("ssh {user}{ip}")
    } else {
        format!("ssh -p {} {user}{ip}", e.port)
    })
}

impl TypeActions for Ssh {
    fn types(&self) -> &'static [&'static str] {
        &["ssh"]
    }

    fn render(&self, e: &ServiceEntry, lang: Lang) -> Markup {
        html! {
            @if let Some(cmd) = command(e) {
                span class="visually-hidden" { (T::Ssh.get(lang)) ": " }
                code { (cmd) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::entry;

    #[test]
    fn commands() {
        assert_eq!(
            command(&entry("ssh", "10.0.0.1", 22, &[])).as_deref(),
            Some("ssh 10.0.0.1")
        );
        assert_eq!(
            command(&entry("ssh", "10.0.0.1", 2222, &[("user", "pi")])).as_deref(),
            Some("ssh -p 2222 pi@10.0.0.1")
        );
        assert_eq!(
            command(&entry(
                "ssh",
                "10.0.0.1",
                22,
                &[("user", "-oProxyCommand=x")]
            ))
            .as_deref(),
            Some("ssh 10.0.0.1")
        );
        assert_eq!(command(&entry("ssh", "host; rm -rf", 22, &[])), None);
    }
}
