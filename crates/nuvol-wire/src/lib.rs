//! Serf / memberlist wire formats.
