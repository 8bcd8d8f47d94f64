//! `http`, `https` and `web`: an "open" link (TXT `path` appended when it
//! is a plain absolute path).

use super::{txt, url_host, TypeActions};
use crate::i18n::{Lang, T};
use maud::{html, Markup};
use nuvol_catalog::model::ServiceEntry;

pub struct Http;

/// A TXT `path` usable in a URL: absolute, printable ASCII, no `//`
/// (which would name another host), no quotes or angle brackets.
fn safe_path(p: &str) -> Option<&str> {
    let ok = p.starts_with('/')
        && !p.starts_with("//")
        && p.len() <= 512
        && p.bytes().all(|b| {
            b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'<' | b'>' | b'\\' | b'`')
        });
    ok.then_some(p)
}

impl TypeActions for Http {
    fn types(&self) -> &'static [&'static str] {
        &["http", "https", "web"]
    }

    fn open_url(&self, e: &ServiceEntry) -> Option<String> {
        let host = url_host(&e.ip)?;
        let scheme = if e.stype.eq_ignore_ascii_case("https") || e.port == 443 {
            "https"
        } else {
            "http"
        };
        let path = txt(e, "path").and_then(safe_path).unwrap_or("/");
        Some(format!("{scheme}://{host}:{}{path}", e.port))
    }

    fn render(&self, e: &ServiceEntry, lang: Lang) -> Markup {
        html! {
            @if let Some(url) = self.open_url(e) {
                a href=(url) rel="noopener noreferrer" target="_blank" {
                    (T::Open.get(lang))
                    span class="visually-hidden" { " " (e.description) }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::entry;

    #[test]
    fn open_links() {
        let e = entry("http", "10.0.0.5", 8080, &[("path", "/admin")]);
        assert_eq!(
            Http.open_url(&e).as_deref(),
            Some("http://10.0.0.5:8080/admin")
        );
        let e = entry("https", "fd00::5", 8443, &[]);
        assert_eq!(
            Http.open_url(&e).as_deref(),
            Some("https://[fd00::5]:8443/")
        );
        for bad in [
            "//evil.example/",
            "javascript:x",
            "/\"onmouseover=x",
            "/<b>",
        ] {
            let e = entry("http", "10.0.0.5", 80, &[("path", bad)]);
            assert_eq!(
                Http.open_url(&e).as_deref(),
                Some("http://10.0.0.5:80/"),
                "{bad}"
            );
        }
        let e = entry("http", "evil.example", 80, &[]);
        assert_eq!(Http.open_url(&e), None);
        assert!(Http.render(&e, Lang::En).into_string().is_empty());
    }
}
