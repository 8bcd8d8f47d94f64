//! nuvol agent.
