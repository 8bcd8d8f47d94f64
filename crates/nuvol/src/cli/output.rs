//! Output the way serf's CLI writes it: Go's `json.MarshalIndent`,
//! `columnize.SimpleFormat`, Go's `%#v` of decoded msgpack values.

use base64::Engine as _;
use nuvol_rpc::rmpv;
use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter, PrettyFormatter};
use std::io::{self, Write};

/// Write one line to stdout; a closed pipe is an error the caller sees.
pub fn emit(s: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(s.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Go's `json.MarshalIndent(v, "", "  ")`: two-space indentation, struct
/// fields in declaration order, map keys sorted, and Go's escaping (`<`,
/// `>`, `&`, U+2028, U+2029 as `\u....`; control characters other than
/// `\n`, `\r`, `\t` as `\u00XX`).
pub fn go_json<T: Serialize + ?Sized>(v: &T) -> io::Result<String> {
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, GoFormatter::default());
    v.serialize(&mut ser).map_err(io::Error::other)?;
    String::from_utf8(buf).map_err(io::Error::other)
}

#[derive(Default)]
struct GoFormatter {
    pretty: PrettyFormatter<'static>,
}

impl Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        frag: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in frag.char_indices() {
            let esc = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            w.write_all(&frag.as_bytes()[start..i])?;
            w.write_all(esc.as_bytes())?;
            start = i + c.len_utf8();
        }
        w.write_all(&frag.as_bytes()[start..])
    }

    fn write_char_escape<W: ?Sized + Write>(&mut self, w: &mut W, e: CharEscape) -> io::Result<()> {
        let s: String = match e {
            CharEscape::Quote => "\\\"".into(),
            CharEscape::ReverseSolidus => "\\\\".into(),
            CharEscape::Solidus => "/".into(),
            CharEscape::Backspace => "\\u0008".into(),
            CharEscape::FormFeed => "\\u000c".into(),
            CharEscape::LineFeed => "\\n".into(),
            CharEscape::CarriageReturn => "\\r".into(),
            CharEscape::Tab => "\\t".into(),
            CharEscape::AsciiControl(b) => format!("\\u{b:04x}"),
        };
        w.write_all(s.as_bytes())
    }

    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.begin_array(w)
    }
    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.end_array(w)
    }
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.pretty.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.end_array_value(w)
    }
    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.begin_object(w)
    }
    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.end_object(w)
    }
    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.pretty.begin_object_key(w, first)
    }
    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.end_object_value(w)
    }
}

/// ryanuber/columnize's `SimpleFormat`: cells split on `|` and trimmed,
/// columns padded to their widest cell (measured in bytes, padded in
/// characters, as Go's `%-Ns` does) and glued with two spaces; the last
/// cell of a line is not padded.
pub fn columnize(lines: &[String]) -> String {
    let rows: Vec<Vec<&str>> = lines
        .iter()
        .map(|l| l.split('|').map(str::trim).collect())
        .collect();
    let mut widths: Vec<usize> = Vec::new();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if widths.len() <= i {
                widths.push(c.len());
            } else if widths[i] < c.len() {
                widths[i] = c.len();
            }
        }
    }
    let mut out = String::new();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                out.push_str(c);
                out.push('\n');
            } else {
                out.push_str(c);
                let pad = widths[i].saturating_sub(c.chars().count());
                out.push_str(&" ".repeat(pad));
                out.push_str("  ");
            }
        }
    }
    if out.ends_with('\n') {
        out.pop();
    }
    out
}

/// Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn go_bytes(b: &[u8]) -> String {
    let inner: Vec<String> = b.iter().map(|x| format!("0x{x:x}")).collect();
    format!("[]byte{{{}}}", inner.join(", "))
}

fn key_string(k: &rmpv::Value) -> String {
    match k {
        rmpv::Value::String(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        rmpv::Value::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        other => other.to_string(),
    }
}

/// Go's `%#v` of a value go-msgpack decoded into `interface{}` (strings
/// quoted, `[]byte{0x..}`, maps with sorted keys), as `serf monitor` prints
/// event fields.
pub fn go_sharp_v(v: &rmpv::Value) -> String {
    use rmpv::Value;
    match v {
        Value::Nil => "<nil>".into(),
        Value::Boolean(b) => b.to_string(),
        Value::Integer(i) => i.to_string(),
        Value::F32(f) => f.to_string(),
        Value::F64(f) => f.to_string(),
        Value::String(s) => go_quote(&String::from_utf8_lossy(s.as_bytes())),
        Value::Binary(b) => go_bytes(b),
        Value::Ext(_, b) => go_bytes(b),
        Value::Array(a) => {
            let inner: Vec<String> = a.iter().map(go_sharp_v).collect();
            format!("[]interface {{}}{{{}}}", inner.join(", "))
        }
        Value::Map(m) => {
            let mut entries: Vec<(String, String)> = m
                .iter()
                .map(|(k, v)| (key_string(k), go_sharp_v(v)))
                .collect();
            entries.sort();
            let inner: Vec<String> = entries
                .into_iter()
                .map(|(k, v)| format!("{}:{}", go_quote(&k), v))
                .collect();
            format!("map[string]interface {{}}{{{}}}", inner.join(", "))
        }
    }
}

/// Fields of a stream record, sorted, as `(key, %#v)`.
pub fn record_fields(v: &rmpv::Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = match v {
        rmpv::Value::Map(m) => m
            .iter()
            .map(|(k, v)| (key_string(k), go_sharp_v(v)))
            .collect(),
        other => vec![(String::new(), go_sharp_v(other))],
    };
    out.sort();
    out
}

/// A msgpack value as JSON the way Go's encoding/json would write the
/// decoded value (`[]byte` as base64).
pub fn msgpack_to_json(v: &rmpv::Value) -> serde_json::Value {
    use rmpv::Value;
    use serde_json::Value as J;
    match v {
        Value::Nil => J::Null,
        Value::Boolean(b) => J::Bool(*b),
        Value::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => J::from(u),
            (_, Some(n)) => J::from(n),
            _ => J::Null,
        },
        Value::F32(f) => serde_json::Number::from_f64(f64::from(*f))
            .map(J::Number)
            .unwrap_or(J::Null),
        Value::F64(f) => serde_json::Number::from_f64(*f)
            .map(J::Number)
            .unwrap_or(J::Null),
        Value::String(s) => J::String(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        Value::Binary(b) | Value::Ext(_, b) => {
            J::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        Value::Array(a) => J::Array(a.iter().map(msgpack_to_json).collect()),
        Value::Map(m) => J::Object(
            m.iter()
                .map(|(k, v)| (key_string(k), msgpack_to_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Serialize)]
    struct S {
        name: String,
        list: Vec<u8>,
        empty: BTreeMap<String, String>,
        none: Option<Vec<String>>,
    }

    #[test]
    fn json_like_go() {
        let s = S {
            name: "a<b>&c\u{8}\u{1b}\u{2028}\"\\/\n".into(),
            list: vec![1, 2],
            empty: BTreeMap::new(),
            none: None,
        };
        assert_eq!(
            go_json(&s).unwrap(),
            "{\n  \"name\": \"a\\u003cb\\u003e\\u0026c\\u0008\\u001b\\u2028\\\"\\\\/\\n\",\n  \"list\": [\n    1,\n    2\n  ],\n  \"empty\": {},\n  \"none\": null\n}"
        );
    }

    #[test]
    fn columnize_like_go() {
        let lines = vec![
            "a|127.0.0.1:7946|alive|x=1".to_string(),
            "longer-name|10.0.0.1:7946|failed|".to_string(),
        ];
        assert_eq!(
            columnize(&lines),
            "a            127.0.0.1:7946  alive   x=1\nlonger-name  10.0.0.1:7946   failed  "
        );
        assert_eq!(columnize(&[]), "");
        // Cells are trimmed; multibyte characters pad by characters.
        assert_eq!(
            columnize(&["é | b".to_string(), "ab | c".to_string()]),
            "é   b\nab  c"
        );
    }

    #[test]
    fn sharp_v_like_go() {
        use rmpv::Value;
        let v = Value::Map(vec![
            (Value::from("Name"), Value::from("deploy")),
            (Value::from("Payload"), Value::Binary(vec![0x76, 0x31])),
            (Value::from("LTime"), Value::from(2)),
        ]);
        assert_eq!(
            record_fields(&v),
            vec![
                ("LTime".to_string(), "2".to_string()),
                ("Name".to_string(), "\"deploy\"".to_string()),
                ("Payload".to_string(), "[]byte{0x76, 0x31}".to_string()),
            ]
        );
        assert_eq!(go_quote("a\"\n\u{1}é"), "\"a\\\"\\n\\x01é\"");
        assert_eq!(
            go_sharp_v(&Value::Array(vec![Value::Map(vec![(
                Value::from("B"),
                Value::Nil
            )])])),
            "[]interface {}{map[string]interface {}{\"B\":<nil>}}"
        );
    }
}
