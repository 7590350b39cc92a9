# The simulator process (run by tools/sim-charger on the MicroPython unix port): the real firmware
# on the simulated board in real time, an MQTT link to the broker when one is given, and the
# vehicle-side control channel (`sim/<id>/ev` over its own MQTT connection, or JSON lines on stdin).
import json
import os
import select
import sys

from board.sim.board import SimBoard
from board.sim.clock import RealClock
from board.sim.plant import Plant
from firmware import protocol
from firmware.app import App
from firmware.ticks import ticks_diff, ticks_ms

EV_STATE_MS = 1000
STATUS_MS = 1000


def parse_args(argv):
    opts = {"id": "SIM0001", "prefix": "evse", "reset-cause": "power_on"}
    flags = ("status",)
    i = 0
    while i < len(argv):
        a = argv[i]
        if not a.startswith("--"):
            raise SystemExit("unexpected argument " + a)
        key = a[2:]
        if key in flags:
            opts[key] = True
            i += 1
            continue
        if i + 1 >= len(argv):
            raise SystemExit("missing value for " + a)
        opts[key] = argv[i + 1]
        i += 2
    return opts


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def make_link(opts, client_id, subs, online, key="broker"):
    from firmware.link import Link

    host, _, port = opts[key].rpartition(":")
    cadata = read_file(opts["tls-ca"]) if "tls-ca" in opts else None
    return Link(
        client_id,
        host or "127.0.0.1",
        int(port),
        subscriptions=subs,
        user=opts.get("username"),
        password=opts.get("password"),
        cadata=cadata,
        online_topic=online,
        log=_link_log if os.getenv("SIM_LINK_LOG") else None,
    )


def make_ocpp(opts, sid):
    from firmware.ocpp import Ocpp
    from firmware.ws import WsLink

    url = opts["ocpp"].rstrip("/") + "/" + sid
    cadata = read_file(opts["tls-ca"]) if "tls-ca" in opts else None
    log = _link_log if os.getenv("SIM_LINK_LOG") else None
    link = WsLink(url, "ocpp1.6", user=sid, password=opts.get("ocpp-password"), cadata=cadata, log=log)
    return link, lambda station, lk: Ocpp(station, lk, log=log)


def _link_log(line):
    # connect / disconnect / errors of the link thread, for diagnosing test runs (SIM_LINK_LOG=1)
    print("%d %s" % (ticks_ms(), line))


class TimedPlant(Plant):
    """The plant, noting the plant time (ms, the firmware's own clock) of the last change of the
    vehicle's S2 and of the contactor's output contacts, so that `sim/<id>/ev/state` can carry
    exact reaction times that do not depend on how fast the broker delivers anything."""

    s2_ms = None
    contactor_ms = None

    def _event(self, name):
        s2 = self.ev.s2
        Plant._event(self, name)
        if self.ev.s2 != s2:
            self.s2_ms = self.t_ms

    def _set_contacts(self, closed):
        was = self.contactor_closed
        Plant._set_contacts(self, closed)
        if self.contactor_closed != was:
            self.contactor_ms = self.t_ms


class Vehicle:
    """The vehicle side: applies `sim/<id>/ev` ops to the plant and publishes its view."""

    def __init__(self, app, plant, link, topic_state, topic_led=None):
        self.app = app
        self.plant = plant
        self.link = link
        self.topic_state = topic_state
        self.topic_led = topic_led
        self.last_state = None
        self.last_pub = None
        self.last_led = None
        self.last_led_pub = None
        self.poll = select.poll()
        self.poll.register(sys.stdin, select.POLLIN)

    def op(self, payload):
        try:
            doc = protocol.loads(payload)  # strict UTF-8 JSON, as every input (firmware/text.py)
        except protocol.ProtocolError:
            print("sim: ev op is not JSON")
            return
        if isinstance(doc, dict) and doc.get("op") == "_quit":
            self.app.shutdown()
            return
        err = self.plant.ev_op(doc)
        if err:
            print("sim: ev op refused: " + str(err))

    def __call__(self, now):
        # stdin: the supervisor's control channel (and vehicle commands without a broker)
        while self.poll.poll(0):
            line = sys.stdin.readline()
            if not line:
                self.poll.unregister(sys.stdin)
                break
            line = line.strip()
            if line:
                self.op(line)
        if self.link is not None:
            while True:
                m = self.link.get()
                if m is None:
                    break
                if m[1] is not None:
                    self.op(m[1])
            st = self.plant.ev_state()
            # extra fields: plant time now and of the last S2 / contactor change (ms)
            st["s2_ms"] = getattr(self.plant, "s2_ms", None)
            st["contactor_ms"] = getattr(self.plant, "contactor_ms", None)
            if st != self.last_state or self.last_pub is None or ticks_diff(now, self.last_pub) >= EV_STATE_MS:
                self.last_state = st
                self.last_pub = now
                out = dict(st)
                out["t_ms"] = self.plant.t_ms
                self.link.publish(self.topic_state, json.dumps(out), False, 0)
            led = led_doc(self.app)
            if self.topic_led and led is not None and (
                    led != self.last_led or ticks_diff(now, self.last_led_pub) >= EV_STATE_MS):
                self.last_led = led
                self.last_led_pub = now
                self.link.publish(self.topic_led, json.dumps(led), False, 0)


def led_doc(app):
    """What the status LED shows: the panel's code (firmware/panel.py) and its colour and pattern."""
    panel = app.panel
    if panel is None or panel.name is None:
        return None
    led = panel.led
    if led is None:
        return {"code": panel.name}
    return {"code": panel.name, "rgb": list(led.rgb), "on_ms": led.on_ms, "off_ms": led.off_ms}


class Status:
    """One status line a second on stdout (the `make sim` view reads these)."""

    def __init__(self, app):
        self.app = app
        self.last = None

    def __call__(self, now):
        if self.last is not None and ticks_diff(now, self.last) < STATUS_MS:
            return
        self.last = now
        app = self.app
        ch = app.charger
        m = app.meter
        st = app.station
        doc = {
            "up_ms": st.up_ms(now),
            "mode": ch.mode,
            "cp": ch.cp_name,
            "duty": ch.duty_pm / 10,
            "offered_a": ch.offered_da / 10,
            "limit_a": ch.limit_da / 10,
            "limit_src": ch.limit_src,
            "contactor": st.contactor_closed,
            "i_a": list(m.i_a),
            "e_wh": st.energy_wh_persisted,
            "session": app.sessions.current["id"] if app.sessions.current else None,
            "auth": ch.auth_state,
            "faults": list(ch.faults),
            "ev": app.board.plant.ev_state(),
            "led": led_doc(app),
        }
        print("@status " + json.dumps(doc))


class BenchProbe:
    """Benchmarks only (tools/bench.py), enabled by the environment variable SIM_BENCH: an `@bench` line
    a second with the longest fast-loop gap in that second (app.take_max_gap()) and the
    heap in use. SIM_BENCH=mem also runs gc.collect() at every slow tick and reports the high-water of
    the live heap (`live_max`); that costs loop time, so it is not for gap measurements."""

    def __init__(self, app, mem):
        self.app = app
        self.mem = mem
        self.last = None
        self.live_max = 0
        self.gap_max = 0

    def __call__(self, now):
        import gc

        if self.mem:
            gc.collect()
            a = gc.mem_alloc()
            if a > self.live_max:
                self.live_max = a
        if self.last is not None and ticks_diff(now, self.last) < STATUS_MS:
            return
        self.last = now
        app = self.app
        gap = app.take_max_gap()
        if gap > self.gap_max:
            self.gap_max = gap
        doc = {"up_ms": app.station.up_ms(now), "gap_ms": gap, "gap_max_ms": self.gap_max, "mem_alloc": gc.mem_alloc(),
               "mem_free": gc.mem_free(), "live_max": self.live_max if self.mem else None,
               "mode": app.charger.mode, "contactor": app.station.contactor_closed}
        print("@bench " + json.dumps(doc))


def _unix_time():
    import time

    return int(time.time())


def _getenv(name):
    try:
        import os

        return os.getenv(name)
    except (ImportError, AttributeError):
        return None


SIM_FLASH_BYTES = 2 * 1024 * 1024  # the state dir stands for a 2 MB LittleFS partition


def _trust(app, opts):
    # contract v1.1 provisioning: --cmd-key HEX, --update-pubkey FILE (the release key's public half)
    if "cmd-key" not in opts and "update-pubkey" not in opts:
        return
    from firmware import trust
    from firmware.update import tree_bytes

    root = opts["state-dir"]
    pem = read_file(opts["update-pubkey"]) if "update-pubkey" in opts else None
    ca = read_file(opts["tls-ca"]) if "tls-ca" in opts else None
    trust.attach(app, opts.get("cmd-key"), pem, ca, "sim", lambda: SIM_FLASH_BYTES - tree_bytes(root))


def main():
    opts = parse_args(sys.argv[1:])
    sid = opts["id"]
    clock = RealClock()
    plant = TimedPlant(clock)
    board = SimBoard(clock, plant, serial=sid, reset_cause=opts["reset-cause"], storage_root=opts["state-dir"],
                     unix_time=_unix_time)
    first = None
    if "settings" in opts:
        first = json.loads(read_file(opts["settings"]))
    prefix = opts["prefix"]
    link = ev_link = None
    if "broker" in opts:
        t = protocol.Topics(prefix, sid)
        link = make_link(opts, sid, t.inbound(), t.online)
        ev_link = make_link(opts, sid + "-ev", ["sim/" + sid + "/ev"], None,
                            "ev-broker" if "ev-broker" in opts else "broker")
    backend = None
    if "ocpp" in opts:  # OCPP 1.6J instead of the MQTT contract (shared/contract.md "OCPP 1.6J mode")
        link, backend = make_ocpp(opts, sid)
        evo = dict(opts)
        evo.pop("tls-ca", None)  # the CA is the central system's (wss); the vehicle's broker is plain
        ev_link = make_link(evo, sid + "-ev", ["sim/" + sid + "/ev"], None, "ev-broker")
    app = App(board, link, serial=sid, prefix=prefix, first_settings=first, ha_prefix=opts.get("ha-prefix"),
              backend=backend)
    _trust(app, opts)
    app.hooks.append(Vehicle(app, plant, ev_link, "sim/" + sid + "/ev/state", "sim/" + sid + "/led"))
    if opts.get("status"):
        app.hooks.append(Status(app))
    bench = _getenv("SIM_BENCH")
    if bench:
        app.hooks.append(BenchProbe(app, bench == "mem"))
    if ev_link is not None:
        ev_link.start()
    try:
        app.run()
    finally:
        if ev_link is not None:
            ev_link.shutdown(500)
