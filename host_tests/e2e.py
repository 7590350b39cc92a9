"""Black-box peers for the contract end-to-end tests (CPython only; not a test module).

- Charger: one `tools/sim-charger` process (the real firmware on the MicroPython unix port with the
  simulated board and vehicle) in its own process group; sigkill() is a power cut, sigterm() a
  deliberate stop, close() ends whatever is left of the group.
- CloudClient: a paho-mqtt client subscribed to `<p>/<id>/#` and `sim/<id>/ev/state` that records
  every message with its arrival time and decoded JSON, and talks to the charger as a cloud (limit,
  cmd, config) and as the vehicle (sim ops) would.
- check_state(): the types of every contract field of a `state` message.
- strict_text(): every message recorded from a charger is strict UTF-8, and JSON where the contract
  says so (issue 16); a CloudClient checks each one as it arrives and wait()/Rig.close() fail on the
  first that is not.
"""

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIM_CHARGER = os.path.join(ROOT, "tools", "sim-charger")
PREFIX = "evse"

# Settings most tests start from: short intervals so that the waits stay short.
FAST = {"state_interval_s": 1, "session_retry_s": 5}

MODES = ("disconnected", "connected_requesting", "connected_charging", "connected_finished", "fault", "disabled")
CPS = ("A", "B1", "B2", "C1", "C2", "D", "E", "F")
LIMIT_SRCS = ("cloud", "fallback", "max", "cable", "thermal", "overcurrent", "none")
AUTH_STATES = ("idle", "pending", "authorized", "denied")
FAULTS = ("rcd_ac", "rcd_dc", "rcd_selftest", "diode", "cp_short", "cp_invalid", "vent_required",
          "contactor_welded", "contactor_stuck_open", "overcurrent", "overtemp", "meter", "pp_invalid", "reader")
SETTINGS_KEYS = ("enabled", "max_current_a", "min_current_a", "auth_required", "auth_timeout_s", "standalone",
                 "fallback_current_a", "fallback_phases", "phase_rotation", "local_auth_ids", "state_interval_s",
                 "session_retry_s")
SESSION_KEYS = ("id", "ts_start", "ts_end", "wh", "meter_start_wh", "meter_end_wh", "auth_id", "stop_reason")
STOP_REASONS = ("ev_unplugged", "cmd_stop", "deauthorized", "fault", "power_loss", "restart")
# What tools/sim-charger publishes (relative topics as Msg.rel has them); `online` is plain text.
CHARGER_TOPICS = ("online", "state", "event", "session", "reply", "config/reported", "ev/state")


def _surrogate_free(obj):
    if isinstance(obj, str):
        obj.encode("utf-8")  # strict: raises on a surrogate (CPython's json reads "\ud800" as one)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _surrogate_free(k)
            _surrogate_free(v)
    elif isinstance(obj, list):
        for v in obj:
            _surrogate_free(v)


def strict_text(rel, raw):
    """None when a message the charger published on rel is strict UTF-8 (and JSON without surrogates,
    except `online`), else why not: what a strict cloud parser would drop."""
    try:
        s = raw.decode("utf-8")  # errors="strict"
    except UnicodeDecodeError as e:
        return "not strict UTF-8 (%s)" % e
    if rel == "online":
        return None
    try:
        _surrogate_free(json.loads(s))
    except UnicodeEncodeError as e:
        return "JSON holds a surrogate (%s)" % e
    except ValueError as e:
        return "not JSON (%s)" % e
    return None


def wait_until(pred, timeout, what, step=0.05):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= end:
            raise AssertionError("timed out after %g s waiting for %s" % (timeout, what))
        time.sleep(step)


class Charger:
    def __init__(self, serial, broker_port, state_dir, settings=None, bundle=False, ev_broker_port=None,
                 log_dir=None, args=()):
        self.serial = serial
        self.extra = list(args)  # more tools/sim-charger options (--cmd-key, --ha-prefix, ...)
        self.broker_port = broker_port
        self.ev_broker_port = ev_broker_port
        self.state_dir = state_dir
        self.bundle = bundle
        self.settings_path = None
        os.makedirs(state_dir, exist_ok=True)
        if settings is not None:
            self.settings_path = os.path.join(state_dir, "..", serial + "-settings.json")
            with open(self.settings_path, "w") as f:
                json.dump(settings, f)
        self.log_path = os.path.join(log_dir or os.path.dirname(os.path.abspath(state_dir)), serial + ".log")
        self.proc = None
        self._log = None

    env = {"SIM_LINK_LOG": "1"}  # the link's connects and drops go to the log

    def backend_args(self):
        return ["--broker", "127.0.0.1:%d" % self.broker_port]

    def start(self):
        args = [sys.executable, SIM_CHARGER, "--id", self.serial] + self.backend_args() + \
            ["--state-dir", self.state_dir]
        if self.settings_path:
            args += ["--settings", self.settings_path]
        if self.ev_broker_port:
            args += ["--ev-broker", "127.0.0.1:%d" % self.ev_broker_port]
        if self.bundle:
            args.append("--bundle")
        args += self.extra
        self._log = open(self.log_path, "ab")
        env = dict(os.environ, **self.env)
        self.proc = subprocess.Popen(args, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True, env=env)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def sigkill(self):
        """Power cut: the supervisor and the firmware die at once (the whole process group)."""
        self._killpg(signal.SIGKILL)
        self.proc.wait(5)

    def sigterm(self, timeout=10):
        """Deliberate stop: SIGTERM to the supervisor, which asks the firmware to shut down cleanly."""
        os.kill(self.proc.pid, signal.SIGTERM)
        rc = self.proc.wait(timeout)
        self._killpg(signal.SIGKILL)  # nothing may be left
        return rc

    def _killpg(self, sig):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def close(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    self.sigterm(5)
                except subprocess.TimeoutExpired:
                    pass
            self._killpg(signal.SIGKILL)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, n=3000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""


class Msg:
    __slots__ = ("idx", "t", "rel", "raw", "retain", "d")

    def __init__(self, idx, t, rel, raw, retain):
        self.idx = idx
        self.t = t
        self.rel = rel
        self.raw = raw
        self.retain = retain
        try:
            self.d = json.loads(raw)
        except ValueError:
            self.d = None

    def __repr__(self):
        return "<%s %s%s>" % (self.rel, self.raw[:300], " retained" if self.retain else "")


_ids = itertools.count(1)


class CloudClient:
    """The cloud (and the vehicle's driver) for one charger."""

    def __init__(self, port, serial, prefix=PREFIX, topics=None):
        self.serial = serial
        self.base = "%s/%s/" % (prefix, serial)
        self.sim = "sim/%s/" % serial
        self.msgs = []
        self.bad_text = []  # (Msg, why) of every charger message a strict parser would drop
        self.cond = threading.Condition()
        self.connects = 0
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="e2e-cloud-%s-%d" % (serial, next(_ids)))
        self.topics = topics or [self.base + "#", self.sim + "ev/state"]
        self.c.on_message = self._on_message
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = self._on_subscribe
        self.c.reconnect_delay_set(1, 1)  # back soon after a broker restart
        self._ready = threading.Event()
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        if not self._ready.wait(10):
            raise RuntimeError("paho did not connect")

    def _on_connect(self, client, userdata, flags, rc, props=None):
        client.subscribe([(t, 1) for t in self.topics])
        self.connects += 1

    def _on_subscribe(self, client, userdata, mid, reason_codes, props=None):
        self._ready.set()  # SUBACK: nothing the charger publishes from now on is missed

    def _on_message(self, client, userdata, m):
        t = time.monotonic()
        topic = m.topic
        if topic.startswith(self.base):
            rel = topic[len(self.base):]
        elif topic.startswith(self.sim):
            rel = topic[len(self.sim):]
        else:
            rel = topic
        with self.cond:
            msg = Msg(len(self.msgs), t, rel, bytes(m.payload), bool(m.retain))
            self.msgs.append(msg)
            if rel in CHARGER_TOPICS:
                why = strict_text(rel, msg.raw)
                if why:
                    self.bad_text.append((msg, why))
            self.cond.notify_all()

    def check_text(self):
        """Fail on the first recorded charger message that is not strict UTF-8 JSON."""
        with self.cond:
            bad = list(self.bad_text)
        if bad:
            msg, why = bad[0]
            raise AssertionError("%s published %d message(s) a strict parser drops; first: %s %r: %s"
                                 % (self.serial, len(bad), msg.rel, msg.raw[:300], why))

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()

    # ---- reading ---------------------------------------------------------------------------------
    def mark(self):
        with self.cond:
            return len(self.msgs)

    def all(self, rel, since=0, pred=None):
        with self.cond:
            return [m for m in self.msgs[since:] if m.rel == rel and (pred is None or pred(m.d))]

    def wait(self, rel, pred=None, timeout=10.0, since=0, what=None):
        """The first message on rel (from index since) whose decoded payload satisfies pred."""
        end = time.monotonic() + timeout
        i = since
        self.check_text()
        with self.cond:
            while True:
                while i < len(self.msgs):
                    m = self.msgs[i]
                    i += 1
                    if m.rel == rel:
                        try:
                            ok = pred is None or pred(m.d if m.d is not None else m.raw)
                        except (KeyError, TypeError, IndexError):
                            ok = False
                        if ok:
                            return m
                left = end - time.monotonic()
                if left <= 0:
                    last = [x for x in self.msgs if x.rel == rel][-3:]
                    raise AssertionError("%s: no %s message %s within %g s; last: %r"
                                         % (self.serial, rel, what or "matching", timeout, last))
                self.cond.wait(left)

    def state(self, pred=None, timeout=10.0, since=0, what=None):
        return self.wait("state", pred, timeout, since, what).d

    def event(self, etype, pred=None, timeout=10.0, since=0):
        return self.wait("event", lambda d: d["type"] == etype and (pred is None or pred(d)), timeout, since,
                         etype).d

    def ev_state(self, pred=None, timeout=10.0, since=0, what=None):
        return self.wait("ev/state", pred, timeout, since, what).d

    def last(self, rel):
        with self.cond:
            for m in reversed(self.msgs):
                if m.rel == rel:
                    return m
        return None

    def envelope_msgs(self, since=0):
        """(boot, seq, rel) of every state/event/session/reply message in arrival order."""
        with self.cond:
            return [(m.d["boot"], m.d["seq"], m.rel, m.idx) for m in self.msgs[since:]
                    if m.rel in ("state", "event", "session", "reply") and isinstance(m.d, dict)]

    # ---- writing ---------------------------------------------------------------------------------
    def publish(self, rel, payload, retain=False, qos=1):
        if not isinstance(payload, (bytes, str)):
            payload = json.dumps(payload)
        info = self.c.publish(self.base + rel, payload, qos=qos, retain=retain)
        info.wait_for_publish(5)
        return time.monotonic()

    def cmd(self, op, cid=None, timeout=10.0, **fields):
        """Send a command and return its reply (the decoded payload)."""
        cid = cid or "c-%d" % next(_ids)
        doc = {"id": cid, "op": op}
        doc.update(fields)
        since = self.mark()
        self.publish("cmd", doc)
        return self.wait("reply", lambda d: d["id"] == cid, timeout, since, "for cmd %s %s" % (op, cid)).d

    def limit(self, a, ttl_s, seq):
        return self.publish("limit", {"a": a, "ttl_s": ttl_s, "seq": seq})

    def config(self, doc, retain=True):
        return self.publish("config", doc, retain=retain)

    def ev(self, op, **fields):
        doc = {"op": op}
        doc.update(fields)
        info = self.c.publish(self.sim + "ev", json.dumps(doc), qos=1)
        info.wait_for_publish(5)
        return time.monotonic()

    def plug(self, cable_a=32, phases=3, max_a=32):
        return self.ev("plug", cable_a=cable_a, phases=phases, max_a=max_a)


def retained(port, topic, timeout=3.0):
    """The retained message of a topic as a fresh subscriber sees it: (payload bytes, retain flag)
    or None when the broker holds none."""
    got = []
    ev = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="e2e-ret-%d" % next(_ids))

    def on_connect(client, userdata, flags, rc, props=None):
        client.subscribe(topic, 1)

    def on_message(client, userdata, m):
        got.append((bytes(m.payload), bool(m.retain)))
        ev.set()

    c.on_connect = on_connect
    c.on_message = on_message
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    try:
        ev.wait(timeout)
    finally:
        c.loop_stop()
        c.disconnect()
    return got[0] if got else None


def _num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def check_envelope(d):
    assert d["v"] == 1, d
    assert _int(d["boot"]) and d["boot"] >= 1, d
    assert _int(d["seq"]) and d["seq"] >= 1, d
    assert _int(d["up_ms"]) and d["up_ms"] >= 0, d
    assert d["ts"] is None or _int(d["ts"]), d


def check_state(d):
    """Every field of the contract's `state`, with its type and range."""
    check_envelope(d)
    assert d["mode"] in MODES, d
    assert d["cp"] in CPS, d
    assert _num(d["pwm_duty"]) and 0 <= d["pwm_duty"] <= 100, d
    assert _num(d["offered_a"]) and d["offered_a"] >= 0, d
    assert _num(d["limit_a"]) and d["limit_a"] >= 0, d
    assert d["limit_src"] in LIMIT_SRCS, d
    assert d["lease_s"] is None or (_int(d["lease_s"]) and d["lease_s"] >= 0), d
    assert isinstance(d["contactor"], bool), d
    assert d["phases"] in (1, 3), d
    for k in ("i_a", "v_v"):
        assert d[k] is None or (isinstance(d[k], list) and len(d[k]) == 3 and all(_num(x) for x in d[k])), d
    assert d["p_w"] is None or _num(d["p_w"]), d
    assert _int(d["e_wh"]) and d["e_wh"] >= 0, d
    assert d["pp_a"] is None or _int(d["pp_a"]), d
    assert d["temp_c"] is None or _num(d["temp_c"]), d
    s = d["session"]
    if s is not None:
        assert set(s) >= {"id", "wh", "ts", "auth_id"}, d
        assert isinstance(s["id"], str) and _int(s["wh"]) and s["wh"] >= 0, d
        assert s["ts"] is None or _int(s["ts"]), d
        assert s["auth_id"] is None or isinstance(s["auth_id"], str), d
    a = d["auth"]
    assert isinstance(a["required"], bool) and a["state"] in AUTH_STATES, d
    assert a["id"] is None or isinstance(a["id"], str), d
    assert isinstance(d["standalone"], bool) and isinstance(d["enabled"], bool), d
    assert isinstance(d["faults"], list) and all(f in FAULTS for f in d["faults"]), d
    assert isinstance(d["fw"], str) and d["fw"], d
    return d


def check_session(d):
    check_envelope(d)
    for k in SESSION_KEYS:
        assert k in d, (k, d)
    assert isinstance(d["id"], str) and d["id"], d
    for k in ("wh", "meter_start_wh", "meter_end_wh"):
        assert _int(d[k]) and d[k] >= 0, d
    assert d["wh"] == d["meter_end_wh"] - d["meter_start_wh"], d
    assert d["stop_reason"] in STOP_REASONS, d
    assert d["auth_id"] is None or isinstance(d["auth_id"], str), d
    for k in ("ts_start", "ts_end"):
        assert d[k] is None or _int(d[k]), d
    if d["ts_start"] is not None and d["ts_end"] is not None:
        assert d["ts_end"] >= d["ts_start"], d
    return d


def assert_ordered(cloud, since=0):
    """(boot, seq) strictly increasing over every state/event/session/reply received."""
    prev = None
    for boot, seq, rel, idx in cloud.envelope_msgs(since):
        if prev is not None:
            assert (boot, seq) > prev[:2], "(boot, seq) went from %r to %r (%s #%d)" % (prev, (boot, seq), rel, idx)
        prev = (boot, seq, rel)


class Rig:
    """Brokers, chargers, cloud clients and proxies of one test; close() ends them all."""

    def __init__(self, tmp):
        from broker import Broker

        self.tmp = str(tmp)
        self._Broker = Broker
        self.broker = self.new_broker()
        self.chargers = []
        self.clients = []
        self.proxies = []

    def new_broker(self):
        folder = os.path.join(self.tmp, "mosq-%d" % next(_ids))
        os.makedirs(folder, exist_ok=True)
        b = self._Broker(folder=folder)
        b.start()
        if not hasattr(self, "brokers"):
            self.brokers = []
        self.brokers.append(b)
        return b

    def client(self, serial, port=None, topics=None):
        c = CloudClient(port or self.broker.port, serial, topics=topics)
        self.clients.append(c)
        return c

    def charger(self, serial, settings=None, start=True, port=None, ev_port=None, cloud_port=None, bundle=False,
                args=()):
        """A charger and its cloud client (subscribed before the charger starts: nothing is missed).
        port: where the charger's link connects (default the rig's broker; a proxy in front of it);
        ev_port: the vehicle link's broker when it differs; cloud_port: where the cloud listens."""
        port = port or self.broker.port
        cl = self.client(serial, port=cloud_port or self.broker.port)
        ch = Charger(serial, port, os.path.join(self.tmp, serial), settings, bundle=bundle,
                     ev_broker_port=ev_port, log_dir=self.tmp, args=args)
        self.chargers.append(ch)
        if start:
            ch.start()
        return ch, cl

    def close(self):
        for c in self.clients:
            try:
                c.close()
            except Exception:  # noqa: BLE001
                pass
        for ch in self.chargers:  # all at once: each clean stop takes up to a few hundred ms
            if ch.alive():
                try:
                    os.kill(ch.proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for ch in self.chargers:
            ch.close()
            # pytest shows captured output for failed tests only
            print("---- %s log ----\n%s" % (ch.serial, ch.log_tail()))
        for p in self.proxies:
            p.close()
        for b in self.brokers:
            b.close()
        self.check_text()  # after the cleanup above, so that a failure here leaves nothing running

    def check_text(self):
        """Every message recorded so far from the chargers is strict UTF-8 JSON (conftest.py runs this
        when the test body ends, so it fails the test; close() again for what came after)."""
        for c in self.clients:
            c.check_text()


def parallel(*fns):
    """Run independent scenario parts (each with its own charger) at once; re-raise the first failure."""
    errors = []

    def run(fn):
        try:
            fn()
        except BaseException as e:  # noqa: BLE001  reported below, in the test's thread
            errors.append((fn.__name__, e))

    threads = [threading.Thread(target=run, args=(fn,), daemon=True) for fn in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        name, e = errors[0]
        raise AssertionError("%s failed: %s" % (name, e)) from e


def monotonic_e_wh(cloud):
    """e_wh of every state received, in arrival order, never decreases (across boots too)."""
    vals = [m.d["e_wh"] for m in cloud.all("state")]
    for a, b in zip(vals, vals[1:], strict=False):
        assert b >= a, "e_wh went from %d to %d: %r" % (a, b, vals)
    return vals
