#![no_main]
//! memberlist TCP stream frames (push/pull, ping, user, error, encrypted).
use libfuzzer_sys::fuzz_target;
use nuvol_wire::memberlist::{parse_stream, parse_stream_plain, StreamFrame};

fuzz_target!(|data: &[u8]| {
    // Incremental parsing must agree with parsing the whole buffer.
    let whole = parse_stream(data);
    if let Ok(Some((StreamFrame::Plain(m), used))) = &whole {
        assert!(*used <= data.len());
        let again = parse_stream_plain(&m.encode()).expect("re-encoded stream decodes");
        assert_eq!(&again, m);
    }
    let _ = parse_stream_plain(data);
});
