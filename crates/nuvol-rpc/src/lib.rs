//! Serf RPC protocol.
