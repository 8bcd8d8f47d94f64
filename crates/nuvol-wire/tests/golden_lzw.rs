//! `nuvol_wire::lzw` against Go's `compress/lzw` (LSB, 8-bit literals), the
//! codec memberlist compresses with.
//!
//! - tests/fixtures/lzw/*.go.lzw were written by Go 1.19.8's encoder (the
//!   toolchain serf 0.9.4 is built with) from the matching *.in files, by
//!   tests/fixtures/lzw/golzw.go: we must decode all of them and, for inputs
//!   that do not fill the 12-bit dictionary, encode to the same bytes.
//! - tests/support/lzw_ref.rs is an independent decoder with Go's reader
//!   semantics; ours must agree with it on corrupted streams too.
//! - When a Go toolchain is installed, `go_reads_what_we_write` pipes our
//!   output for large inputs (many dictionary resets, where our encoder's
//!   bytes differ from Go's) through Go's own decoder. Set
//!   NUVOL_REQUIRE_GO=1 to make a missing toolchain a failure.

mod support;

use nuvol_wire::lzw::{compress, decompress, LzwError};
use rand::{Rng, SeedableRng};
use support::lzw_ref;

const FIXTURES: &[&str] = &[
    "empty",
    "one-byte",
    "tobeornot",
    "text-2k",
    "alpha16-12k",
    "random-3k",
];

/// Inputs small enough that Go and we emit identical bytes.
const IDENTICAL: &[&str] = &["empty", "one-byte", "tobeornot", "text-2k", "random-3k"];

fn dir() -> String {
    format!("{}/tests/fixtures/lzw", env!("CARGO_MANIFEST_DIR"))
}

fn load(name: &str) -> (Vec<u8>, Vec<u8>) {
    let read = |f: String| std::fs::read(&f).unwrap_or_else(|e| panic!("{f}: {e}"));
    (
        read(format!("{}/{name}.in", dir())),
        read(format!("{}/{name}.go.lzw", dir())),
    )
}

#[test]
fn decodes_go_encoder_output() {
    for name in FIXTURES {
        let (raw, go) = load(name);
        assert_eq!(
            decompress(&go, raw.len()).as_deref(),
            Ok(&raw[..]),
            "{name}"
        );
        assert_eq!(lzw_ref::decode(&go, raw.len()).as_deref(), Ok(&raw[..]));
        if !raw.is_empty() {
            assert_eq!(
                decompress(&go, raw.len() - 1),
                Err(LzwError::TooLarge(raw.len() - 1))
            );
        }
        // Go always starts with a clear code (since Go 1.17).
        assert_eq!(go[0], 0x00, "{name}");
        assert!(
            decompress(&go[..go.len() - 1], usize::MAX).is_err(),
            "{name}"
        );
    }
}

#[test]
fn encodes_like_go() {
    for name in FIXTURES {
        let (raw, go) = load(name);
        let ours = compress(&raw);
        assert_eq!(decompress(&ours, raw.len()).unwrap(), raw, "{name}");
        assert_eq!(lzw_ref::decode(&ours, raw.len()).unwrap(), raw, "{name}");
        if IDENTICAL.contains(name) {
            assert_eq!(ours, go, "{name}: byte-for-byte Go");
        }
    }
    // The large one fills the dictionary: identical up to Go's first clear
    // code, which it emits one code earlier than weezl does.
    let (raw, go) = load("alpha16-12k");
    let ours = compress(&raw);
    let first_diff = ours.iter().zip(&go).position(|(a, b)| a != b).unwrap();
    assert!(first_diff > 5000, "diverged at byte {first_diff}");
}

/// Ours and the Go-semantics reference agree on corrupted Go streams:
/// both succeed with the same bytes or both fail, and fail the same way.
#[test]
fn agrees_with_reference_on_corrupted_streams() {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(0x5e4f);
    let bases: Vec<Vec<u8>> = FIXTURES.iter().map(|n| load(n).1).collect();
    let mut outcomes = [0usize; 3];
    for round in 0..6000 {
        let mut s = bases[round % bases.len()].clone();
        match rng.gen_range(0..4) {
            0 => {
                for _ in 0..rng.gen_range(1..4) {
                    let i = rng.gen_range(0..s.len());
                    s[i] ^= 1 << rng.gen_range(0..8);
                }
            }
            1 => s.truncate(rng.gen_range(0..s.len())),
            2 => {
                let i = rng.gen_range(0..s.len());
                s.insert(i, rng.gen());
            }
            _ => s = (0..rng.gen_range(0..200)).map(|_| rng.gen()).collect(),
        }
        let ours = decompress(&s, 1 << 20);
        let theirs = lzw_ref::decode(&s, 1 << 20);
        match (&ours, &theirs) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a, b, "round {round}");
                outcomes[0] += 1;
            }
            (Err(LzwError::Truncated), Err(lzw_ref::RefError::UnexpectedEof)) => outcomes[1] += 1,
            (Err(LzwError::Invalid(_)), Err(lzw_ref::RefError::InvalidCode)) => outcomes[2] += 1,
            _ => panic!("round {round}: ours {ours:?} vs reference {theirs:?}"),
        }
    }
    // Every kind of outcome was exercised.
    assert!(outcomes.iter().all(|&n| n > 100), "{outcomes:?}");
}

fn go_helper() -> Option<std::path::PathBuf> {
    let tmp = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("golzw");
    std::fs::create_dir_all(&tmp).ok()?;
    let bin = tmp.join("golzw");
    let status = std::process::Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(format!("{}/golzw.go", dir()))
        .env("GOCACHE", tmp.join("cache"))
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "")
        .status();
    match status {
        Ok(s) if s.success() => Some(bin),
        other => {
            let msg = format!("no usable Go toolchain ({other:?})");
            if std::env::var_os("NUVOL_REQUIRE_GO").is_some() {
                panic!("{msg}");
            }
            eprintln!("skipping go_reads_what_we_write: {msg}");
            None
        }
    }
}

fn go_decode(bin: &std::path::Path, data: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(bin)
        .arg("d")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn go_reads_what_we_write() {
    let Some(bin) = go_helper() else { return };
    let mut rng = rand::rngs::SmallRng::seed_from_u64(42);
    let mut inputs: Vec<Vec<u8>> = vec![vec![], b"x".to_vec(), vec![0; 300_000]];
    for alphabet in [2u16, 4, 16, 64, 256] {
        for len in [1000, 20_000, 150_000] {
            inputs.push((0..len).map(|_| rng.gen_range(0..alphabet) as u8).collect());
        }
    }
    // Every two-byte sequence: the dictionary fills on distinct entries.
    inputs.push(
        (0..=255u8)
            .flat_map(|a| (0..=255u8).flat_map(move |b| [a, b]))
            .collect(),
    );
    for (i, raw) in inputs.iter().enumerate() {
        let ours = compress(raw);
        assert_eq!(
            go_decode(&bin, &ours).as_deref(),
            Ok(&raw[..]),
            "input {i} ({} bytes)",
            raw.len()
        );
    }
    // And Go's reader rejects what ours rejects.
    for bad in [&[0xffu8; 40][..], &compress(b"truncated stream here")[..10]] {
        assert!(go_decode(&bin, bad).is_err());
        assert!(decompress(bad, 1 << 20).is_err());
    }
}
