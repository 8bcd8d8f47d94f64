//! Sans-I/O gossip core.
