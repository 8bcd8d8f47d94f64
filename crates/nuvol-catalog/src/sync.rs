//! Transfer of a nuvol node's full service list to other nuvol nodes,
//! beyond the 512-byte tag budget.
//!
//! Each nuvol node advertises the digest of its list in the tag
//! [`crate::view::DIGEST_TAG`] (a few bytes). A peer that sees a digest it
//! has not pulled opens a gossip TCP stream to the node (memberlist's
//! user-message stream, so it is compressed and, with a keyring, encrypted
//! exactly like push/pull) carrying [`PULL_REQUEST`]; the node answers with
//! [`encode_reply`]: its digest and list as JSON. Serf nodes never receive
//! these: only nodes advertising a digest are asked.

use crate::model::ServiceEntry;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// First byte of a nuvol application stream payload (outside serf's message
/// type range, which ends at 9).
pub const APP_STREAM: u8 = nuvol_agent::APP_STREAM;
/// The catalog's stream protocol; the request is `[APP_STREAM, PULL]`.
pub const PULL: u8 = 1;
pub const PULL_REQUEST: [u8; 2] = [APP_STREAM, PULL];
/// Largest reply accepted.
pub const MAX_REPLY: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SyncError {
    #[error("not a catalog reply")]
    NotAReply,
    #[error("catalog reply larger than {MAX_REPLY} bytes")]
    TooLarge,
    #[error("malformed catalog reply: {0}")]
    Malformed(String),
}

#[derive(Serialize, Deserialize)]
struct Reply {
    digest: String,
    services: Vec<ServiceEntry>,
}

/// Digest of a list: 12 hex digits of SHA-256 over its JSON. Only compared
/// for equality with what the owner said; never recomputed by peers.
pub fn digest(services: &[ServiceEntry]) -> String {
    let json = serde_json::to_vec(services).unwrap_or_default();
    let h = Sha256::digest(&json);
    h.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// The reply payload: `[APP_STREAM, PULL] + JSON`.
pub fn encode_reply(digest: &str, services: &[ServiceEntry]) -> Vec<u8> {
    let mut out = PULL_REQUEST.to_vec();
    // Serialised from the struct (not via `json!`, whose map sorts keys and
    // would reorder TXT entries).
    #[derive(Serialize)]
    struct ReplyRef<'a> {
        digest: &'a str,
        services: &'a [ServiceEntry],
    }
    let body = serde_json::to_vec(&ReplyRef { digest, services }).unwrap_or_default();
    out.extend_from_slice(&body);
    out
}

/// Decode a reply payload into (digest, services).
pub fn decode_reply(b: &[u8]) -> Result<(String, Vec<ServiceEntry>), SyncError> {
    let body = b
        .strip_prefix(&PULL_REQUEST[..])
        .ok_or(SyncError::NotAReply)?;
    if body.len() > MAX_REPLY {
        return Err(SyncError::TooLarge);
    }
    let r: Reply = serde_json::from_slice(body).map_err(|e| SyncError::Malformed(e.to_string()))?;
    if r.digest.is_empty() || r.digest.len() > 64 {
        return Err(SyncError::Malformed("bad digest".into()));
    }
    Ok((r.digest, r.services))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Source, Status};

    #[test]
    fn round_trip_and_rejects() {
        let s = vec![ServiceEntry {
            node: "n".into(),
            stype: "http".into(),
            description: "d".into(),
            host: "n.c.local".into(),
            ip: "10.0.0.1".into(),
            port: 80,
            cloud: "c".into(),
            txt: vec![("z".into(), "x".repeat(300)), ("a".into(), "1".into())],
            status: Status::Warning,
            source: Source::Nuvol,
            checks: vec![],
        }];
        let d = digest(&s);
        assert_eq!(d.len(), 12);
        assert_ne!(d, digest(&[]));
        let (d2, s2) = decode_reply(&encode_reply(&d, &s)).unwrap();
        assert_eq!((d2, s2), (d, s));
        assert_eq!(decode_reply(b"xx"), Err(SyncError::NotAReply));
        assert!(matches!(
            decode_reply(&[APP_STREAM, PULL, b'{']),
            Err(SyncError::Malformed(_))
        ));
    }
}
