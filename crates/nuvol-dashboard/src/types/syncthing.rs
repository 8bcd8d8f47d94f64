//! `syncthing`: the device ID to add (TXT `id`, checked against
//! Syncthing's format), and a link to the GUI when TXT `gui` gives its port.

use super::{txt, url_host, TypeActions};
use crate::i18n::{Lang, T};
use maud::{html, Markup};
use nuvol_catalog::model::ServiceEntry;

pub struct Syncthing;

/// A Syncthing device ID: 8 groups of 7 base32 characters joined by `-`
/// (or the 56/52 characters without dashes).
pub fn device_id(s: &str) -> Option<&str> {
    let chars: String = s.chars().filter(|c| *c != '-').collect();
    let ok = matches!(chars.len(), 52 | 56)
        && chars
            .bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
        && s.len() <= 63;
    ok.then_some(s)
}

impl TypeActions for Syncthing {
    fn types(&self) -> &'static [&'static str] {
        &["syncthing"]
    }

    fn open_url(&self, e: &ServiceEntry) -> Option<String> {
        let port: u16 = txt(e, "gui")?.parse().ok().filter(|p| *p != 0)?;
        Some(format!("http://{}:{port}/", url_host(&e.ip)?))
    }

    fn render(&self, e: &ServiceEntry, lang: Lang) -> Markup {
        html! {
            @if let Some(id) = txt(e, "id").and_then(device_id) {
                details {
                    summary { (T::AddDevice.get(lang)) }
                    p { (T::SyncthingDevice.get(lang)) ": " code { (id) } }
                    p { "tcp://" (e.ip) ":" (e.port) }
                }
            }
            @if let Some(url) = self.open_url(e) {
                a href=(url) rel="noopener noreferrer" target="_blank" { (T::Open.get(lang)) " GUI" }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::entry;

    #[test]
    fn device_ids() {
        let id = "MFZWI3D-BONSGYC-YLTMRWG-C43ENR5-QXGZDMM-FZWI3DP-BONSGYY-LTMRWAD";
        assert_eq!(device_id(id), Some(id));
        assert_eq!(device_id("<script>"), None);
        assert_eq!(device_id("MFZWI3D"), None);
        let e = entry(
            "syncthing",
            "10.0.0.2",
            22000,
            &[("id", id), ("gui", "8384")],
        );
        let html = Syncthing.render(&e, Lang::En).into_string();
        assert!(
            html.contains(id) && html.contains("http://10.0.0.2:8384/"),
            "{html}"
        );
        let e = entry(
            "syncthing",
            "10.0.0.2",
            22000,
            &[("id", "\"><script>x</script>")],
        );
        assert!(!Syncthing
            .render(&e, Lang::En)
            .into_string()
            .contains("script"));
    }
}
