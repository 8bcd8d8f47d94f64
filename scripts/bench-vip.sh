#!/usr/bin/env bash
# VIP takeover, nuvol against keepalived, in one run (BENCHMARKS.md).
#
# Two routers (priorities 150 and 100) on a bridge in network namespaces,
# first two nuvol agents, then two keepalived 2.2.7 (vrrp_version 3), at
# the same advert interval. For each interval and each way of losing the
# master (SIGKILL, or a graceful stop: SIGTERM), REPS times: wait until the
# first router holds the VIP and the second is its backup, stop the
# first, and time how long until the second has the VIP on its interface
# (polled every few ms with `ip`). Prints one line per case with the
# median and the range, in milliseconds.
#
# Usage: sudo bash scripts/bench-vip.sh [NUVOL_BINARY] (default: the debug
# build, built if missing). Needs root, iproute2, keepalived.
set -euo pipefail
cd "$(dirname "$0")/.."
NUVOL="${1:-target/debug/nuvol}"
[ -x "$NUVOL" ] || cargo build -q -p nuvol
NUVOL="$(realpath "$NUVOL")"
REPS="${REPS:-5}"
P=vb
VIP=10.81.0.100
work="$(mktemp -d)"

cleanup() {
  pkill -f "$work" 2>/dev/null || true
  sleep 0.2
  for n in a b sw; do ip netns del "$P$n" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

ip netns add ${P}sw
ip -n ${P}sw link add br0 type bridge
ip -n ${P}sw link set br0 up
n=10
for h in a b; do
  n=$((n + 1))
  ip netns add $P$h
  ip link add $P$h type veth peer name p$h netns ${P}sw
  ip link set $P$h netns $P$h
  ip -n $P$h link set $P$h name eth0
  ip -n $P$h addr add 10.81.0.$n/24 dev eth0
  ip -n $P$h link set eth0 up
  ip -n $P$h link set lo up
  ip -n ${P}sw link set p$h master br0 up
done

holds() { ip -n "$P$1" -o -4 addr show dev eth0 | grep -q " $VIP/"; }
now_ms() { date +%s%3N; }

# start IMPL HOST PRIORITY INTERVAL_S
start() {
  local impl=$1 h=$2 prio=$3 iv=$4
  local d="$work/$impl-$h"
  mkdir -p "$d"
  if [ "$impl" = nuvol ]; then
    local ms
    ms=$(python3 -c "print(int(round($iv * 1000)))")
    cat >"$d/nuvol.toml" <<EOF
[mdns]
announce = false
[[vip]]
address = "$VIP/24"
interface = "eth0"
vrid = 51
priority = $prio
advert_interval = "${ms}ms"
EOF
    local ip=10.81.0.11 other=10.81.0.12
    [ "$h" = b ] && ip=10.81.0.12 other=10.81.0.11
    ip netns exec $P$h "$NUVOL" agent --node "$h" --bind "$ip:7946" --retry-join "$other:7946" \
      --rpc-addr 127.0.0.1:7373 --data-dir "$d/data" --config "$d/nuvol.toml" \
      --dashboard=false --log-level warn >"$d/log" 2>&1 &
  else
    cat >"$d/k.conf" <<EOF
global_defs {
  vrrp_version 3
  script_user root
}
vrrp_instance VI_1 {
  state BACKUP
  interface eth0
  virtual_router_id 51
  priority $prio
  advert_int $iv
  virtual_ipaddress {
    $VIP/24
  }
}
EOF
    ip netns exec $P$h keepalived --dont-fork --log-console --vrrp -f "$d/k.conf" \
      -p "$d/k.pid" -r "$d/kv.pid" >"$d/log" 2>&1 &
  fi
  echo $! >"$d/pid"
}

stop_host() { # IMPL HOST SIGNAL
  local d="$work/$1-$2"
  local pid
  pid=$(cat "$d/pid")
  if [ "$3" = KILL ]; then
    # Every process of the host at once (keepalived's VRRP child would
    # otherwise see its parent die and stop gracefully).
    ip netns pids "$P$2" | xargs -r kill -KILL 2>/dev/null || true
  else
    # `ip netns exec` execs the program: the pid is the program's.
    kill "-$3" "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

wait_for() { # CONDITION... (up to 30 s)
  local end=$(($(now_ms) + 30000))
  until "$@"; do
    [ "$(now_ms)" -lt "$end" ] || return 1
    sleep 0.05
  done
}

a_master() { holds a && ! holds b; }

median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)] " (" v[1] "-" v[NR] ")"}'; }

for iv in 1 0.2; do
  for sig in KILL TERM; do
    for impl in keepalived nuvol; do
      times=()
      for _ in $(seq "$REPS"); do
        # A leftover VIP on a (SIGKILL leaves it) would confuse the start.
        ip -n ${P}a addr del $VIP/24 dev eth0 2>/dev/null || true
        ip -n ${P}b addr del $VIP/24 dev eth0 2>/dev/null || true
        start "$impl" b 100 "$iv"
        start "$impl" a 150 "$iv"
        wait_for a_master || { echo "no master: $(cat "$work/$impl-a/log")" >&2; exit 1; }
        # Settle: b has heard a few adverts, at a random phase.
        sleep "$(python3 -c "import random; print(1 + random.random() * $iv)")"
        t0=$(now_ms)
        stop_host "$impl" a "$sig"
        until holds b; do :; done
        t1=$(now_ms)
        times+=($((t1 - t0)))
        stop_host "$impl" b TERM
        sleep 0.3
      done
      printf '%-10s advert %4sms  %-4s  takeover ms: median %s  [%s]\n' "$impl" \
        "$(python3 -c "print(int($iv*1000))")" "$sig" \
        "$(printf '%s\n' "${times[@]}" | median)" "${times[*]}"
    done
  done
done
