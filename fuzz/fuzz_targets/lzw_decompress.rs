#![no_main]
//! Differential: `lzw::decompress` on arbitrary bytes must behave exactly like
//! a reference decoder with Go `compress/lzw` reader semantics (the one the
//! golden tests use, itself checked against Go): same output when both
//! succeed, same kind of error otherwise, and never more than `max_out`
//! bytes. The first input byte picks the output limit so the bound is
//! fuzzed too.
use libfuzzer_sys::fuzz_target;
use nuvol_wire::lzw::{self, LzwError};

#[path = "../../crates/nuvol-wire/tests/support/lzw_ref.rs"]
mod lzw_ref;
use lzw_ref::RefError;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, stream)) = data.split_first() else {
        return;
    };
    let max_out = match sel % 4 {
        0 => 1 << 20,
        1 => usize::from(sel),
        2 => 4096,
        _ => 0,
    };
    let ours = lzw::decompress(stream, max_out);
    let theirs = lzw_ref::decode(stream, max_out);
    if let Ok(out) = &ours {
        assert!(out.len() <= max_out);
    }
    match (&ours, &theirs) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(LzwError::Truncated), Err(RefError::UnexpectedEof))
        | (Err(LzwError::Invalid(_)), Err(RefError::InvalidCode)) => {}
        // Hitting the limit can be noticed at a different code than the
        // reference (ours works in chunks), but only when both fail.
        (Err(LzwError::TooLarge(_)), Err(_)) | (Err(_), Err(RefError::TooLarge)) => {}
        _ => panic!("ours {ours:?} vs reference {theirs:?}"),
    }
});
