//! Turning captured bytes into a check's output text.

use crate::model::MAX_CHECK_OUTPUT;

/// Bytes to text: cut to [`MAX_CHECK_OUTPUT`] bytes (never inside a UTF-8
/// character), invalid UTF-8 replaced, surrounding whitespace trimmed.
pub(crate) fn tidy(mut bytes: Vec<u8>) -> String {
    if bytes.len() > MAX_CHECK_OUTPUT {
        bytes.truncate(MAX_CHECK_OUTPUT);
        let cut = incomplete_tail(&bytes);
        bytes.truncate(bytes.len() - cut);
    }
    let text = String::from_utf8_lossy(&bytes);
    cut_str(text.trim(), MAX_CHECK_OUTPUT).to_owned()
}

/// Text (an error message, a status line) to output: trimmed and cut.
pub(crate) fn tidy_str(s: &str) -> String {
    cut_str(s.trim(), MAX_CHECK_OUTPUT).trim_end().to_owned()
}

/// The longest prefix of `s` of at most `max` bytes ending on a character
/// boundary.
pub(crate) fn cut_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut n = max;
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    &s[..n]
}

/// Length of an incomplete UTF-8 sequence at the end of `b` (0 to 3 bytes).
fn incomplete_tail(b: &[u8]) -> usize {
    for n in 1..=b.len().min(3) {
        let c = b[b.len() - n];
        if c & 0xC0 != 0x80 {
            let need = match c {
                0xF0.. => 4,
                0xE0.. => 3,
                0xC0.. => 2,
                _ => 1,
            };
            return if need > n { n } else { 0 };
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_keeps_short_text() {
        assert_eq!(tidy(b"  ok\n".to_vec()), "ok");
        assert_eq!(tidy(Vec::new()), "");
        assert_eq!(tidy_str(" HTTP 200 OK\n"), "HTTP 200 OK");
    }

    #[test]
    fn cuts_at_a_character_boundary() {
        // 4095 ASCII bytes then a 3-byte character: the cut falls inside it.
        let mut b = vec![b'a'; MAX_CHECK_OUTPUT - 1];
        b.extend_from_slice("€€".as_bytes());
        let s = tidy(b);
        assert_eq!(s.len(), MAX_CHECK_OUTPUT - 1);
        assert!(s.bytes().all(|c| c == b'a'));

        let mut b = vec![b'a'; MAX_CHECK_OUTPUT - 3];
        b.extend_from_slice("€€".as_bytes());
        let s = tidy(b);
        assert_eq!(s.len(), MAX_CHECK_OUTPUT);
        assert!(s.ends_with('€'));

        let long = "é".repeat(MAX_CHECK_OUTPUT);
        let s = tidy_str(&long);
        assert_eq!(s.len(), MAX_CHECK_OUTPUT);
        assert_eq!(cut_str("aé", 2), "a");
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let s = tidy(vec![b'a', 0xFF, b'b']);
        assert_eq!(s, "a\u{FFFD}b");
        let s = tidy(vec![0xFF; MAX_CHECK_OUTPUT + 10]);
        assert!(s.len() <= MAX_CHECK_OUTPUT);
    }

    #[test]
    fn incomplete_tails() {
        assert_eq!(incomplete_tail(b"abc"), 0);
        assert_eq!(incomplete_tail("a€".as_bytes()), 0);
        assert_eq!(incomplete_tail(&"a€".as_bytes()[..3]), 2);
        assert_eq!(incomplete_tail(&"a€".as_bytes()[..2]), 1);
        assert_eq!(incomplete_tail(&"😀".as_bytes()[..3]), 3);
        assert_eq!(incomplete_tail(&[0x80, 0x80, 0x80]), 0);
    }
}
