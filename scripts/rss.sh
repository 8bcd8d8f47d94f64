#!/usr/bin/env bash
# Resident memory of one idle single-node agent, split by mapping: what the
# "Memory" table in BENCHMARKS.md was measured with.
#
#   bash scripts/rss.sh BINARY [SECONDS [AGENT-ARGS...]]   # default 6 s after start
#
# AGENT-ARGS are added to the agent's command line (e.g. --dashboard=false).
#
# Prints the binary's size, RSS and anonymous RSS (smaps_rollup), and the
# resident pages of each executable mapping (the binary's code, libc...).
set -euo pipefail
bin=$(realpath "$1")
secs=${2:-6}
shift $(( $# < 2 ? $# : 2 ))
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$bin" agent --node rss --bind 127.0.0.1:17946 --rpc-addr 127.0.0.1:17373 \
  --http-addr 127.0.0.1:17000 --dns-addr 127.0.0.1:18600 \
  --data-dir "$dir/data" "$@" >"$dir/log" 2>&1 &
pid=$!
sleep "$secs"
if ! kill -0 "$pid" 2>/dev/null; then
  cat "$dir/log" >&2
  exit 1
fi
rss=$(awk '/^Rss:/{print $2}' "/proc/$pid/smaps_rollup")
anon=$(awk '/^Anonymous:/{print $2}' "/proc/$pid/smaps_rollup")
echo "$bin: size $(stat -c %s "$bin") B, RSS $rss KiB, anonymous $anon KiB"
awk '/^[0-9a-f]+-[0-9a-f]+ /{name=$6; perm=$2} /^Rss:/{ if (perm ~ /x/) s[name]+=$2 }
     END{for (k in s) printf "  code %-60s %6d KiB\n", k, s[k]}' "/proc/$pid/smaps"
kill "$pid"
wait "$pid" 2>/dev/null || true
