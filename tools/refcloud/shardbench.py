"""Measure the sharded reference cloud (docs/cloud.md, "Past one machine"): `python tools/shard_bench.py`.

1. Memory per installation, in this process (tracemalloc): N installations of C chargers loaded as
   one sharded instance does, every charger's `online` and a charging `state` handled, one balancing
   round each; the allocated bytes divided by N.
2. Throughput: a local mosquitto, K `tools/cloud --installations DIR --instance NAME` processes and a
   load generator that publishes every charger's retained `online` once and a `state` every
   `--interval` s (QoS 1, the size of the firmware's). Over `--seconds` after a warm-up, from each
   instance's presence counters and /proc: messages received through the shared subscription,
   forwarded out and in, handled, limits sent per second, CPU share and RSS. Also counted: chargers
   whose leases came from more than one instance in that window (must be 0).
3. Takeover at that scale: one instance SIGKILLed; the time until every charger it balanced has a
   lease from a survivor.

The chargers are generated payloads, not the firmware (that is host_tests/test_cloud_shards.py);
what is measured is the cloud and the broker.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc

from .broker import Broker
from .cloud import new_client

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLOUD = os.path.join(ROOT, "tools", "cloud")


def write_installations(folder, n, per):
    os.makedirs(folder, exist_ok=True)
    serials = {}
    for i in range(n):
        iid = "site%05d" % i
        ss = ["B%05d%02d" % (i, k) for k in range(per)]
        serials[iid] = ss
        rots = ("L1L2L3", "L2L3L1", "L3L1L2")
        doc = {"name": iid, "grid": "TN", "main_breaker_a": 63,
               "defaults": {"fallback_current_a": 6, "fallback_phases": 3, "max_current_a": 32},
               "circuits": [{"name": "c1", "breaker_a": 6 * per + 8,
                             "chargers": [{"serial": s, "phase_rotation": rots[k % 3]} for k, s in enumerate(ss)]}]}
        with open(os.path.join(folder, iid + ".json"), "w") as f:
            json.dump(doc, f)
    return serials


def state_doc(seq, a=10.0):
    # the fields and size of a firmware state message (docs/mqtt.md)
    return {"v": 1, "boot": 3, "seq": seq, "up_ms": seq * 2000, "ts": int(time.time()), "mode": "connected_charging",
            "cp": "C2", "pwm_duty": round(a / 0.6, 1), "offered_a": a, "limit_a": a, "limit_src": "cloud",
            "lease_s": 28, "contactor": True, "phases": 3, "i_a": [a - 0.2, a - 0.1, a - 0.3],
            "v_v": [231.2, 229.8, 230.5], "p_w": 6890, "e_wh": 1234567, "pp_a": 32, "temp_c": 31.5,
            "session": {"id": "B0000000-3-7", "wh": 4410, "auth_id": None}, "auth": {"required": False,
            "state": "idle", "id": None}, "standalone": False, "enabled": True, "faults": [], "fw": "0.1.0",
            "update": None}


def measure_memory(n, per):
    from .balancer import BalancerParams
    from .shard import ShardCloud, installation_files

    folder = tempfile.mkdtemp(prefix="shardbench-mem-")
    write_installations(folder, n, per)
    files = installation_files(folder)
    tracemalloc.start()
    base = tracemalloc.take_snapshot()
    shard = ShardCloud("127.0.0.1:1", files, "mem", sessions_path=None, params=BalancerParams(), log=lambda s: None)
    now = time.monotonic()
    payload = json.dumps(state_doc(1)).encode()
    for site in shard.sites.values():
        for s in site.inst.chargers:
            site.handle("evse/%s/online" % s, b"online", now)
            site.handle("evse/%s/state" % s, payload, now)
        site.balancer.step(now, seq_floor=1)
    snap = tracemalloc.take_snapshot()
    tracemalloc.stop()
    total = sum(st.size_diff for st in snap.compare_to(base, "filename"))
    subprocess.run(["rm", "-rf", folder], check=False)
    return {"installations": n, "chargers_per_installation": per, "bytes_total": total,
            "bytes_per_installation": round(total / n), "bytes_per_charger": round(total / (n * per))}


def proc_cpu_s(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def proc_rss_mb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


class Observer:
    def __init__(self, port):
        self.lock = threading.Lock()
        self.presence = {}          # name -> latest doc
        self.limits = []            # (t, serial, by)
        self.c = new_client("shardbench-obs-%d" % os.getpid())
        self.c.on_connect = lambda c, u, f, rc, p=None: c.subscribe([("refcloud/instances/+", 1),
                                                                       ("evse/+/limit", 0)])
        self.c.on_message = self._msg
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()

    def _msg(self, c, u, m):
        t = time.monotonic()
        if m.topic.startswith("refcloud/"):
            name = m.topic.rsplit("/", 1)[1]
            with self.lock:
                self.presence[name] = json.loads(m.payload) if m.payload else None
            return
        try:
            by = json.loads(m.payload).get("by")
        except ValueError:
            return
        with self.lock:
            self.limits.append((t, m.topic.split("/")[1], by))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="tools/shard_bench.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--instances", type=int, default=2)
    ap.add_argument("--installations", type=int, default=400)
    ap.add_argument("--per", type=int, default=5, help="chargers per installation")
    ap.add_argument("--interval", type=float, default=2.0, help="s between two states of a charger")
    ap.add_argument("--period", type=float, default=3.0, help="allocation round of the instances")
    ap.add_argument("--seconds", type=float, default=20.0, help="measurement window")
    ap.add_argument("--mem-installations", type=int, default=2000)
    ap.add_argument("--out", help="write the figures as JSON here")
    a = ap.parse_args(argv)

    res = {"memory": measure_memory(a.mem_installations, a.per)}
    print("memory: %s" % json.dumps(res["memory"]), flush=True)

    work = tempfile.mkdtemp(prefix="shardbench-")
    inst_dir = os.path.join(work, "installations")
    serials = write_installations(inst_dir, a.installations, a.per)
    all_serials = [s for ss in serials.values() for s in ss]
    site_of = {s: i for i, ss in serials.items() for s in ss}
    broker = Broker().start()
    procs = {}
    gen = None
    try:
        for k in range(a.instances):
            name = "sb%d" % k
            log = open(os.path.join(work, name + ".log"), "wb")
            procs[name] = subprocess.Popen(
                [sys.executable, CLOUD, "--broker", broker.address, "--installations", inst_dir, "--instance", name,
                 "--sessions", os.path.join(work, name + "-sessions.json"), "--period", str(a.period),
                 "--ttl", "30", "--keepalive", "5", "--heartbeat", "1"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            log.close()
        obs = Observer(broker.port)
        gen = new_client("shardbench-gen-%d" % os.getpid())
        gen.max_inflight_messages_set(1000)
        gen.max_queued_messages_set(0)
        gen.connect("127.0.0.1", broker.port, keepalive=30)
        gen.loop_start()
        for s in all_serials:
            gen.publish("evse/%s/online" % s, b"online", qos=1, retain=True)
        stop = threading.Event()
        sent = [0]

        def generate():
            seq = 0
            n = len(all_serials)
            start = time.monotonic()
            k = 0
            while not stop.is_set():
                seq += 1
                for i, s in enumerate(all_serials):
                    # spread the states of one round evenly over the interval
                    due = start + (k * n + i) * a.interval / n
                    d = due - time.monotonic()
                    if d > 0.002:
                        time.sleep(d)
                    gen.publish("evse/%s/state" % s, json.dumps(state_doc(seq)), qos=1, retain=True)
                    sent[0] += 1
                    if stop.is_set():
                        return
                k += 1

        th = threading.Thread(target=generate, daemon=True)
        th.start()
        warm = 12.0
        time.sleep(warm)

        def sample():
            with obs.lock:
                pres = {n: dict(obs.presence.get(n) or {}) for n in procs}
            return (time.monotonic(), sent[0], {n: (pres[n].get("stats") or {}) for n in procs},
                    {n: proc_cpu_s(p.pid) for n, p in procs.items()}, proc_cpu_s(broker.proc.pid))

        s0 = sample()
        t_w0 = s0[0]
        time.sleep(a.seconds)
        s1 = sample()
        dt = s1[0] - s0[0]
        per = {}
        for n in procs:
            st0, st1 = s0[2][n], s1[2][n]
            row = {k: round((st1.get(k, 0) - st0.get(k, 0)) / dt, 1) for k in
                   ("rx", "fwd_out", "fwd_in", "handled", "limits", "dups", "dropped")}
            row["loop_busy_pct"] = round(100 * (st1.get("busy_s", 0) - st0.get("busy_s", 0)) / dt, 1)
            c0, c1 = s0[3][n], s1[3][n]
            row["cpu_pct"] = round(100 * (c1 - c0) / dt, 1) if c0 is not None and c1 is not None else None
            row["rss_mb"] = proc_rss_mb(procs[n].pid)
            with obs.lock:
                owns = (obs.presence.get(n) or {}).get("owns") or []
            row["installations"] = len(owns)
            row["chargers"] = sum(len(serials[i]) for i in owns)
            per[n] = row
        with obs.lock:
            window = [x for x in obs.limits if t_w0 <= x[0] <= s1[0]]
        senders = {}
        for _, s, by in window:
            senders.setdefault(s, set()).add(by)
        res["throughput"] = {
            "instances": a.instances, "installations": a.installations, "chargers": len(all_serials),
            "state_interval_s": a.interval, "period_s": a.period, "window_s": round(dt, 1),
            "offered_states_per_s": round((s1[1] - s0[1]) / dt, 1),
            "limits_seen_per_s": round(len(window) / dt, 1),
            "chargers_leased": len(senders),
            "chargers_with_two_senders": sum(1 for v in senders.values() if len(v) > 1),
            "broker_cpu_pct": round(100 * (s1[4] - s0[4]) / dt, 1) if s0[4] is not None else None,
            "per_instance": per}
        print("throughput: %s" % json.dumps(res["throughput"], indent=1), flush=True)

        # ---- takeover: the instance with the most chargers dies
        victim = max(per, key=lambda n: per[n]["chargers"])
        with obs.lock:
            lost = {s for i in (obs.presence.get(victim) or {}).get("owns", []) for s in serials[i]}
        t_kill = time.monotonic()
        os.killpg(procs[victim].pid, signal.SIGKILL)
        procs[victim].wait()
        taken = {}
        end = t_kill + 60
        while len(taken) < len(lost) and time.monotonic() < end:
            time.sleep(0.2)
            with obs.lock:
                for t, s, by in obs.limits:
                    if t > t_kill and s in lost and by != victim and s not in taken:
                        taken[s] = t - t_kill
        res["takeover"] = {"victim": victim, "chargers": len(lost), "taken": len(taken),
                           "installations": len({site_of[s] for s in lost}),
                           "first_s": round(min(taken.values()), 2) if taken else None,
                           "all_s": round(max(taken.values()), 2) if len(taken) == len(lost) else None}
        print("takeover: %s" % json.dumps(res["takeover"]), flush=True)
        stop.set()
        th.join(5)
    finally:
        if gen is not None:
            gen.loop_stop()
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        broker.stop()
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1, sort_keys=True)
            f.write("\n")
    return 0
