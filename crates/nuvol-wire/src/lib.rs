//! Serf / memberlist wire formats. No I/O, no async: bytes in, typed values out.
//!
//! - [`msgpack`]: go-msgpack-compatible encoding helpers and lenient decoding.
//! - [`memberlist`]: SWIM messages, envelopes (compound, CRC, compress), streams.
//! - [`serf`]: Serf messages carried inside memberlist user messages, tags.
//! - [`lzw`]: Go `compress/lzw` (LSB, 8-bit literals).
//! - [`security`]: memberlist's AES-GCM payload encryption and keyring.

pub mod lzw;
pub mod memberlist;
pub mod msgpack;
pub mod security;
pub mod serf;
