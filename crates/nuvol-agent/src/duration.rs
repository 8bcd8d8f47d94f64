//! The one duration syntax of nuvol: Go's `time.ParseDuration`, exactly
//! (integer nanoseconds), as serf's flags take it: `300ms`, `1.5h`, `1m30s`,
//! `2h45m`; units `ns`, `us` (`µs`, `μs`), `ms`, `s`, `m`, `h`; `0` needs no
//! unit. Negative durations are refused (nothing takes one). Flags, config
//! files, service files and the REST API all parse with [`parse`] and
//! print with [`format`] (Go's `Duration.String` form, which [`parse`] reads
//! back).

use std::time::Duration;

/// A string that is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DurationError(String);

const UNITS: &[(&str, u64)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),
    ("\u{3bc}s", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parse a Go duration.
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    parse_str(input).map_err(DurationError)
}

fn parse_str(input: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {input:?} (examples: 5s, 1m30s, 500ms)");
    let mut s = input;
    let neg = if let Some(r) = s.strip_prefix('-') {
        s = r;
        true
    } else {
        if let Some(r) = s.strip_prefix('+') {
            s = r;
        }
        false
    };
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        // Integer part.
        let int_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (int_digits, rest) = s.split_at(int_end);
        s = rest;
        // Fraction.
        let mut frac_digits = "";
        if let Some(r) = s.strip_prefix('.') {
            let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            frac_digits = &r[..end];
            s = &r[end..];
        }
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(bad());
        }
        // Unit.
        let unit_end = s
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        let (unit, rest) = s.split_at(unit_end);
        s = rest;
        if unit.is_empty() {
            return Err(format!("missing unit in duration {input:?}"));
        }
        let Some(&(_, scale)) = UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(format!("unknown unit {unit:?} in duration {input:?}"));
        };
        let overflow = || format!("duration {input:?} is too large");
        let int: u64 = if int_digits.is_empty() {
            0
        } else {
            int_digits.parse().map_err(|_| overflow())?
        };
        let mut v = int.checked_mul(scale).ok_or_else(overflow)?;
        // Fraction, truncated to nanoseconds like Go.
        let mut f_scale = scale;
        for d in frac_digits.bytes() {
            f_scale /= 10;
            if f_scale == 0 {
                break;
            }
            v = v
                .checked_add(u64::from(d - b'0') * f_scale)
                .ok_or_else(overflow)?;
        }
        total = total.checked_add(v).ok_or_else(overflow)?;
        if total > i64::MAX as u64 {
            return Err(overflow());
        }
    }
    if neg && total > 0 {
        return Err(format!("negative duration {input:?} not allowed"));
    }
    Ok(Duration::from_nanos(total))
}

/// Go's `Duration.String`: `0s`, `1.5s`, `1m30s`, `2h0m0s`, `300ms`, `10µs`.
pub fn format(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".to_owned();
    }
    // Below one second Go uses the largest unit that keeps an integer part.
    if ns < 1_000_000_000 {
        let (unit, scale) = if ns < 1_000 {
            ("ns", 1)
        } else if ns < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", fraction(ns, scale));
    }
    let secs = ns / 1_000_000_000;
    let (h, m) = (secs / 3600, (secs / 60) % 60);
    let s = fraction(ns % 60_000_000_000, 1_000_000_000);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// `v / scale` with the fraction's trailing zeros dropped.
fn fraction(v: u128, scale: u128) -> String {
    let (int, frac) = (v / scale, v % scale);
    if frac == 0 {
        return int.to_string();
    }
    let width = scale.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{int}.{}", digits.trim_end_matches('0'))
}

/// `#[serde(with = "nuvol_agent::duration::serde")]`: a duration as its
/// Go string.
pub mod serde {
    use std::time::Duration;

    pub fn serialize<S: ::serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(*d))
    }

    pub fn deserialize<'de, D: ::serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s: std::borrow::Cow<'de, str> = ::serde::Deserialize::deserialize(d)?;
        super::parse(&s).map_err(::serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_go() {
        let ok = |s: &str, ns: u64| assert_eq!(parse(s), Ok(Duration::from_nanos(ns)), "{s}");
        ok("0", 0);
        ok("5s", 5_000_000_000);
        ok("+5s", 5_000_000_000);
        ok("1m30s", 90_000_000_000);
        ok("1.5h", 5_400_000_000_000);
        ok("300ms", 300_000_000);
        ok(".5s", 500_000_000);
        ok("1.s", 1_000_000_000);
        ok("2h45m0.5s", 9_900_500_000_000);
        ok("10us", 10_000);
        ok("10µs", 10_000);
        ok("10μs", 10_000);
        ok("1ns", 1);
        ok("1.0000000001s", 1_000_000_000);
        ok("0s", 0);
        for bad in [
            "",
            "5",
            "s",
            "5x",
            "1.2.3s",
            ".s",
            "-5s",
            "5s ",
            " 5s",
            "99999999999h",
            "1e3s",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn formats_like_go_and_reads_back() {
        for (ns, text) in [
            (0u64, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (300_000_000, "300ms"),
            (1_500_000_000, "1.5s"),
            (90_000_000_000, "1m30s"),
            (7_200_000_000_000, "2h0m0s"),
            (86_400_000_000_000, "24h0m0s"),
            (9_900_500_000_000, "2h45m0.5s"),
        ] {
            let d = Duration::from_nanos(ns);
            assert_eq!(format(d), text);
            assert_eq!(parse(text), Ok(d), "{text}");
        }
    }
}
