#!/usr/bin/env python3
"""Network-monitoring benchmarks (BENCHMARKS.md, "Network monitoring"),
driven by scripts/bench-monitor.sh. Runs real `nuvol agent`s on loopback
(127.1.250.N, gossip 7946, RPC 7373, HTTP 7000) watching devices at
127.1.X.Y that answer ping on lo and SNMP through a few real snmpd on UDP
ports 17100+ bound to 0.0.0.0 (community "bench", numeric OIDs).

  bench-monitor.py BIN takeover RUNS   # 1 and 2: kill one of 4 monitors
  bench-monitor.py BIN load NODES      # 3 and 4: 1,000 devices, 60 s interval
  bench-monitor.py BIN mrtg            # MRTG, one round on the same devices

Prints `BENCH ...` lines with the raw figures. Environment:
NUVOL_BENCH_DEVICES (takeover: 100, load/mrtg: 1000),
NUVOL_BENCH_INTERVAL (takeover: 10, load: 60, seconds),
NUVOL_BENCH_WINDOW (load: steady window, 240 s).
"""

import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

SNMPDS = 4
PORT0 = 17100
TICK = os.sysconf("SC_CLK_TCK")


def dev_addr(i):
    return f"127.1.{i // 250}.{1 + i % 250}"


def mon_ip(n):
    return f"127.1.250.{n + 1}"


class Lab:
    def __init__(self, binary, devices):
        self.bin = binary
        self.dir = tempfile.mkdtemp(prefix="nuvol-bench-monitor-")
        self.snmpd = []
        self.agents = {}
        self.devices = devices
        for p in range(SNMPDS):
            conf = os.path.join(self.dir, f"snmpd{p}.conf")
            with open(conf, "w") as f:
                f.write("rocommunity bench\ndontLogTCPWrappersConnects yes\n")
            log = open(os.path.join(self.dir, f"snmpd{p}.log"), "w")
            self.snmpd.append(subprocess.Popen(
                ["snmpd", "-f", "-Lo", "-C", "-c", conf, "-p",
                 os.path.join(self.dir, f"snmpd{p}.pid"),
                 f"udp:0.0.0.0:{PORT0 + p}"],
                stdout=log, stderr=subprocess.STDOUT))
        time.sleep(1.5)
        for p, s in enumerate(self.snmpd):
            if s.poll() is not None:
                sys.exit(f"snmpd on port {PORT0 + p} exited; see {self.dir}")

    def config(self, k, interval, settle="2s"):
        lines = ["[monitor]", "enable = true", f"k = {k}",
                 f'interval = "{interval}s"', f'settle = "{settle}"',
                 "devices = ["]
        for i in range(self.devices):
            lines.append(
                f'  {{ id = "d{i:04}", address = "{dev_addr(i)}", '
                f'snmp_community = "bench", snmp_port = {PORT0 + i % SNMPDS} }},')
        lines.append("]")
        p = os.path.join(self.dir, "monitor.toml")
        with open(p, "w") as f:
            f.write("\n".join(lines) + "\n")
        return p

    def start(self, n, cfg):
        name = f"mon{n}"
        ip = mon_ip(n)
        data = os.path.join(self.dir, name)
        shutil.rmtree(data, ignore_errors=True)
        os.makedirs(data)
        args = [self.bin, "agent", f"--node={name}", f"--bind={ip}:7946",
                f"--rpc-addr={ip}:7373", f"--data-dir={data}/data",
                f"--config={cfg}", "--mdns=false", "--apps=false"]
        if n > 0:
            args.append(f"--join={mon_ip(0)}:7946")
        log = open(os.path.join(data, "log"), "w")
        p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        self.agents[name] = p
        return p

    def stop_agents(self):
        for p in self.agents.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.agents.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.agents = {}

    def close(self):
        self.stop_agents()
        for s in self.snmpd:
            s.terminate()
            s.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def get(n, path, timeout=10):
    with urllib.request.urlopen(f"http://{mon_ip(n)}:7000{path}",
                                timeout=timeout) as r:
        return json.load(r)


def try_get(n, path, timeout=10):
    try:
        return get(n, path, timeout)
    except Exception:  # noqa: BLE001 (not up yet, or timed out)
        return None


def members(lab, n):
    try:
        out = subprocess.run(
            [lab.bin, "members", "--format", "json",
             f"--rpc-addr={mon_ip(n)}:7373"],
            capture_output=True, text=True, timeout=5)
        return json.loads(out.stdout)["members"]
    except Exception:  # noqa: BLE001
        return None


def fresh_reports(dev, since, exclude=()):
    """Monitors with a report taken at or after `since`."""
    return {r["monitor"] for r in dev["reports"]
            if r["at"] >= since and r["monitor"] not in exclude}


def wait_until(what, timeout, f, every=0.5):
    end = time.time() + timeout
    while time.time() < end:
        v = f()
        if v:
            return v
        time.sleep(every)
    sys.exit(f"timed out waiting for {what}")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def circular_span(ats, period):
    """The shortest stretch of one period holding every time of `ats`
    (mod period): how long a round of probe starts takes."""
    xs = sorted(a % period for a in ats)
    if len(xs) < 2:
        return 0
    gaps = [b - a for a, b in zip(xs, xs[1:])] + [xs[0] + period - xs[-1]]
    return period - max(gaps)


def med(xs):
    return statistics.median(xs) if xs else float("nan")


# ---------------------------------------------------------------- 1 and 2


def takeover_run(lab, run, interval, k=2):
    cfg = lab.config(k, interval)
    names = [f"mon{n}" for n in range(4)]
    for n in range(4):
        lab.start(n, cfg)
        time.sleep(0.3)
    t_start = time.time()

    def steady():
        v = try_get(0, "/v1/monitor/devices")
        if not v or len(v) != lab.devices:
            return None
        owners = {o for d in v for o in d["owners"]}
        ok = owners == set(names) and all(
            len(d["owners"]) == k and fresh_reports(d, 0) == set(d["owners"])
            and d["state"] == "up" for d in v)
        return v if ok else None

    wait_until("4 monitors reporting every device (up) from its owners",
               120, steady)
    # One more interval: every owner has settled into its probe phase.
    time.sleep(interval + 1)
    before = steady() or sys.exit("not steady any more")
    victim = "mon3"
    owned = {d["id"]: d["owners"] for d in before if victim in d["owners"]}

    polls = []  # (t_end, latency, devices)
    detect = {}  # survivor -> first time it shows the victim failed
    stop = threading.Event()

    def poll_once():
        t0 = time.time()
        v = try_get(0, "/v1/monitor/devices", timeout=20)
        t1 = time.time()
        if v is not None:
            polls.append((t1, t1 - t0, v))

    def poller():
        while not stop.is_set():
            threading.Thread(target=poll_once, daemon=True).start()
            time.sleep(0.5)

    def watcher(n):
        while not stop.is_set():
            ms = members(lab, n)
            t = time.time()
            if ms and f"mon{n}" not in detect:
                st = [m["status"] for m in ms if m["name"] == victim]
                if st and st[0] != "alive":
                    detect[f"mon{n}"] = (t, st[0])
            time.sleep(0.1)

    threads = [threading.Thread(target=poller, daemon=True)]
    threads += [threading.Thread(target=watcher, args=(n,), daemon=True)
                for n in range(3)]
    for t in threads:
        t.start()
    # Baseline coverage, then a random phase: the kill lands anywhere in
    # the survivors' probe cycle (else every run would repeat one phase).
    time.sleep(3 * interval + random.uniform(0, interval))
    T0 = time.time()
    lab.agents[victim].send_signal(signal.SIGKILL)
    lab.agents[victim].wait()
    since = int(T0) + 1  # `at` is whole seconds: only probes begun after T0

    def taken_over():
        if not polls or polls[-1][0] < T0:
            return None
        v = {d["id"]: d for d in polls[-1][2]}
        ok = all(len(fresh_reports(v[i], since, {victim})) >= k
                 and victim not in v[i]["owners"] for i in owned)
        return polls[-1][0] if ok else None

    t_take = wait_until("the survivors to take over", 120, taken_over, 0.1)
    time.sleep(2 * interval)  # coverage after the takeover
    stop.set()
    time.sleep(1)

    # Failure detection: every survivor's member list shows it not alive.
    if len(detect) < 3:
        sys.exit(f"not every survivor saw {victim} fail: {detect}")
    det_first = min(t for t, _ in detect.values()) - T0
    det_all = max(t for t, _ in detect.values()) - T0
    # The new owners' first probe of each device the victim owned.
    first_new = {}
    final = {d["id"]: d for d in polls[-1][2]}
    for i, old in owned.items():
        new = [o for o in final[i]["owners"] if o not in old]
        ats = [r["at"] for _, _, v in polls for d in v if d["id"] == i
               for r in d["reports"] if r["monitor"] in new and r["at"] >= since]
        first_new[i] = min(ats) if ats else None
    if any(v is None for v in first_new.values()):
        sys.exit("a new owner never reported")
    new_first_max = max(first_new.values()) - T0
    new_first_min = min(first_new.values()) - T0
    # Coverage: per device, the largest age of its newest sample.
    gap_before, gap_after = {}, {}
    for t1, _, v in polls:
        for d in v:
            if d["last_sample"] is None:
                continue
            age = t1 - d["last_sample"]
            g = gap_before if t1 < T0 else gap_after
            g[d["id"]] = max(g.get(d["id"], 0), age)
    down_after = sum(1 for t1, _, v in polls if t1 >= T0 for d in v
                     if d["state"] != "up")
    lat = sorted(x for _, x, _ in polls)
    r = {
        "run": run, "devices": lab.devices, "interval": interval, "k": k,
        "victim_owned": len(owned),
        "detect_first": round(det_first, 2), "detect_all": round(det_all, 2),
        "detect_status": sorted({s for _, s in detect.values()}),
        "new_owner_first_probe_min": round(new_first_min, 2),
        "new_owner_first_probe_max": round(new_first_max, 2),
        "takeover_k_fresh": round(t_take - T0, 2),
        "takeover_minus_detect": round(t_take - T0 - det_all, 2),
        "max_age_before_kill": round(max(gap_before.values()), 2),
        "max_age_after_kill": round(max(gap_after.values()), 2),
        "max_age_after_kill_victim_owned": round(
            max(gap_after[i] for i in owned), 2),
        "devices_not_up_in_polls_after_kill": down_after,
        "polls": len(polls), "poll_latency_median": round(lat[len(lat) // 2], 3),
        "poll_latency_max": round(lat[-1], 3),
        "setup_s": round(T0 - t_start, 1),
    }
    print("BENCH takeover " + json.dumps(r), flush=True)
    lab.stop_agents()
    return r


def takeover(binary, runs):
    devices = int(os.environ.get("NUVOL_BENCH_DEVICES", "100"))
    interval = int(os.environ.get("NUVOL_BENCH_INTERVAL", "10"))
    lab = Lab(binary, devices)
    try:
        rs = [takeover_run(lab, i + 1, interval) for i in range(runs)]
    finally:
        lab.close()
    keys = ["detect_all", "new_owner_first_probe_max", "takeover_k_fresh",
            "takeover_minus_detect", "max_age_after_kill"]
    print("BENCH takeover medians " + json.dumps(
        {k: med([r[k] for r in rs]) for k in keys}), flush=True)


# ---------------------------------------------------------------- 3 and 4


def load(binary, nodes):
    devices = int(os.environ.get("NUVOL_BENCH_DEVICES", "1000"))
    interval = int(os.environ.get("NUVOL_BENCH_INTERVAL", "60"))
    window = int(os.environ.get("NUVOL_BENCH_WINDOW", "240"))
    k = 2
    lab = Lab(binary, devices)
    try:
        # A 10 s settle. (While no monitor has settled, every alive one
        # counts: the nodes, started 0.3 s apart, take devices at once and
        # hand some over as the others appear, so the first round is not
        # one clean burst with 4 nodes; `round_span_s_end`, the steady
        # rounds' span, is the figure to read.)
        cfg = lab.config(k, interval, settle="10s")
        procs = {}
        for n in range(nodes):
            procs[f"mon{n}"] = lab.start(n, cfg)
            time.sleep(0.3)
        t_start = time.time()
        want = min(k, nodes)
        names = set(procs)

        # The first full round: every device sampled by each of its owners,
        # once all monitors count (polled every 2 s; then left alone).
        first = {}  # (device, monitor) -> first `at`

        def all_sampled():
            v = try_get(0, "/v1/monitor/devices", timeout=30)
            if not v or len(v) != devices:
                return None
            for d in v:
                for r in d["reports"]:
                    first.setdefault((d["id"], r["monitor"]), r["at"])
            owners = {o for d in v for o in d["owners"]}
            ok = owners == names and all(
                len(d["owners"]) == want
                and set(d["owners"]) <= {r["monitor"] for r in d["reports"]}
                for d in v)
            return v if ok else None

        v = wait_until("every device sampled by its owners", 300,
                       all_sampled, 2)
        t_all = time.time()
        # Round span per monitor: from its first to its last first-probe
        # of the devices it owns now (the assignment settled).
        span = {}
        for m in sorted(names):
            ats = [first[(d["id"], m)] for d in v if m in d["owners"]]
            span[m] = (len(ats), max(ats) - min(ats))
        answered = sum(1 for d in v for r in d["reports"] if r["answered"])
        snmp_ok = sum(1 for d in v for r in d["reports"]
                      if r["snmp_error"] is None)
        # Steady window: starts one interval after the first round, so
        # start-up and the first burst are outside it; a whole number of
        # intervals long, so it holds the same number of rounds whatever
        # the phase.
        time.sleep(max(0, t_all + interval - time.time()))
        c0 = {m: cpu_ticks(p.pid) for m, p in procs.items()}
        w0 = time.time()
        rss_max = {m: 0 for m in procs}
        while time.time() < w0 + window:
            for m, p in procs.items():
                rss_max[m] = max(rss_max[m], status_kib(p.pid, "VmRSS"))
            time.sleep(5)
        w1 = time.time()
        c1 = {m: cpu_ticks(p.pid) for m, p in procs.items()}
        per = {}
        for m, p in sorted(procs.items()):
            cpu = (c1[m] - c0[m]) / TICK
            per[m] = {
                "owned": span[m][0], "first_round_s": span[m][1],
                "cpu_s": round(cpu, 2),
                "cpu_pct_one_core": round(100 * cpu / (w1 - w0), 3),
                "vmrss_kib_end": status_kib(p.pid, "VmRSS"),
                "vmrss_kib_max": rss_max[m],
                "vmhwm_kib": status_kib(p.pid, "VmHWM"),
            }
        after = try_get(0, "/v1/monitor/devices", timeout=30) or []
        now = time.time()
        for m in per:
            ats = [r["at"] for d in after for r in d["reports"]
                   if r["monitor"] == m]
            per[m]["round_span_s_end"] = circular_span(ats, interval)
        stale = sum(1 for d in after if d["last_sample"] is None
                    or now - d["last_sample"] > 2 * interval)
        r = {"nodes": nodes, "devices": devices, "interval": interval, "k": k,
             "window_s": round(w1 - w0, 1),
             "all_sampled_after_start_s": round(t_all - t_start, 1),
             "reports_answered": answered, "reports_snmp_ok": snmp_ok,
             "reports": sum(len(d["reports"]) for d in v),
             "stale_after_window": stale, "per_node": per}
        print("BENCH load " + json.dumps(r), flush=True)
    finally:
        lab.close()


# ---------------------------------------------------------------- MRTG


def mrtg(_binary):
    devices = int(os.environ.get("NUVOL_BENCH_DEVICES", "1000"))
    lab = Lab(_binary, 0)
    try:
        work = os.path.join(lab.dir, "mrtg")
        os.makedirs(work)
        cfg = os.path.join(lab.dir, "mrtg.cfg")
        with open(cfg, "w") as f:
            f.write(f"WorkDir: {work}\n")
            f.write("Options[_]: bits,growright\nMaxBytes[_]: 125000000\n")
            for i in range(devices):
                f.write(f"Target[d{i:04}]: 1.3.6.1.2.1.2.2.1.10.1&"
                        f"1.3.6.1.2.1.2.2.1.16.1:bench@{dev_addr(i)}:"
                        f"{PORT0 + i % SNMPDS}\n")
                f.write(f"Title[d{i:04}]: d{i:04}\n")
        env = dict(os.environ, LANG="C", LC_ALL="C")
        for rnd in (1, 2):
            t0 = time.time()
            before = os.times()
            out = subprocess.run(["mrtg", cfg], env=env,
                                 capture_output=True, text=True)
            after = os.times()
            t1 = time.time()
            cu = after.children_user - before.children_user
            cs = after.children_system - before.children_system
            logs = len([x for x in os.listdir(work) if x.endswith(".log")])
            print("BENCH mrtg " + json.dumps({
                "round": rnd, "devices": devices, "wall_s": round(t1 - t0, 2),
                "cpu_user_s": round(cu, 2), "cpu_sys_s": round(cs, 2),
                "rc": out.returncode, "log_files": logs,
                "stderr_lines": len(out.stderr.splitlines()),
                "stderr_head": out.stderr.splitlines()[:3]}), flush=True)
            time.sleep(2)
    finally:
        lab.close()


def main():
    # SIGTERM (e.g. `timeout`) ends like Ctrl-C: the lab is cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    binary, mode = os.path.realpath(sys.argv[1]), sys.argv[2]
    arg = int(sys.argv[3]) if len(sys.argv) > 3 else None
    if mode == "takeover":
        takeover(binary, arg or 3)
    elif mode == "load":
        load(binary, arg or 1)
    elif mode == "mrtg":
        mrtg(binary)
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
