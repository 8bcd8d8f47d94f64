#![no_main]
//! The DNS server's query handling in memory (`nuvol_dns::fuzzing`, the
//! same function a server worker calls), over UDP and TCP size limits: much
//! faster than `dns_query`, which goes through a real socket and the server
//! loop. Any answer must be a response with the query's id that
//! `hickory_proto` decodes, within the transport's size limit.
use libfuzzer_sys::fuzz_target;
use nuvol_dns::fuzzing::Responder;
use nuvol_dns::MAX_UDP_PAYLOAD;
use std::sync::{Mutex, OnceLock};

#[path = "common/dns.rs"]
mod dns;

static RESPONDER: OnceLock<Mutex<Responder>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let mut r = RESPONDER
        .get_or_init(|| Mutex::new(Responder::new(&dns::view(), "nuvol").expect("zone")))
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    for tcp in [false, true] {
        let Some(out) = r.respond(data, tcp) else {
            continue;
        };
        let limit = if tcp {
            usize::from(u16::MAX)
        } else {
            usize::from(MAX_UDP_PAYLOAD)
        };
        dns::check_answer(data, out, limit);
    }
});
