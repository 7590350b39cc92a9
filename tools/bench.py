#!/usr/bin/env python3
"""make bench: measured speed, memory and latency of the firmware; writes bench/results.json.

    python tools/bench.py [--out bench/results.json] [--only tick,heap,safety,limit,fleet] [--fleet 200,500,1000]

Measures, on this machine, with the MicroPython unix port and the `make bundle` image (build/bundle):
fast-tick allocation and CPU time, the smallest heap that runs the reference scenario and the peak
live heap in it, contactor open latency after C->B / RCD trip / state E in real time with MQTT
traffic (and with the broker blackholed), fast-loop gaps while the broker is down / blackholed /
slow, `limit` -> PWM latency against the broker's own delivery time, the largest fleet this machine
runs with the reference cloud (in the one-process fleet mode, tools/sim-fleet) with the broker's
message rate, and the reference cloud's allocator time per round at 10^4 chargers. Methods and what
the figures mean for an ESP32: bench/README.md. Benchmarks measure; they assert nothing.

Everything started here runs in its own process group and is stopped before exit.
"""

import argparse
import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "host_tests"))
sys.path.insert(0, os.path.join(ROOT, "tools"))

from broker import Broker, Client, Proxy  # noqa: E402  (host_tests/broker.py: test peers, not tests)

MP = os.path.join(ROOT, ".venv", "bin", "micropython")
# The 32-bit ports of tools/build_micropython.py: the simulator frozen in; device modules from .mpy
# files (or a ROMFS image), or frozen in too.
MP32 = os.path.join(ROOT, "build", "mp32", "micropython")
MP32_FROZEN = os.path.join(ROOT, "build", "mp32", "micropython-frozen")
BUNDLE = os.path.join(ROOT, "build", "bundle")
SIM_CHARGER = os.path.join(ROOT, "tools", "sim-charger")
KEYS = ("tick_alloc_bytes", "heap_min_kb", "heap_peak_kb", "tick_us_p50", "tick_us_p99", "safety_open_ms_max",
        "safety_open_blackhole_ms_max", "loop_gap_ms_max", "limit_apply_ms_p50", "limit_apply_ms_p99",
        "mqtt_rtt_ms_p50", "fleet_chargers", "fleet_converge_s", "fleet_overload_events", "fleet_broker_msgs_per_s",
        "cloud_balance_ms_10k",
        "heap_min_kb_32_mpy", "heap_min_kb_32_romfs", "heap_min_kb_32_frozen", "heap_peak_kb_32_frozen",
        "module_heap_kb_32_frozen", "tick_us_p50_32", "tick_us_p99_32")
BUDGET_S = 14 * 60  # `make bench` must finish within 15 minutes on the 2-core machine


def log(*a):
    print("[bench %5.0fs]" % (time.monotonic() - T0), *a, flush=True)


T0 = time.monotonic()


def pct(xs, p):
    s = sorted(xs)
    if not s:
        return None
    k = (len(s) - 1) * p / 100.0
    i = int(k)
    j = min(i + 1, len(s) - 1)
    return s[i] + (s[j] - s[i]) * (k - i)


def mp_env(image="mpy"):
    """Environment for a MicroPython child: the bundle's .mpy files, the binary's frozen image
    (`frozen`) or a ROMFS image mounted at /rom by the script (`romfs`)."""
    env = dict(os.environ)
    # the ESP32's order: the flash root, then the frozen modules, then /lib (so stock firmware's
    # frozen umqtt.simple wins over the bundle's lib/umqtt copy)
    env["MICROPYPATH"] = {"mpy": ":".join([BUNDLE, ".frozen", os.path.join(BUNDLE, "lib")]),
                          "frozen": ".frozen",
                          "romfs": "/rom:/rom/lib:.frozen"}[image]
    return env


class Proc:
    """A child in its own process group whose stdout lines go to a queue (and a list)."""

    def __init__(self, args, env=None, stdin=True, cwd=ROOT):
        self.p = subprocess.Popen(args, env=env, cwd=cwd, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                  start_new_session=True)
        self.q = queue.Queue()
        self.lines = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            self.q.put(line)
        self.q.put(None)

    def send(self, line):
        try:
            self.p.stdin.write(line + "\n")
            self.p.stdin.flush()
        except (OSError, ValueError):
            pass

    def expect(self, prefix, timeout):
        """Next line starting with prefix (others are skipped), or None on timeout / exit."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return None
            try:
                line = self.q.get(timeout=left)
            except queue.Empty:
                return None
            if line is None:
                return None
            if line.startswith(prefix):
                return line

    def stop(self, sig=signal.SIGTERM, wait=12):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.p.pid, signal.SIGKILL)  # whatever is left of the group
        except (ProcessLookupError, PermissionError):
            pass
        if self.p.poll() is None:
            self.p.wait()


# ---------------------------------------------------------------------------------------------- tick

def bench_tick(res, extra, work):
    root = os.path.join(work, "tick")
    os.makedirs(root)
    p = Proc([MP, "-X", "heapsize=512K", os.path.join(ROOT, "bench", "mp_tick.py"), root], env=mp_env(),
             stdin=False)
    line = p.expect("@result ", 120)
    p.stop()
    if line is None:
        raise RuntimeError("mp_tick failed: " + "\n".join(p.lines[-20:]))
    r = json.loads(line[len("@result "):])
    if not r.get("charging") or not r.get("still_charging"):
        raise RuntimeError("mp_tick: not in steady charging: %r" % r)
    p = Proc([MP, "-X", "heapsize=512K", os.path.join(ROOT, "bench", "mp_modules.py")], env=mp_env(), stdin=False)
    line = p.expect("@modules ", 60)
    p.stop()
    if line is not None:
        extra["module_heap_bytes"] = json.loads(line[len("@modules "):])
        log("heap taken by loaded modules (bytes): %s" % extra["module_heap_bytes"])
    image = os.path.join(work, "firmware.romfs")
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "build_bundle.py"), os.path.join(work, "bundle"),
                    "--romfs", image], check=True, capture_output=True)
    p = Proc([MP, "-X", "heapsize=512K", os.path.join(ROOT, "bench", "mp_modules.py"), image], env=mp_env(),
             stdin=False)
    line = p.expect("@modules ", 60)
    p.stop()
    if line is not None:
        extra["module_heap_romfs_bytes"] = json.loads(line[len("@modules "):])
        log("heap taken by the same modules run from a ROMFS image (bytes): %s" % extra["module_heap_romfs_bytes"])
    res["tick_alloc_bytes"] = r["tick_alloc_bytes"]
    res["tick_us_p50"] = r["tick_us_p50"]
    res["tick_us_p99"] = r["tick_us_p99"]
    extra["tick"] = r
    log("loop allocation in steady charging: %d B/s, %d B/s without the simulated plant's" % (
        r["loop_alloc_bytes_per_s"], r["loop_alloc_fw_bytes_per_s"]))
    log("tick: %.3f bytes/tick (heap_lock over %d ticks: %s), %d/%d us p50/p99 (core %d/%d, pilot.sample %d/%d)" % (
        r["tick_alloc_bytes"], r["alloc_ticks"], "ok" if r["heap_lock_ok"] else "MemoryError", r["tick_us_p50"],
        r["tick_us_p99"], r["core_us_p50"], r["core_us_p99"], r["pilot_sample_us_p50"], r["pilot_sample_us_p99"]))


def modules_heap(binary, image, romfs=None):
    args = [binary, "-X", "heapsize=512K", os.path.join(ROOT, "bench", "mp_modules.py")]
    if romfs:
        args.append(romfs)
    p = Proc(args, env=mp_env(image), stdin=False)
    line = p.expect("@modules ", 60)
    p.stop()
    if line is None:
        raise RuntimeError("mp_modules (%s) failed: %s" % (image, "\n".join(p.lines[-20:])))
    return json.loads(line[len("@modules "):])


def bench_tick32(res, extra, notes, work):
    """Tick time on the 32-bit frozen image, and the heap its modules take when loaded three ways."""
    root = os.path.join(work, "tick32")
    os.makedirs(root)
    p = Proc([MP32_FROZEN, "-X", "heapsize=512K", os.path.join(ROOT, "bench", "mp_tick.py"), root],
             env=mp_env("frozen"), stdin=False)
    line = p.expect("@result ", 120)
    p.stop()
    if line is None:
        raise RuntimeError("mp_tick (32-bit) failed: " + "\n".join(p.lines[-20:]))
    r = json.loads(line[len("@result "):])
    extra["tick32"] = r
    res["tick_us_p50_32"] = r["tick_us_p50"]
    res["tick_us_p99_32"] = r["tick_us_p99"]
    log("tick 32-bit frozen: %d/%d us p50/p99 (core %d/%d); %.3f bytes/tick, %d B/s without the simulated "
        "plant's, heap_lock: %s" % (r["tick_us_p50"], r["tick_us_p99"], r["core_us_p50"], r["core_us_p99"],
                                    r["tick_alloc_bytes"], r["loop_alloc_fw_bytes_per_s"],
                                    "ok" if r["heap_lock_ok"] else "MemoryError"))
    # allocation from .mpy files on the same 32-bit port (the frozen image's can differ: bench/README.md)
    os.makedirs(root + "-mpy")
    p = Proc([MP32, "-X", "heapsize=512K", os.path.join(ROOT, "bench", "mp_tick.py"), root + "-mpy"],
             env=mp_env("mpy"), stdin=False)
    line = p.expect("@result ", 120)
    p.stop()
    if line is None:
        raise RuntimeError("mp_tick (32-bit, .mpy) failed: " + "\n".join(p.lines[-20:]))
    r2 = json.loads(line[len("@result "):])
    extra["tick32_mpy"] = r2
    log("tick 32-bit .mpy: %d/%d us p50/p99; %.3f bytes/tick, heap_lock: %s" % (
        r2["tick_us_p50"], r2["tick_us_p99"], r2["tick_alloc_bytes"], "ok" if r2["heap_lock_ok"] else "MemoryError"))
    if r["tick_alloc_bytes"] or not r["heap_lock_ok"]:
        notes["tick_us_p50_32"] = ("the frozen image's fast tick allocates %.0f bytes/tick (%.0f from .mpy "
                                   "files): bench/README.md" % (r["tick_alloc_bytes"], r2["tick_alloc_bytes"]))
    romfs = os.path.join(work, "tick32.romfs")
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "build_bundle.py"), os.path.join(work, "bundle-t32"),
                    "--romfs", romfs], check=True, capture_output=True)
    for image, binary, img in (("mpy", MP32, None), ("romfs", MP32, romfs), ("frozen", MP32_FROZEN, None)):
        m = modules_heap(binary, image, img)
        extra["module_heap_32_%s_bytes" % image] = m
        log("heap taken by the device modules, 32-bit, %s (bytes): %s" % (image, m))
    m = extra["module_heap_32_frozen_bytes"]
    res["module_heap_kb_32_frozen"] = round((m["total"] - m.get("sim_only", 0)) / 1024, 1)


# ---------------------------------------------------------------------------------------------- heap

def scenario(broker, work, heap_kb, sid, mem=False, image=None, romfs=None, sim_bytes=0):
    """The reference scenario against sim-charger --bundle --heap HEAP_KB: returns (ok, info dict).
    With `image` (mpy / romfs / frozen) the charger is bench/mp_scenario.py on a 32-bit port instead:
    the device's one MQTT link, vehicle ops on stdin (no second connection for the vehicle); the
    process gets `sim_bytes` (the simulator's own heap, measured by a first run) on top."""
    state = os.path.join(work, sid)
    os.makedirs(state)
    settings = os.path.join(work, sid + ".json")
    with open(settings, "w") as f:
        json.dump({"standalone": False, "auth_required": True, "fallback_current_a": 16, "max_current_a": 16,
                   "state_interval_s": 2}, f)
    pre = "evse/%s/" % sid
    cl = Client(broker.port, topics=(pre + "#",), client_id="bench-" + sid)
    env = dict(os.environ)
    if mem:
        env["SIM_BENCH"] = "mem"
    else:
        env.pop("SIM_BENCH", None)
    if image is None:
        p = Proc([sys.executable, SIM_CHARGER, "--id", sid, "--broker", "127.0.0.1:%d" % broker.port, "--state-dir",
                  state, "--settings", settings, "--bundle", "--heap", "%dK" % heap_kb], env=env, stdin=False)

        def ev(doc):
            cl.publish("sim/%s/ev" % sid, json.dumps(doc))
    else:
        env.update({k: v for k, v in mp_env(image).items() if k == "MICROPYPATH"})
        heap = heap_kb * 1024 + sim_bytes
        args = [os.path.join(ROOT, "bench", "mp_scenario.py"), sid, "127.0.0.1:%d" % broker.port, state, settings]
        if romfs:
            # the image is read into the heap (a board maps it from flash): that much more heap
            heap += (os.path.getsize(romfs) + 64 + 1023) // 1024 * 1024
            args.append(romfs)
        p = Proc([MP32_FROZEN if image == "frozen" else MP32, "-X", "heapsize=%d" % heap] + args, env=env)

        def ev(doc):
            p.send(json.dumps(doc))
    info = {"heap_kb": heap_kb, "step": None}
    if sim_bytes:
        info["sim_bytes_added"] = sim_bytes
    t0 = time.monotonic()

    def msg(sub, pred=lambda d: True, timeout=15.0):
        def match(t, pl, r):
            if t != pre + sub:
                return False
            if sub == "online":
                return pl == b"online"
            try:
                return pred(json.loads(pl))
            except ValueError:
                return False
        end = time.monotonic() + timeout
        m = None
        while m is None and time.monotonic() < end:
            m = cl.wait_for(match, 0.25)
            if m is None and (p.p.poll() is not None or any("MemoryError" in x for x in p.lines)):
                break  # dead (or a thread died of MemoryError): fail now, not at the timeout
        return None if m is None else (m[1] if sub == "online" else json.loads(m[1]))

    def state_is(pred):
        return msg("state", pred)

    ok = False
    try:
        steps = []

        def step(name, v):
            info["step"] = name
            steps.append((name, round(time.monotonic() - t0, 2)))
            if v is None or v is False or p.p.poll() is not None:
                raise StopIteration(name)
            return v

        step("online", msg("online", timeout=20))
        ev({"op": "plug", "cable_a": 32, "phases": 3, "max_a": 32})
        ev({"op": "charge", "on": True})
        step("plugged", state_is(lambda d: d.get("auth", {}).get("state") == "pending"))
        cl.publish(pre + "cmd", json.dumps({"id": "c-1", "op": "authorize", "auth_id": "app:bench"}))
        step("authorized", msg("reply", lambda d: d.get("id") == "c-1" and d.get("ok") is True))
        step("charging", state_is(lambda d: d.get("mode") == "connected_charging" and d.get("contactor") is True))
        cl.publish(pre + "limit", json.dumps({"a": 10, "ttl_s": 60, "seq": 1}))
        step("limit", state_is(lambda d: d.get("offered_a") == 10 and d.get("limit_src") == "cloud"))
        ev({"op": "unplug"})
        rec = step("session", msg("session", lambda d: d.get("stop_reason") == "ev_unplugged"))
        cl.publish(pre + "cmd", json.dumps({"id": "c-2", "op": "session_ack", "session_id": rec["id"]}))
        step("acked", msg("reply", lambda d: d.get("id") == "c-2" and d.get("ok") is True
                          and d.get("result", {}).get("deleted") is True))
        time.sleep(1.5 if mem else 0.5)
        step("alive", p.p.poll() is None)
        ok = True
    except StopIteration:
        ok = False
    finally:
        cl.close()
        p.stop()
    info["s"] = round(time.monotonic() - t0, 1)
    info["memory_error"] = any("MemoryError" in x for x in p.lines)
    bl = [json.loads(x[len("@bench "):]) for x in p.lines if x.startswith("@bench ")]
    if bl:
        info["live_max"] = max(b["live_max"] or 0 for b in bl)
        info["mem_alloc_max"] = max(b["mem_alloc"] for b in bl)
    sim = [int(x.split()[1]) for x in p.lines if x.startswith("@simheap ")]
    if sim:
        info["sim_heap_bytes"] = sim[0]
    if not ok:
        info["tail"] = p.lines[-3:]
    return ok, info


def heap_search(broker, work, runs, tag, image=None, romfs=None, peak=True):
    """(smallest heap in KiB that passes the scenario or None, its note, probe info at 512 K or None).
    On the 32-bit images the simulator's own heap, reported by the probe run, is added to every
    heap tried, so that the figure counts what a device needs (bench/mp_scenario.py)."""
    n = [0]
    sim = [0]

    def run(kb, mem=False):
        n[0] += 1
        ok, info = scenario(broker, work, kb, "%s%03d" % (tag, n[0]), mem, image, romfs, sim[0])
        log("heap%s: %3d K -> %s (%s s%s)" % (
            "" if image is None else " 32-bit " + image, kb, "pass" if ok else "FAIL at " + str(info["step"]),
            info["s"], ", MemoryError" if info["memory_error"] else ""))
        runs.append(info | {"ok": ok, "image": image or "mpy64"})
        return ok, info

    probe = None
    if peak or image is not None:
        ok, info = run(512, mem=True)
        probe = info if ok and info.get("live_max") else None
        if probe is None:
            log("heap: the reference scenario did not pass at 512 K with the probe: %r" % info)
            if image is not None:
                return None, "the probe run at 512 K failed, so the simulator's share is unknown", None
        elif image is not None:
            sim[0] = probe["sim_heap_bytes"]
            log("heap 32-bit %s: the simulator's own heap, added to every heap tried: %d bytes" % (image, sim[0]))
    lo, hi = 8, 256
    if not run(hi)[0]:
        return None, "the reference scenario fails even at %d K" % hi, probe
    while hi - lo > 2:
        mid = (lo + hi) // 2 // 2 * 2
        if run(mid)[0]:
            hi = mid
        else:
            lo = mid
    # confirm (threads make GC timing vary a little): two more passes, else step up
    for _ in range(4):
        if run(hi)[0] and run(hi)[0]:
            break
        hi += 2
    return hi, None, probe


def bench_heap(res, extra, notes, work, broker):
    runs = []
    extra["heap_runs"] = runs
    hi, note, info = heap_search(broker, work, runs, "HEAP")
    if info is not None:
        res["heap_peak_kb"] = round(info["live_max"] / 1024, 1)
        extra["heap_peak"] = {"live_max_bytes": info["live_max"], "mem_alloc_max_bytes": info.get("mem_alloc_max")}
    else:
        notes["heap_peak_kb"] = "the reference scenario did not pass at 512 K with the probe"
    if hi is None:
        notes["heap_min_kb"] = note
    else:
        res["heap_min_kb"] = hi


def bench_heap32(res, extra, notes, work, broker):
    """The reference scenario on the 32-bit ports, the device's code loaded three ways: from the
    bundle's .mpy files (`make deploy`), from a ROMFS image (`make deploy-romfs`), frozen in."""
    runs = []
    extra["heap32_runs"] = runs
    romfs = os.path.join(work, "heap32.romfs")
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "build_bundle.py"), os.path.join(work, "bundle32"),
                    "--romfs", romfs], check=True, capture_output=True)
    extra["heap32_romfs_image_bytes"] = os.path.getsize(romfs)
    for image in os.getenv("BENCH_HEAP32_IMAGES", "frozen,romfs,mpy").split(","):
        hi, note, info = heap_search(broker, work, runs, "H32" + image[0].upper(), image,
                                     romfs if image == "romfs" else None)
        key = "heap_min_kb_32_" + image
        if hi is None:
            notes[key] = note
        else:
            res[key] = hi
        if info is not None:
            extra["heap32_peak_" + image] = {"live_max_bytes": info["live_max"],
                                             "mem_alloc_max_bytes": info.get("mem_alloc_max"),
                                             "sim_heap_bytes": info.get("sim_heap_bytes")}
            if image == "romfs":  # the image itself was on the heap (in flash on a board)
                extra["heap32_peak_romfs"]["live_max_bytes_without_image"] = info["live_max"] - os.path.getsize(romfs)
            if image == "frozen":  # the device's share: the simulator's own heap taken out
                res["heap_peak_kb_32_frozen"] = round((info["live_max"] - info["sim_heap_bytes"]) / 1024, 1)
        elif image == "frozen":
            notes["heap_peak_kb_32_frozen"] = "the reference scenario did not pass at 512 K with the probe"
    # the simulator's modules and plant, per image: given on top of every heap tried
    extra["heap32_sim_bytes"] = {r["image"]: r["sim_heap_bytes"] for r in runs if r.get("sim_heap_bytes")}


# -------------------------------------------------------------------------------------------- safety

class Traffic(threading.Thread):
    """paho traffic to and from the chargers: a `get` command (answered with state + settings) every
    200 ms and a `limit` every 200 ms per charger, and everything they publish is received."""

    def __init__(self, port, sids):
        super().__init__(daemon=True)
        self.sids = sids
        self.cl = Client(port, topics=("evse/+/reply", "evse/+/state", "evse/+/event"), client_id="bench-traffic")
        self.stop = threading.Event()
        self.sent = 0

    def run(self):
        i = 0
        while not self.stop.wait(0.1):
            i += 1
            for s in self.sids:
                if i % 2:
                    self.cl.c.publish("evse/%s/cmd" % s, json.dumps({"id": "g-%d" % i, "op": "get"}), qos=1)
                else:
                    self.cl.c.publish("evse/%s/limit" % s, json.dumps({"a": 16, "ttl_s": 60, "seq": i}), qos=1)
                self.sent += 1

    def received(self):
        return len(self.cl.msgs)

    def close(self):
        self.stop.set()
        self.join(2)
        self.cl.close()


def bench_safety(res, extra, notes, work, broker, trials):
    proxy = Proxy(broker.port)
    procs = {}
    per = (trials + 1) // 2
    traffic = None
    try:
        for k, (sid, port) in enumerate((("SAFE-N1", broker.port), ("SAFE-N2", broker.port),
                                         ("SAFE-H1", proxy.port), ("SAFE-H2", proxy.port))):
            root = os.path.join(work, sid)
            os.makedirs(root)
            procs[sid] = Proc([MP, "-X", "heapsize=256K", os.path.join(ROOT, "bench", "mp_realtime.py"), "safety",
                               sid, "127.0.0.1:%d" % port, root, str(k + 1)], env=mp_env())
        for sid, p in procs.items():
            if p.expect("@ready", 30) is None:
                raise RuntimeError("%s not ready: %s" % (sid, p.lines[-10:]))
        traffic = Traffic(broker.port, list(procs))
        traffic.start()
        time.sleep(2)
        normal = ("SAFE-N1", "SAFE-N2")
        hole = ("SAFE-H1", "SAFE-H2")
        # H1/H2 (behind the proxy): slow broker (20 s) -> blackhole (the trials) -> down (20 s);
        # N1/N2 (direct): the normal trials meanwhile
        for s in normal:
            procs[s].send("phase normal %d 400" % per)
        phases = {}

        def hole_phase(mode, name, n, max_s):
            proxy.set_mode(mode)
            for s in hole:
                procs[s].send("phase %s %d %d" % (name, n, max_s))
            for s in hole:
                line = procs[s].expect("@phase ", max_s + 60)
                phases.setdefault(name, []).append(json.loads(line[7:]) if line else {"error": "no phase result"})
        hole_phase("dribble", "slow", 1000, 20)
        hole_phase("blackhole", "blackhole", per, 400)
        hole_phase("cut", "down", 1000, 20)
        for s in normal:
            line = procs[s].expect("@phase ", 420)
            phases.setdefault("normal", []).append(json.loads(line[7:]) if line else {"error": "no phase result"})
            procs[s].send("quit")
        recv_before = traffic.received()
        proxy.set_mode("pass")
        for s in hole:
            procs[s].send("quit")
        extra["traffic"] = {"sent_to_chargers": traffic.sent, "received_from_chargers": recv_before}
    finally:
        if traffic is not None:
            traffic.close()
        time.sleep(0.5)
        for p in procs.values():
            p.stop()
        proxy.close()
    lat = {}
    misses = {}
    for p in procs.values():
        for line in p.lines:
            w = line.split()
            if w and w[0] == "@trial":
                lat.setdefault(w[1], {}).setdefault(w[2], []).append(int(w[3]) / 1000.0)
            elif w and w[0] == "@miss":
                misses.setdefault(w[1], []).append(w[2])
    summary = {}
    for ph, kinds in lat.items():
        summary[ph] = {k: {"n": len(v), "p50_ms": round(pct(v, 50), 2), "p99_ms": round(pct(v, 99), 2),
                           "max_ms": round(max(v), 2)} for k, v in kinds.items()}
        summary[ph]["misses"] = len(misses.get(ph, []))
        summary[ph]["gap_max_ms"] = max((x.get("gap_max_ms") or 0) for x in phases.get(ph, [{}]))
        summary[ph]["link"] = [x.get("link") for x in phases.get(ph, [])]
    extra["safety"] = summary
    for key, ph in (("safety_open_ms_max", "normal"), ("safety_open_blackhole_ms_max", "blackhole")):
        allv = [x for v in lat.get(ph, {}).values() for x in v]
        n = len(allv) + len(misses.get(ph, []))
        if misses.get(ph):
            res[key] = None
            notes[key] = "%d of %d trials saw no open command within 2 s" % (len(misses[ph]), n)
        elif n < trials:
            res[key] = round(max(allv), 2) if allv else None
            notes[key] = "only %d trials (wanted %d) finished in the time given" % (n, trials)
        else:
            res[key] = round(max(allv), 2)
        log("safety %-9s: %d trials, max %s ms; %s" % (ph, n, res[key], json.dumps(summary.get(ph, {}).get("cb"))))
    gaps = [summary[ph]["gap_max_ms"] for ph in ("blackhole", "down", "slow") if ph in summary]
    gaps += [x.get("gap_max_ms") or 0 for ph in ("down", "slow") for x in phases.get(ph, [])]
    res["loop_gap_ms_max"] = max(gaps) if gaps else None
    extra["loop_gap_ms"] = {ph: max((x.get("gap_max_ms") or 0) for x in phases.get(ph, [{}]))
                            for ph in ("normal", "blackhole", "down", "slow")}
    log("loop gaps (ms): %s" % extra["loop_gap_ms"])


# --------------------------------------------------------------------------------------------- limit

def bench_limit(res, extra, notes, work, broker, n):
    import paho.mqtt.client as mqtt

    root = os.path.join(work, "LIMIT1")
    os.makedirs(root)
    p = Proc([MP, "-X", "heapsize=256K", os.path.join(ROOT, "bench", "mp_realtime.py"), "limit", "LIMIT1",
              "127.0.0.1:%d" % broker.port, root, "1"], env=mp_env())
    rtt_q = queue.Queue()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-rtt-sub")
    sub.on_message = lambda c, u, m: rtt_q.put((time.time_ns(), bytes(m.payload)))
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_connect = lambda c, u, f, rc, pr=None: c.subscribe("bench/rtt", qos=1)
    sub.connect("127.0.0.1", broker.port, 30)
    sub.loop_start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-limit-pub")
    pub.connect("127.0.0.1", broker.port, 30)
    pub.loop_start()
    lim, rtt = [], []
    lost = 0
    try:
        if p.expect("@ready", 30) is None or not subscribed.wait(10):
            raise RuntimeError("limit bench not ready: %s" % p.lines[-10:])
        time.sleep(1.0)
        while not p.q.empty():
            p.q.get_nowait()
        rnd = random.Random(7)
        for i in range(n):
            a = 10 if i % 2 == 0 else 13
            t = time.time_ns()
            pub.publish("evse/LIMIT1/limit", json.dumps({"a": a, "ttl_s": 600, "seq": i + 1}), qos=1)
            line = p.expect("@pwm ", 3)
            if line is None:
                lost += 1
            else:
                lim.append((int(line.split()[1]) - t) / 1e6)
            t = time.time_ns()
            pub.publish("bench/rtt", str(i), qos=1)
            try:
                t2, _ = rtt_q.get(timeout=3)
                rtt.append((t2 - t) / 1e6)
            except queue.Empty:
                pass
            time.sleep(rnd.uniform(0.02, 0.12))  # a random phase against the firmware's 10/50 ms ticks
        p.send("quit")
    finally:
        pub.loop_stop()
        pub.disconnect()
        sub.loop_stop()
        sub.disconnect()
        p.stop()
    res["limit_apply_ms_p50"] = round(pct(lim, 50), 2) if lim else None
    res["limit_apply_ms_p99"] = round(pct(lim, 99), 2) if lim else None
    res["mqtt_rtt_ms_p50"] = round(pct(rtt, 50), 3) if rtt else None
    if lost:
        notes["limit_apply_ms_p99"] = "%d of %d limits produced no PWM change within 3 s" % (lost, n)
    extra["limit"] = {"n": len(lim), "lost": lost, "min_ms": round(min(lim), 2) if lim else None,
                      "max_ms": round(max(lim), 2) if lim else None,
                      "rtt_n": len(rtt), "rtt_p99_ms": round(pct(rtt, 99), 3) if rtt else None}
    log("limit -> PWM: p50 %s ms, p99 %s ms (n=%d, lost %d); paho->broker->paho p50 %s ms" % (
        res["limit_apply_ms_p50"], res["limit_apply_ms_p99"], len(lim), lost, res["mqtt_rtt_ms_p50"]))


# --------------------------------------------------------------------------------------------- fleet

def _cpu():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v), v[3] + v[4]  # total, idle + iowait


def _busy(a, b):
    tot = b[0] - a[0]
    return round(1 - (b[1] - a[1]) / tot, 3) if tot > 0 else None


def fleet_installation(path, n, per_circuit=None):
    """Circuits of 5 chargers on 32 A breakers, a main breaker that does not bind; past 775 chargers
    (an installation's main breaker is at most 4000 A) circuits of 10."""
    if per_circuit is None:
        per_circuit = 5 if 32 * ((n + 4) // 5) + 32 <= 4000 else 10
    rots = ("L1L2L3", "L2L3L1", "L3L1L2")
    circuits = []
    for c in range((n + per_circuit - 1) // per_circuit):
        serials = ["FLT%04d" % i for i in range(c * per_circuit, min(n, (c + 1) * per_circuit))]
        circuits.append({"name": "c%03d" % c, "breaker_a": 32,
                         "chargers": [{"serial": s, "phase_rotation": rots[i % 3]} for i, s in enumerate(serials)]})
    doc = {"name": "bench fleet %d" % n, "grid": "TN", "main_breaker_a": 32 * len(circuits) + 32,
           "defaults": {"fallback_current_a": 6, "fallback_phases": 3, "max_current_a": 32, "state_interval_s": 2},
           "circuits": circuits}
    with open(path, "w") as f:
        json.dump(doc, f)


def run_fleet(n, work, heap_kb, limits, mode="one", procs=4, tick_ms=250, slow_ms=1000):
    """One fleet size: returns a dict with ok / reason / converge_s / overload_events / gaps.
    mode "one": tools/sim-fleet (many chargers per MicroPython process, board/sim/fleet.py), "procs":
    one tools/sim-charger process per charger."""
    import paho.mqtt.client as mqtt
    from refcloud.balancer import BalancerParams
    from refcloud.fleet import Fleet, check_overload

    d = os.path.join(work, "fleet%d" % n)
    os.makedirs(d)
    inst = os.path.join(d, "inst.json")
    fleet_installation(inst, n)
    params = BalancerParams(period_s=2.0, ttl_s=20, hold_s=10, min_run_s=600, stale_s=15)
    grace_s = params.period_s + 5 + 5 + 1  # one round + PWM raise interval + vehicle follow + sampling
    env = dict(os.environ, SIM_BENCH="1")

    class BenchFleet(Fleet):
        def fresh_serials(self):
            """Chargers whose vehicle state is recent enough for draw() to count it."""
            from refcloud.fleet import TRUTH_STALE_S

            now = time.monotonic()
            with self.lock:
                return {s for s, v in self.truth.items() if now - v[0] <= TRUTH_STALE_S}

        def start_charger(self, serial):
            cfg = self.inst.chargers[serial]
            state = os.path.join(self.dir, serial)
            os.makedirs(state, exist_ok=True)
            settings = os.path.join(self.dir, serial + "-settings.json")
            with open(settings, "w") as f:
                json.dump(self.cloud.config_doc(cfg), f)
            out = open(os.path.join(self.dir, serial + ".log"), "ab")
            p = subprocess.Popen([sys.executable, SIM_CHARGER, "--id", serial, "--broker", self.broker.address,
                                  "--state-dir", state, "--settings", settings, "--prefix", self.prefix, "--bundle",
                                  "--heap", "%dK" % heap_kb], env=env, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True)
            out.close()
            self.procs[serial] = p
            return p

    out = {"n": n, "ok": False, "reason": None, "converge_s": None, "overload_events": None}
    fleet = BenchFleet(inst, params=params, workdir=os.path.join(d, "run"), quiet=True)
    expired = [0]
    evc = None
    stop = threading.Event()
    sampler = None
    cpu0 = _cpu()
    t_start = time.monotonic()
    try:
        fleet.start(chargers=False)
        evc = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-fleet-ev")

        def on_ev(c, u, m):
            if b'"limit_expired"' in m.payload:
                expired[0] += 1
        sys_pub = []  # (monotonic t, $SYS topic, count): the broker's own PUBLISH counters

        def on_msg(c, u, m):
            if m.topic.startswith("$SYS/"):
                try:
                    sys_pub.append((time.monotonic(), m.topic, int(m.payload)))
                except ValueError:
                    pass
            else:
                on_ev(c, u, m)

        def on_conn(c, u, f, rc, pr=None):
            c.subscribe("evse/+/event", qos=1)
            c.subscribe("$SYS/broker/publish/messages/+", qos=0)
        evc.on_message = on_msg
        evc.on_connect = on_conn
        evc.connect("127.0.0.1", fleet.broker.port, 30)
        evc.loop_start()
        serials = list(fleet.inst.chargers)
        if mode == "one":
            fleet.start_fleet(procs=procs, tick_ms=tick_ms, slow_ms=slow_ms)
        else:
            for i, s in enumerate(serials):
                fleet.start_charger(s)
                if i % 10 == 9:
                    time.sleep(0.3)
        snap = fleet.cloud.snapshot

        def wait(pred, timeout):
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                if pred():
                    return True
                if time.monotonic() > limits["deadline"]:
                    return False
                time.sleep(0.25)
            return False

        if not wait(lambda: all(c["fresh"] and c["standalone"] is False for c in snap()["chargers"].values()),
                    30 + n * 0.15):
            bad = [s for s, c in snap()["chargers"].items() if not (c["fresh"] and c["standalone"] is False)]
            out["reason"] = "%d of %d chargers not online and configured" % (len(bad), n)
            return out
        out["online_s"] = round(time.monotonic() - t_start, 1)

        def sample_loop():
            while not stop.wait(0.5):
                try:
                    fleet.sample()
                except Exception:  # a sample during shutdown
                    pass
        sampler = threading.Thread(target=sample_loop, daemon=True)
        sampler.start()
        t_arr = time.monotonic()
        for i, s in enumerate(serials):
            fleet.arrive(s)
            if i % 20 == 19:
                time.sleep(0.1)

        since = [None]

        def settled(breaker, t_ref):
            # settled: every grant at its target (nothing left to lower or raise), every vehicle drawing
            # what it is granted (paused ones nothing), every circuit within its breaker; held 4 s
            now = time.monotonic()
            ch = snap()["chargers"]
            dr = fleet.draw()
            if os.environ.get("BENCH_DEBUG"):
                log("t+%.1f %s" % (now - t_ref, " ".join("%s:%s/%s/%.1f" % (s[-2:], c["grant_a"], c["target_a"], max(
                    dr.get(s, [0, 0, 0]))) for s, c in sorted(ch.items()))))
            ok = True
            bad = {"grant_not_target": 0, "draw_not_grant": 0, "draw_stale": 0, "circuit_over": 0}
            fresh = fleet.fresh_serials() if hasattr(fleet, "fresh_serials") else None
            for s, c in ch.items():
                g, tg = c["grant_a"] or 0.0, c["target_a"] or 0.0
                drawn = max(dr.get(s, [0, 0, 0]))
                if abs(g - tg) > 0.05:
                    bad["grant_not_target"] += 1
                    ok = False
                elif abs(drawn - (g if g >= 6 else 0.0)) > 0.6:
                    bad["draw_not_grant"] += 1
                    if fresh is not None and s not in fresh:
                        bad["draw_stale"] += 1
                    ok = False
            for c in fleet.inst.circuits:
                if max(sum(dr.get(s, [0, 0, 0])[k] for s in c.serials) for k in range(3)) > breaker + 0.15:
                    bad["circuit_over"] += 1
                    ok = False
            out["unsettled"] = bad  # why the last check was not settled (kept when it never settles)
            if not ok:
                since[0] = None
                return False
            if since[0] is None:
                since[0] = now
            return now - since[0] >= 4
        if not wait(lambda: settled(32, t_arr), 60):
            out["reason"] = "the fleet did not settle at 32 A per circuit within 60 s of the vehicles' arrival"
            return out
        out["share_s"] = round(since[0] - t_arr, 1)
        expired_before = expired[0]
        t_step = time.monotonic()
        fleet.mark("breaker step 32 A -> 16 A on every circuit")
        for c in fleet.inst.circuits:
            fleet.cloud.set_breaker(c.name, 16)
        since[0] = None
        if not wait(lambda: settled(16, t_step), 75):
            out["reason"] = "leases did not settle within 75 s of the breaker step"
            return out
        out["converge_s"] = round(since[0] - t_step, 1)
        time.sleep(2)
        out["limit_expired"] = expired[0] - expired_before
        out["ok"] = True
        # mosquitto reports its counters every 10 s: the settled fleet runs on until two reports
        # bracket a stretch of it (a fast convergence alone can fit between two)
        t_from = t_arr + out["share_s"]
        wait(lambda: _broker_rate(sys_pub, t_from) is not None, 25)
        out["broker_msgs_per_s"] = _broker_rate(sys_pub, t_from)
    finally:
        stop.set()
        if sampler is not None:
            sampler.join(2)
        la = os.getloadavg()[0]
        out["loadavg_1m"] = round(la, 2)
        rec = fleet.recording()
        if evc is not None:
            evc.loop_stop()
            evc.disconnect()
        gaps = []
        logs = fleet.dir
        fleet.stop()
        out["cpu_busy"] = _busy(cpu0, _cpu())  # whole machine, this run (2 cores = 1.0)
        out["overload_events"] = len(check_overload(rec, grace_s)) if rec["samples"] else None
        out["samples"] = len(rec["samples"])
        if mode == "one":
            _fleet_gaps(os.path.join(logs, "sim-fleet.log"), n, out)
        # loop gaps from the chargers' @bench lines (one a second, gap within that second), skipping boot
        for s in list(fleet.inst.chargers) if mode != "one" else []:
            try:
                with open(os.path.join(logs, s + ".log")) as f:
                    bl = [json.loads(x[7:]) for x in f if x.startswith("@bench ")]
            except (OSError, ValueError):
                bl = []
            if len(bl) > 3:
                gaps.append(max(b["gap_ms"] for b in bl[3:]))
        shutil.rmtree(logs, ignore_errors=True)
        if mode != "one":
            out["gap_max_ms"] = max(gaps) if gaps else None
            out["gap_p50_ms"] = pct(gaps, 50) if gaps else None
    if out["ok"]:
        if out["gap_max_ms"] is None or out["gap_max_ms"] > limits["gap_ms"]:
            out["ok"] = False
            out["reason"] = "fast-loop gap %s ms > %d ms" % (out["gap_max_ms"], limits["gap_ms"])
        elif limits.get("round_ms") and (out.get("round_ms_mean") or 0) > limits["round_ms"]:
            out["ok"] = False
            out["reason"] = "fleet loop round %s ms on average > the %d ms tick" % (out["round_ms_mean"],
                                                                                   limits["round_ms"])
        elif out["limit_expired"]:
            out["ok"] = False
            out["reason"] = "%d lease(s) expired (limit_expired)" % out["limit_expired"]
    return out


def _broker_rate(sys_pub, t_from):
    """PUBLISH messages per second through the broker (received + sent) from its $SYS counters
    (mosquitto publishes them every 10 s), between the first and the last report after t_from."""
    rates = {}
    for topic in ("$SYS/broker/publish/messages/received", "$SYS/broker/publish/messages/sent"):
        pts = [(t, v) for t, tp, v in sys_pub if tp == topic and t >= t_from]
        if len(pts) >= 2 and pts[-1][0] > pts[0][0]:
            rates[topic.rsplit("/", 1)[1]] = (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0])
    if len(rates) < 2:
        return None
    return {"in": round(rates["received"], 1), "out": round(rates["sent"], 1),
            "total": round(rates["received"] + rates["sent"], 1)}


def _fleet_gaps(path, n, out):
    """The fleet processes' @fleet lines (one a second each): the longest gap between two fast ticks
    of any charger and the longest loop round, once every charger of that process is connected."""
    try:
        with open(path) as f:
            lines = [json.loads(x[7:]) for x in f if x.startswith("@fleet ")]
    except (OSError, ValueError):
        lines = []
    seen = {}
    gaps, rounds, means, fast, slow, gcs, hub = [], [], [], [], [], [], []
    for d in lines:
        k = d["name"]
        if d["connected"] < d["n"] and k not in seen:
            continue
        seen[k] = seen.get(k, 0) + 1
        if seen[k] <= 3:  # the first seconds after the last connect: retained configs, boot events
            continue
        gaps.append(d["gap_ms_max"])
        rounds.append(d["round_ms_max"])
        means.append(d["round_ms_mean"])
        fast.append(d.get("fast_us", 0))
        slow.append(d.get("slow_us", 0))
        gcs.append(d.get("gc_ms", 0))
        hub.append(d.get("hub_ms", 0))
    out["gap_max_ms"] = max(gaps) if gaps else None
    out["gap_p50_ms"] = pct(gaps, 50) if gaps else None
    out["round_ms_max"] = max(rounds) if rounds else None
    out["round_ms_mean"] = round(sum(means) / len(means), 1) if means else None
    # per process and second: us per fast-only step and per slow step (one charger), ms in the GC's
    # one collection, ms polling and serving the sockets
    out["step_us_p50"] = {"fast": pct(fast, 50), "slow": pct(slow, 50)} if fast else None
    out["gc_ms_p50_max"] = [pct(gcs, 50), max(gcs)] if gcs else None
    out["hub_ms_per_s_p50"] = pct(hub, 50) if hub else None
    last = {}
    for d in lines:
        last[d["name"]] = d
    out["procs"] = len(last)
    out["reboots"] = sum(d["reboots"] for d in last.values())
    out["crashes"] = sum(d["crashes"] for d in last.values())
    out["heap_alloc_mb"] = round(sum(d["mem_alloc"] for d in last.values()) / 2**20, 1) if last else None


def bench_cloud_balance(res, extra, notes, installations=200, per_inst=50, rounds=5):
    """The reference cloud's allocator alone (tools/refcloud/allocator.py) on generated installations:
    one round = allocate() for each of `installations` installations of `per_inst` chargers (circuits of
    5 with random breakers and phase rotations, random vehicles: 70 % want current, 1- or 3-phase,
    some committed current, 3 % offline). Also how one installation's round grows with its size."""
    import random

    from refcloud import allocator, installation

    def gen(n, rnd, tag):
        rots = ("L1L2L3", "L2L3L1", "L3L1L2")
        circuits = []
        for c in range((n + 4) // 5):
            circuits.append({"name": "c%04d" % c, "breaker_a": rnd.choice((16, 20, 25, 32, 40, 63)),
                             "chargers": [{"serial": "%s%05d" % (tag, i), "phase_rotation": rots[i % 3]}
                                          for i in range(c * 5, min(n, (c + 1) * 5))]})
        inst = installation.parse({"name": tag, "grid": "TN", "main_breaker_a": float(min(4000, 12 * n)),
                                   "circuits": circuits})
        ins = []
        for s in inst.chargers:
            wants = rnd.random() < 0.7
            ph = rnd.choice((1, 3, 3, 3))
            a = float(rnd.choice((0, 6, 8, 10, 16))) if wants else 0.0
            ins.append(allocator.ChargerInput(
                serial=s, online=rnd.random() < 0.97, wants=wants, phases=ph,
                committed_a=(a, a if ph == 3 else 0.0, a if ph == 3 else 0.0), max_a=float(rnd.choice((16, 32))),
                granted_a=a, priority=rnd.random()))
        return inst, ins

    rnd = random.Random(15)
    fleet = [gen(per_inst, rnd, "I%03d-" % k) for k in range(installations)]
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        for inst, ins in fleet:
            allocator.allocate(inst, ins)
        times.append((time.perf_counter() - t) * 1000)
    res["cloud_balance_ms_10k"] = round(pct(times, 50), 1)
    one = {}
    for n in (50, 200, 500):
        inst, ins = gen(n, rnd, "S")
        t = time.perf_counter()
        allocator.allocate(inst, ins)
        one[str(n)] = round((time.perf_counter() - t) * 1000, 1)
    extra["cloud_balance"] = {"installations": installations, "chargers_each": per_inst, "rounds": rounds,
                              "round_ms": [round(x, 1) for x in times], "one_installation_ms": one}
    log("cloud balance: %d chargers (%d installations x %d): %.0f ms per round; one installation of 50/200/500: "
        "%s ms" % (installations * per_inst, installations, per_inst, res["cloud_balance_ms_10k"],
                   "/".join(str(one[k]) for k in ("50", "200", "500"))))


def bench_fleet(res, extra, notes, work, sizes, heap_kb, mode="one", procs=4, tick_ms=250, slow_ms=1000):
    runs = []
    extra["fleet"] = runs
    extra["fleet_mode"] = {"mode": mode, "procs": procs, "tick_ms": tick_ms, "slow_ms": slow_ms,
                           "order": "largest first, stop at the first that passes" if mode == "one" else
                           "smallest first, stop at the first that fails"}
    best = None
    # one-process mode: a charger's fast tick comes every tick_ms by design; a size fails when the fleet
    # loop does not keep up: its mean round longer than tick_ms, or any charger without a fast tick for
    # longer than 4 periods (1 s at the default 250 ms: the slow work's period, a meter read)
    limits = {"gap_ms": 50 if mode != "one" else 4 * tick_ms, "round_ms": tick_ms if mode == "one" else None,
              "deadline": T0 + BUDGET_S - 30}
    if mode == "one":
        sizes = sorted(sizes, reverse=True)
    for n in sizes:
        left = limits["deadline"] - time.monotonic()
        need = 75 + n * (0.4 if mode != "one" else 0.08)
        if left < need:
            runs.append({"n": n, "ok": None, "reason": "not tried: %d s of the time budget left, ~%d s needed" % (
                left, need)})
            log("fleet %d: not tried (time budget)" % n)
            break
        log("fleet %d: starting" % n)
        r = run_fleet(n, work, heap_kb, limits, mode, procs, tick_ms, slow_ms)
        runs.append(r)
        log("fleet %d: %s%s; converge %s s, overload samples %s, gap max %s ms, round max %s ms, limit_expired %s, "
            "broker %s msg/s, cpu busy %s" % (
                n, "pass" if r["ok"] else "FAIL", "" if r["ok"] else " (" + str(r["reason"]) + ")", r["converge_s"],
                r["overload_events"], r.get("gap_max_ms"), r.get("round_ms_max"), r.get("limit_expired"),
                (r.get("broker_msgs_per_s") or {}).get("total"), r.get("cpu_busy")))
        if mode == "one":
            if r["ok"]:
                best = r
                break
            continue
        if not r["ok"]:
            break
        best = r
    if best is None:
        res["fleet_chargers"] = 0
        res["fleet_converge_s"] = None
        res["fleet_overload_events"] = None
        res["fleet_broker_msgs_per_s"] = None
        notes["fleet_converge_s"] = notes["fleet_overload_events"] = "no fleet size passed"
    else:
        res["fleet_chargers"] = best["n"]
        res["fleet_converge_s"] = best["converge_s"]
        res["fleet_overload_events"] = best["overload_events"]
        res["fleet_broker_msgs_per_s"] = (best.get("broker_msgs_per_s") or {}).get("total")


# ---------------------------------------------------------------------------------------------- main

GOALS = {
    "tick_alloc_bytes": ("bytes", "0"),
    "heap_min_kb": ("KiB", "room on a 112 KB ESP32 with TLS (~20 KB)"),
    "heap_peak_kb": ("KiB", "live data, same"),
    "tick_us_p50": ("us", "well inside the 10 ms tick"),
    "tick_us_p99": ("us", ""),
    "safety_open_ms_max": ("ms", "< 100 ms"),
    "safety_open_blackhole_ms_max": ("ms", "< 100 ms"),
    "loop_gap_ms_max": ("ms", "10 ms period kept"),
    "limit_apply_ms_p50": ("ms", ""),
    "limit_apply_ms_p99": ("ms", ""),
    "mqtt_rtt_ms_p50": ("ms", "baseline"),
    "fleet_chargers": ("", "largest of 1000, 500, 200 that settles (one-process fleet mode)"),
    "fleet_converge_s": ("s", ""),
    "fleet_overload_events": ("", "0"),
    "fleet_broker_msgs_per_s": ("msg/s", "PUBLISH in + out at the broker, largest passing fleet"),
    "cloud_balance_ms_10k": ("ms", "allocator, one round over 10^4 chargers (200 installations x 50)"),
    "heap_min_kb_32_mpy": ("KiB", "<= 112 (32-bit, .mpy files, TLS off)"),
    "heap_min_kb_32_romfs": ("KiB", "<= 80 (32-bit, ROMFS image)"),
    "heap_min_kb_32_frozen": ("KiB", "<= 48 (32-bit, frozen image)"),
    "heap_peak_kb_32_frozen": ("KiB", "live data, same"),
    "module_heap_kb_32_frozen": ("KiB", "device modules imported from the frozen image"),
    "tick_us_p50_32": ("us", "32-bit frozen image"),
    "tick_us_p99_32": ("us", ""),
}


def table(res, notes):
    lines = ["%-30s %12s  %-5s %s" % ("figure", "value", "unit", "goal / note")]
    for k in KEYS:
        v = res.get(k)
        unit, goal = GOALS[k]
        s = "null" if v is None else ("%g" % v if isinstance(v, float) else str(v))
        lines.append("%-30s %12s  %-5s %s%s" % (k, s, unit, goal, ("  [" + notes[k] + "]") if k in notes else ""))
    return "\n".join(lines)


def _on_term(signum, frame):
    raise KeyboardInterrupt  # unwinds through every finally: children and the broker are stopped


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results.json"))
    ap.add_argument("--only", default="tick,tick32,heap,heap32,safety,limit,fleet")
    ap.add_argument("--trials", type=int, default=200, help="safety trials per network condition")
    ap.add_argument("--limits", type=int, default=200, help="limit messages timed")
    ap.add_argument("--fleet", default="200,500,1000", help="fleet sizes (one-process mode: largest first until "
                    "one passes; procs mode: in order until one fails)")
    ap.add_argument("--fleet-mode", default="one", choices=("one", "procs"),
                    help="one: tools/sim-fleet, many chargers per process; procs: a sim-charger process each")
    ap.add_argument("--fleet-procs", type=int, default=4, help="MicroPython processes of the one-process fleet")
    ap.add_argument("--fleet-tick-ms", type=int, default=250, help="fast tick period per charger in the fleet")
    ap.add_argument("--fleet-slow-ms", type=int, default=1000, help="slow work period per charger in the fleet")
    ap.add_argument("--fleet-heap", type=int, default=0, help="KiB per simulated charger (default: 1.5 x heap_min)")
    a = ap.parse_args(argv)
    only = set(a.only.split(","))
    if not os.path.exists(os.path.join(BUNDLE, "main.py")):
        sys.exit("no bundle in build/bundle: run `make bundle`")
    if only & {"tick32", "heap32"} and not (os.path.exists(MP32) and os.path.exists(MP32_FROZEN)):
        sys.exit("no 32-bit ports in build/mp32: run `make firmware-unix32`")
    res = {k: None for k in KEYS}
    if os.path.exists(a.out):  # a partial run (--only) keeps the other figures
        with open(a.out) as f:
            old = json.load(f)
        for k in KEYS:
            if k in old:
                res[k] = old[k]
    extra, notes = {}, {}
    work = tempfile.mkdtemp(prefix="evse-bench-")
    broker = None
    signal.signal(signal.SIGTERM, _on_term)
    try:
        if only & {"heap", "heap32", "safety", "limit"}:
            os.makedirs(os.path.join(work, "mosq"))
            broker = Broker(folder=os.path.join(work, "mosq")).start()
        if "tick" in only:
            bench_tick(res, extra, work)
        if "tick32" in only:
            bench_tick32(res, extra, notes, work)
        if "heap" in only:
            bench_heap(res, extra, notes, work, broker)
        if "heap32" in only:
            bench_heap32(res, extra, notes, work, broker)
        if "limit" in only:
            bench_limit(res, extra, notes, work, broker, a.limits)
        if "safety" in only:
            bench_safety(res, extra, notes, work, broker, a.trials)
        if broker is not None:
            broker.stop()
            broker = None
        if "fleet" in only:
            bench_cloud_balance(res, extra, notes)
            heap = a.fleet_heap or int(1.5 * (res.get("heap_min_kb") or 210))
            # procs mode: the heap of each sim-charger; fleet mode: tools/sim-fleet sizes each process's
            # heap from its share (160 KiB per charger on the 64-bit port)
            extra["fleet_heap_kb"] = heap if a.fleet_mode != "one" else None
            bench_fleet(res, extra, notes, work, [int(x) for x in a.fleet.split(",")], heap, a.fleet_mode,
                        a.fleet_procs, a.fleet_tick_ms, a.fleet_slow_ms)
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({k: res[k] for k in KEYS}, f, indent=2)
        f.write("\n")
    detail = os.path.join(os.path.dirname(os.path.abspath(a.out)), "details.json")
    doc = {"notes": notes, "extra": extra, "elapsed_s": round(time.monotonic() - T0, 1),
           "when": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if os.path.exists(detail) and only != set(ap.get_default("only").split(",")):
        # a partial run (--only) keeps the other parts' details, as it keeps their figures
        with open(detail) as f:
            old = json.load(f)
        for k in ("notes", "extra"):
            doc[k] = {kk: vv for kk, vv in old.get(k, {}).items() if kk not in doc[k]} | doc[k]
        doc["partial_runs"] = old.get("partial_runs", []) + [{"only": sorted(only), "when": doc["when"],
                                                               "elapsed_s": doc["elapsed_s"]}]
        doc["elapsed_s"], doc["when"] = old.get("elapsed_s"), old.get("when")
    with open(detail, "w") as f:
        json.dump(doc, f, indent=1, default=str)
        f.write("\n")
    print()
    print(table(res, notes))
    print("\n%s written (details: %s) in %.0f s" % (a.out, detail, time.monotonic() - T0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
