#!/usr/bin/env bash
# HA app failover on the VIP (BENCHMARKS.md): from the SIGKILL of the node
# running an HA app's task (everything in its network namespace) until the
# app answers on the VIP again, with nuvol's Swarm tuning (heartbeat 1s,
# task restart delay 1s, raft election 3 ticks, one-replica apps off the
# raft leader), the same with a 500ms heartbeat, and with Swarm's defaults
# (5s, 5s, 10 ticks, anywhere); NUVOL_BENCH_ONLY=LABEL runs one of them
# ("nuvol", "nuvol heartbeat 500ms", "swarm defaults"). Each run is a
# fresh lab of three namespaces with a dockerd and a nuvol agent each
# (crates/nuvol/tests/swarm_ha_netns.rs, the ignored benchmark test);
# prints one line per run (with its steps) and the medians.
#
# Usage: sudo bash scripts/bench-ha.sh [RUNS] (default 3 per setting).
# Needs root, dockerd, iptables, busybox-static. Takes about a minute per
# run.
set -euo pipefail
cd "$(dirname "$0")/.."
export NUVOL_BENCH_RUNS="${1:-3}"
export NUVOL_REQUIRE_SYSTEM=1
cargo test -q -p nuvol --test swarm_ha_netns -- --ignored --nocapture \
  ha_failover_time_nuvol_tuning_vs_swarm_defaults 2>&1 | grep -E '^(BENCH|after the kill)'
