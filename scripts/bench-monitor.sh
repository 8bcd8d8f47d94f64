#!/usr/bin/env bash
# Network monitoring (issue 12; BENCHMARKS.md, "Network monitoring"):
# real `nuvol agent`s on loopback (127.1.250.N) watching devices at
# 127.1.X.Y, which answer ping on lo and SNMP through four real snmpd on
# UDP 17100-17103 bound to 0.0.0.0 (community "bench", numeric OIDs).
# The work is done by scripts/bench-monitor.py; it prints `BENCH ...`
# lines (JSON) with the raw figures.
#
#   1+2 takeover: 4 monitors (k=2, interval 10s, settle 2s), 100 devices;
#       SIGKILL one; failure detection (every survivor's `nuvol members`
#       shows it not alive), the new owners' first probes, the time until
#       every device it owned has k samples taken after the kill, and per
#       device the largest age of its newest sample (polled every 0.5 s).
#   3+4 load: 1,000 devices at a 60 s interval on 1 node, then on 4 (k=2):
#       per node VmRSS/VmHWM and CPU (utime+stime) over a steady window
#       (NUVOL_BENCH_WINDOW, 240 s), and the first full round's span.
#   mrtg: MRTG (Debian's mrtg) reading the same 1,000 devices' ifInOctets
#       and ifOutOctets, two rounds (the first creates its logs), CPU time
#       per round (mrtg and its rateup children).
#
# Usage: sudo bash scripts/bench-monitor.sh [NUVOL_BINARY] [PARTS...]
#   PARTS: takeover load1 load4 mrtg (default: all); NUVOL_BENCH_RUNS
#   takeover runs (default 3). NUVOL_BINARY defaults to the release build
#   (scripts/build-release.sh). Needs root (ICMP), snmpd, python3; installs
#   snmpd and mrtg with apt-get when missing. Takes about 20 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
NUVOL="${1:-}"
[ -n "$NUVOL" ] || NUVOL="$(bash scripts/build-release.sh)"
NUVOL="$(realpath "$NUVOL")"
shift || true
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(takeover load1 load4 mrtg)
need() {
  command -v "$1" >/dev/null && return 0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null
}
need snmpd snmpd
need python3 python3
echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $NUVOL"
for p in "${parts[@]}"; do
  case "$p" in
  takeover) python3 scripts/bench-monitor.py "$NUVOL" takeover "${NUVOL_BENCH_RUNS:-3}" ;;
  load1) python3 scripts/bench-monitor.py "$NUVOL" load 1 ;;
  load4) python3 scripts/bench-monitor.py "$NUVOL" load 4 ;;
  mrtg)
    need mrtg mrtg
    python3 scripts/bench-monitor.py "$NUVOL" mrtg
    ;;
  *) echo "unknown part $p" >&2; exit 2 ;;
  esac
  echo "# after $p: load $(cut -d' ' -f1-3 /proc/loadavg)"
done
