"""Fleet runner: a local mosquitto, the reference cloud and N simulated chargers, with scripted vehicles.

    python tools/fleet.py [--installation installations/demo.json] [--speed 1] [--record F] [--png F]

Everything it starts runs in its own process group and is stopped on exit, Ctrl-C or SIGTERM.
Vehicles are driven over `sim/<id>/ev`; what the vehicles really draw (`sim/<id>/ev/state`) is
recorded once a second, mapped to grid phases through each charger's phase rotation.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from . import installation
from .balancer import BalancerParams
from .broker import Broker
from .cloud import Cloud, new_client
from .view import View

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIM_CHARGER = os.path.join(ROOT, "tools", "sim-charger")
SIM_FLEET = os.path.join(ROOT, "tools", "sim-fleet")
TRUTH_STALE_S = 3.0


class Fleet:
    def __init__(self, inst_path, params=BalancerParams(), workdir=None, prefix="evse", log=None, quiet=False):
        self.inst_path = os.path.abspath(inst_path)
        self.inst = installation.load(self.inst_path)
        self.params = params
        self.prefix = prefix
        self.own_dir = workdir is None
        self.dir = workdir or tempfile.mkdtemp(prefix="refcloud-fleet-")
        os.makedirs(self.dir, exist_ok=True)
        self.logs = []
        self.log = log or self.logs.append
        self.quiet = quiet
        self.broker = None
        self.cloud = None
        self.cloud_thread = None
        self.procs = {}
        self.obs = None
        self.truth = {}          # serial -> (monotonic t, [grid-phase amps], ev state)
        self.t0 = time.monotonic()
        self.samples = []
        self.marks = []
        self.lock = threading.Lock()

    # ---- lifecycle
    def start(self, chargers=True):
        self.broker = Broker().start()
        self.obs = new_client("refcloud-fleet-%d" % os.getpid())
        self.obs.on_connect = lambda c, u, f, rc, p=None: c.subscribe("sim/+/ev/state", qos=0)
        self.obs.on_message = self._on_truth
        self.obs.connect("127.0.0.1", self.broker.port, keepalive=10)
        self.obs.loop_start()
        self.cloud = Cloud(self.broker.address, self.inst_path, prefix=self.prefix,
                           sessions_path=os.path.join(self.dir, "sessions.json"), params=self.params,
                           log=self.log, client_id="refcloud-cloud-%d" % os.getpid())
        self.cloud.start()
        self.cloud_thread = threading.Thread(target=self.cloud.run, daemon=True)
        self.cloud_thread.start()
        if chargers:
            for serial in self.inst.chargers:
                self.start_charger(serial)
        self.t0 = time.monotonic()
        return self

    def start_charger(self, serial):
        cfg = self.inst.chargers[serial]
        state = os.path.join(self.dir, serial)
        os.makedirs(state, exist_ok=True)
        settings = os.path.join(self.dir, serial + "-settings.json")
        with open(settings, "w") as f:  # commissioning: the same settings the cloud pushes as config
            json.dump(self.cloud.config_doc(cfg), f)
        out = open(os.path.join(self.dir, serial + ".log"), "ab")
        p = subprocess.Popen([sys.executable, SIM_CHARGER, "--id", serial, "--broker", self.broker.address,
                              "--state-dir", state, "--settings", settings, "--prefix", self.prefix],
                             stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        self.procs[serial] = p
        return p

    def start_fleet(self, procs=4, tick_ms=250, slow_ms=1000, mp=None, env=None):
        """Every charger of the installation in `procs` MicroPython processes (tools/sim-fleet,
        board/sim/fleet.py) instead of one process each; stopped with the rest by stop()."""
        specs = []
        for serial, cfg in self.inst.chargers.items():
            specs.append({"id": serial, "state_dir": os.path.join(self.dir, serial),
                          "settings": self.cloud.config_doc(cfg)})
        spec = os.path.join(self.dir, "fleet-spec.json")
        with open(spec, "w") as f:
            json.dump({"chargers": specs}, f)
        args = [sys.executable, SIM_FLEET, "--broker", self.broker.address, "--spec", spec, "--procs", str(procs),
                "--tick-ms", str(tick_ms), "--slow-ms", str(slow_ms), "--prefix", self.prefix]
        if mp:
            args += ["--mp", mp]
        out = open(os.path.join(self.dir, "sim-fleet.log"), "ab")
        p = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True)
        out.close()
        self.procs["sim-fleet"] = p
        return p

    def kill_charger(self, serial, sig=signal.SIGKILL):
        """SIGKILL = a power cut of that charger (the firmware process dies with its supervisor)."""
        p = self.procs.get(serial)
        if p is not None and p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def stop(self):
        for serial in list(self.procs):
            p = self.procs[serial]
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        end = time.monotonic() + 12
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(p.pid, signal.SIGKILL)  # whatever is left of the group
            except (ProcessLookupError, PermissionError):
                pass
            if p.poll() is None:
                p.wait()
        if self.cloud is not None:
            self.cloud.stop()
        if self.cloud_thread is not None:
            self.cloud_thread.join(timeout=5)
        if self.obs is not None:
            self.obs.disconnect()
            self.obs.loop_stop()
        if self.broker is not None:
            self.broker.stop()
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # ---- vehicles
    def ev(self, serial, **op):
        self.obs.publish("sim/%s/ev" % serial, json.dumps(op), qos=1)

    def vehicle_ready(self, serial, timeout=15.0):
        """Wait until the charger's vehicle side is connected (its ev/state arrives): ops sent
        before that would be lost, `sim/<id>/ev` is not retained."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if serial in self.truth:
                    return True
            time.sleep(0.1)
        return False

    def arrive(self, serial, cable_a=32, phases=3, max_a=32):
        self.vehicle_ready(serial)
        self.ev(serial, op="plug", cable_a=cable_a, phases=phases, max_a=max_a)
        self.ev(serial, op="charge", on=True)

    def mark(self, label):
        self.marks.append({"t": round(self.elapsed(), 2), "label": label})

    # ---- measurement
    def elapsed(self):
        return time.monotonic() - self.t0

    def _on_truth(self, client, userdata, m):
        serial = m.topic.split("/")[1]
        cfg = self.inst.chargers.get(serial)
        if cfg is None:
            return
        try:
            doc = json.loads(m.payload)
            draw = [float(x or 0) for x in (doc.get("draw_a") or [0, 0, 0])][:3]
        except (ValueError, TypeError, AttributeError):
            return
        draw += [0.0] * (3 - len(draw))
        rot = installation.rotation_map(cfg.phase_rotation)
        grid = [0.0, 0.0, 0.0]
        for k in range(3):
            grid[rot[k]] += draw[k]
        with self.lock:
            self.truth[serial] = (time.monotonic(), grid, doc)

    def draw(self):
        """{serial: [grid-phase amps]} the vehicles draw now (a silent charger draws nothing)."""
        now = time.monotonic()
        with self.lock:
            return {s: (v[1] if now - v[0] <= TRUTH_STALE_S else [0.0, 0.0, 0.0]) for s, v in self.truth.items()}

    def sample(self):
        inst = self.cloud.inst
        draw = self.draw()
        circ = {}
        for c in inst.circuits:
            circ[c.name] = [round(sum(draw.get(s, [0, 0, 0])[g] for s in c.serials), 2) for g in range(3)]
        snap = self.cloud.snapshot()
        s = {"t": round(self.elapsed(), 2), "draw": draw, "circuits": circ,
             "breakers": {c.name: c.breaker_a for c in inst.circuits},
             "grant": {k: v["grant_a"] for k, v in snap["chargers"].items()},
             "mode": {k: v["mode"] for k, v in snap["chargers"].items()},
             "online": {k: v["online"] for k, v in snap["chargers"].items()}}
        self.samples.append(s)
        return s, snap

    def recording(self):
        return {"installation": self.inst.name, "circuits": {c.name: list(c.serials) for c in self.inst.circuits},
                "samples": self.samples, "marks": self.marks}


# ---------------------------------------------------------------- the `make sim` demo

def demo_script(serials):
    a, b, c = serials[:3]
    return [
        (3, "%s: vehicle arrives (3-phase, 32 A)" % a, lambda f: f.arrive(a)),
        (25, "%s: vehicle arrives (3-phase, 32 A)" % b, lambda f: f.arrive(b)),
        (50, "%s: vehicle arrives (1-phase, 16 A)" % c, lambda f: f.arrive(c, phases=1, max_a=16)),
        (110, "%s: vehicle full (S2 open)" % a, lambda f: f.ev(a, op="charge", on=False)),
        (125, "%s: unplugged" % a, lambda f: f.ev(a, op="unplug")),
        (140, "%s: power cut" % b, lambda f: f.kill_charger(b)),
        (185, "%s: power back" % b, lambda f: f.start_charger(b)),
        (200, "%s: vehicle arrives (3-phase, 32 A)" % a, lambda f: f.arrive(a)),
        (205, "%s: vehicle plugged in again (3-phase, 32 A)" % b, lambda f: f.arrive(b)),
        (230, "installer lowers the circuit breaker to 16 A", lambda f: f.cloud.set_breaker(
            f.inst.circuits[0].name, 16)),
        (360, "end", None),
    ]


def run_demo(args):
    params = BalancerParams(period_s=2.0, ttl_s=20, hold_s=12.0, min_run_s=args.min_run)
    fleet = Fleet(args.installation, params=params)
    view = View()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    script = demo_script(list(fleet.inst.chargers))
    try:
        fleet.start()
        last = 0.0
        while not stop.is_set():
            t = fleet.elapsed()
            while script and script[0][0] / args.speed <= t:
                _, label, action = script.pop(0)
                fleet.mark(label)
                fleet.log(">>> %6.1fs  %s" % (t, label))
                if action is None:
                    stop.set()
                    break
                action(fleet)
            if t - last >= 1.0:
                last = t
                _, snap = fleet.sample()
                title = "evse-mpy fleet demo: %s  t=%5.1fs (script x%g)  broker %s  [Ctrl-C stops]" % (
                    fleet.inst.name, t, args.speed, fleet.broker.address)
                logs = [x for x in fleet.logs if x.startswith(">>>")][-4:] + \
                       [x for x in fleet.logs if not x.startswith(">>>")][-6:]
                view.show(snap, logs, title)
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        print("\nstopping the fleet...", flush=True)
        fleet.stop()
    rec = fleet.recording()
    if args.record:
        os.makedirs(os.path.dirname(os.path.abspath(args.record)), exist_ok=True)
        with open(args.record, "w") as f:
            json.dump(rec, f)
        print("recording: %s" % args.record)
    if args.png and len(rec["samples"]) > 1:
        from .plot import plot
        print("plot: %s" % plot(rec, args.png))
    over = check_overload(rec, grace_s=params.period_s + params.hold_s)
    print("overload samples beyond the follow time: %d" % len(over))
    return 0


def check_overload(rec, grace_s):
    """Samples where a circuit's measured sum exceeded its breaker longer than grace_s after the breaker
    last changed (a lowered breaker needs one round plus the follow time)."""
    over = []
    changed = {}
    prev = {}
    for s in rec["samples"]:
        for c, b in s["breakers"].items():
            if prev.get(c) is not None and b != prev[c]:
                changed[c] = s["t"]
            prev[c] = b
            if max(s["circuits"][c]) > b + 0.05 and s["t"] - changed.get(c, -1e9) > grace_s:
                over.append((s["t"], c, s["circuits"][c], b))
    return over


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--installation", default=os.path.join(ROOT, "installations", "demo.json"))
    ap.add_argument("--speed", type=float, default=1.0, help="script speed factor (the firmware runs in real time)")
    ap.add_argument("--min-run", type=float, default=60.0, help="s a started charger keeps its slot")
    ap.add_argument("--record", default=os.path.join(ROOT, "build", "sim-record.json"))
    ap.add_argument("--png", default=os.path.join(ROOT, "build", "sim-plot.png"))
    args = ap.parse_args(argv)
    if args.speed <= 0:
        ap.error("--speed must be > 0")
    return run_demo(args)
