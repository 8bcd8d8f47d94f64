//! Helpers shared by the golden tests (not a test crate of its own).
pub mod lzw_ref;
pub mod walk;
