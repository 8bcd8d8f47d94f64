//! Mapping avahi-ps services to DNS-SD names and checking them.

use crate::{MdnsError, MdnsService};
use std::collections::HashSet;

/// Longest announced service type, in bytes. RFC 6763 says 15; avahi-ps
/// types can be longer and `mdns-sd` accepts up to 30.
pub const MAX_TYPE_LEN: usize = 30;
/// Longest instance name: one DNS label.
pub const MAX_INSTANCE_LEN: usize = 63;
/// Longest TXT entry (`k=v`), in bytes: one DNS character-string.
pub const MAX_TXT_ENTRY_LEN: usize = 255;

/// `_<stype>._tcp.local.`
pub fn service_type_domain(stype: &str) -> String {
    format!("_{stype}._tcp.local.")
}

/// Whether an announced `X` of `_X._tcp.local.` is importable: a valid
/// avahi-ps type (`[A-Za-z0-9-]`, 1 to 63 bytes, as the catalog checks).
pub fn is_importable_type(x: &str) -> bool {
    !x.is_empty() && x.len() <= 63 && x.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Check a type for announcing: an avahi-ps type that is also a valid
/// DNS-SD service name (RFC 6335 §5.1: a letter, no leading, trailing or
/// double `-`), at most [`MAX_TYPE_LEN`] bytes.
pub fn validate_type(stype: &str) -> Result<(), MdnsError> {
    let bad = |why| Err(MdnsError::BadType(stype.to_owned(), why));
    if stype.is_empty() || stype.len() > MAX_TYPE_LEN {
        return bad("must be 1 to 30 bytes");
    }
    if !stype
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return bad("only letters, digits and '-' are allowed");
    }
    if stype.starts_with('-') || stype.ends_with('-') || stype.contains("--") {
        return bad("no leading, trailing or double '-'");
    }
    if !stype.bytes().any(|b| b.is_ascii_alphabetic()) {
        return bad("needs at least one letter");
    }
    Ok(())
}

/// Check an instance name (a description): 1 to 63 bytes, no control
/// characters, not blank. Spaces and `_` are both fine.
pub fn validate_instance(instance: &str) -> Result<(), MdnsError> {
    let bad = |why| Err(MdnsError::BadInstance(instance.to_owned(), why));
    if instance.trim().is_empty() {
        return bad("must not be empty");
    }
    if instance.len() > MAX_INSTANCE_LEN {
        return bad("must be at most 63 bytes");
    }
    if instance.chars().any(char::is_control) {
        return bad("must not contain control characters");
    }
    Ok(())
}

/// Check TXT entries: printable-ASCII keys without `=`, unique ignoring
/// case, and at most [`MAX_TXT_ENTRY_LEN`] bytes per `k=v`.
pub fn validate_txt(txt: &[(String, String)]) -> Result<(), MdnsError> {
    let mut keys = HashSet::new();
    for (k, v) in txt {
        let bad = |why| Err(MdnsError::BadTxt(format!("{k}={v}"), why));
        if k.is_empty() {
            return bad("empty key");
        }
        if !k.bytes().all(|b| (0x20..=0x7e).contains(&b)) || k.contains('=') {
            return bad("key must be printable ASCII without '='");
        }
        if k.len() + 1 + v.len() > MAX_TXT_ENTRY_LEN {
            return bad("entry longer than 255 bytes");
        }
        if !keys.insert(k.to_ascii_lowercase()) {
            return bad("duplicate key");
        }
    }
    Ok(())
}

/// Check a whole service.
pub fn validate_service(s: &MdnsService) -> Result<(), MdnsError> {
    validate_type(&s.stype)?;
    validate_instance(&s.instance)?;
    if s.port == 0 {
        return Err(MdnsError::BadPort(format!("{}/{}", s.stype, s.instance)));
    }
    validate_txt(&s.txt)
}

/// Check a host name: one DNS label of `[A-Za-z0-9-]`, 1 to 63 bytes,
/// not starting or ending with `-`.
pub fn validate_hostname(h: &str) -> Result<(), MdnsError> {
    let bad = |why| Err(MdnsError::BadHostname(h.to_owned(), why));
    if h.is_empty() || h.len() > 63 {
        return bad("must be 1 to 63 bytes");
    }
    if !h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return bad("only letters, digits and '-' are allowed");
    }
    if h.starts_with('-') || h.ends_with('-') {
        return bad("must not start or end with '-'");
    }
    Ok(())
}

/// An instance name in Cloudy's form: spaces as `_` (what avahi-ps stores
/// in the `d` field of its services tag).
pub fn cloudy_description(instance: &str) -> String {
    instance.trim().replace(' ', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(stype: &str, instance: &str, port: u16, txt: &[(&str, &str)]) -> MdnsService {
        MdnsService {
            stype: stype.into(),
            instance: instance.into(),
            port,
            txt: txt
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn type_mapping() {
        assert_eq!(service_type_domain("http"), "_http._tcp.local.");
        assert_eq!(service_type_domain("tahoe-lafs"), "_tahoe-lafs._tcp.local.");
    }

    #[test]
    fn types() {
        for ok in [
            "http",
            "ssh",
            "tahoe-lafs",
            "a1",
            "X",
            "peerstreamer",
            "a-b-c",
        ] {
            validate_type(ok).unwrap();
        }
        validate_type(&"a".repeat(30)).unwrap();
        for bad in [
            "",
            "a_b",
            "a b",
            "a.b",
            "-a",
            "a-",
            "a--b",
            "123",
            "é",
            &"a".repeat(31),
        ] {
            assert!(
                matches!(validate_type(bad), Err(MdnsError::BadType(..))),
                "{bad:?}"
            );
        }
        assert!(is_importable_type("123"));
        assert!(is_importable_type("a--b"));
        assert!(!is_importable_type("a_b"));
        assert!(!is_importable_type(""));
        assert!(!is_importable_type(&"a".repeat(64)));
    }

    #[test]
    fn instances() {
        for ok in ["My web", "My_web", "x", "Caf\u{e9} 1.0", &"a".repeat(63)] {
            validate_instance(ok).unwrap();
        }
        for bad in ["", "   ", "a\nb", "a\0", &"a".repeat(64), &"é".repeat(32)] {
            assert!(
                matches!(validate_instance(bad), Err(MdnsError::BadInstance(..))),
                "{bad:?}"
            );
        }
        assert_eq!(cloudy_description(" My web "), "My_web");
        assert_eq!(cloudy_description("My_web"), "My_web");
    }

    #[test]
    fn txt() {
        let t = |v: &[(&str, &str)]| {
            validate_txt(
                &v.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<Vec<_>>(),
            )
        };
        t(&[]).unwrap();
        t(&[("a", "1"), ("path", "/x y"), ("empty", "")]).unwrap();
        let max_v = "v".repeat(253); // "k=" + 253 = 255
        t(&[("k", &max_v)]).unwrap();
        let long_v = "v".repeat(254);
        for bad in [
            vec![("", "1")],
            vec![("a=b", "1")],
            vec![("k\u{e9}", "1")],
            vec![("a\tb", "1")],
            vec![("k", long_v.as_str())],
            vec![("a", "1"), ("A", "2")],
        ] {
            assert!(matches!(t(&bad), Err(MdnsError::BadTxt(..))), "{bad:?}");
        }
    }

    #[test]
    fn services() {
        validate_service(&svc("http", "Web", 80, &[("a", "1")])).unwrap();
        assert!(matches!(
            validate_service(&svc("http", "Web", 0, &[])),
            Err(MdnsError::BadPort(_))
        ));
        assert!(matches!(
            validate_service(&svc("h_t", "Web", 80, &[])),
            Err(MdnsError::BadType(..))
        ));
        assert!(matches!(
            validate_service(&svc("http", "", 80, &[])),
            Err(MdnsError::BadInstance(..))
        ));
    }

    #[test]
    fn hostnames() {
        for ok in ["node1", "a", "my-node", &"n".repeat(63)] {
            validate_hostname(ok).unwrap();
        }
        for bad in ["", "a.b", "a b", "-a", "a-", "nó", &"n".repeat(64)] {
            assert!(
                matches!(validate_hostname(bad), Err(MdnsError::BadHostname(..))),
                "{bad:?}"
            );
        }
    }
}
