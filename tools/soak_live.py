"""The live legs of `make soak` (tools/soak.py): a real tools/sim-charger (the firmware on the
MicroPython unix port with the simulated board) over a real mosquitto (host_tests/broker.py), driven
as the cloud and the vehicle would (host_tests/e2e.py). Each leg returns its counts; a failure
writes its seed and what reproduces it to bench/soak-failures/ (tools/soak.py write_failure).

- fuzz:     mutated limit / cmd / config messages; a shadow model of the contract says what must be
            applied and answered; compared at every `get`.
- powercut: SIGKILLs of the supervisor at random moments of random sessions; every session
            delivered and acknowledged exactly once, e_wh never decreasing across boots.
- flaps:    the broker stopped, started, cut and blackholed (a Proxy in front of it) while leases
            flow; each lease's end on the charger's clock against its limit_expired event.
"""

import json
import math
import os
import random
import shutil
import tempfile
import time

import soak
from broker import Broker, Proxy
from e2e import Charger, CloudClient

HW_A = 32  # the simulated board's rating (board/sim)
SLOW_MS = 50  # firmware/app.py: the slow work that publishes events
FAST_MS = 10

# ================================================================================================
# the contract's shadow: what a message must do (shared/contract.md), written from the contract
# ================================================================================================
SETTINGS = {
    "enabled": ("bool",), "auth_required": ("bool",), "standalone": ("bool",),
    "max_current_a": ("amps", 0), "min_current_a": ("amps", 6), "fallback_current_a": ("amps", 0),
    "auth_timeout_s": ("int", 10, 3600), "state_interval_s": ("int", 1, 3600), "session_retry_s": ("int", 5, 3600),
    "fallback_phases": ("choice", (1, 3)),
    "phase_rotation": ("choice", ("L1L2L3", "L2L3L1", "L3L1L2", "L1L3L2", "L3L2L1", "L2L1L3")),
    "local_auth_ids": ("ids",),
}
HA_TOPICS = ("ha/enabled", "ha/max_current_a", "ha/button")
NO_REJECTS = {"limit": 0, "cmd": 0, "config": 0, "ha/enabled": 0, "ha/max_current_a": 0, "ha/button": 0}
OPS_OK = ("get", "authorize", "deauthorize", "stop", "resume", "set", "session_ack")  # never restart & co here


def _num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _valid_setting(key, v):
    spec = SETTINGS[key]
    kind = spec[0]
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "amps":
        return _num(v) and spec[1] <= v <= HW_A
    if kind == "int":
        return _num(v) and v == int(v) and spec[1] <= v <= spec[2]
    if kind == "choice":
        return not isinstance(v, bool) and any(type(v) is type(c) and v == c for c in spec[1])
    return isinstance(v, list) and len(v) <= 100 and all(isinstance(s, str) and 1 <= len(s) <= 64 for s in v)


def valid_settings(doc):
    return isinstance(doc, dict) and all(k in SETTINGS and _valid_setting(k, doc[k]) for k in doc)


def _clean(obj):
    """The document as a strict parser reads it, or raise ValueError (lone surrogates, non-finite)."""
    if isinstance(obj, str):
        obj.encode("utf-8")
    elif isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError("non-finite")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _clean(k)
            _clean(v)
    elif isinstance(obj, list):
        for v in obj:
            _clean(v)
    return obj


def strict_json(payload):
    """The decoded document, or None when the contract's JSON (strict UTF-8, finite numbers) it is not."""
    def no_constants(c):
        raise ValueError(c)
    try:
        return _clean(json.loads(payload.decode("utf-8"), parse_constant=no_constants))
    except (ValueError, UnicodeError, RecursionError):
        return None


class Shadow:
    """What the charger must have applied: settings, the lease, and the answers it owes."""

    def __init__(self, settings):
        self.settings = dict(settings)
        self.lease_seq = None
        self.lease = None  # (grid values, host expiry time)
        self.rejected = dict(NO_REJECTS)
        self.config_applied = 0
        self.replies = {}  # cmd id -> expected ok

    def _settings(self, doc):
        self.settings.update(doc)
        if self.settings["standalone"]:
            self.lease = None  # standalone ignores (and the firmware drops) the cloud's lease
        self.config_applied += 1

    def limit(self, doc, now):
        ok = isinstance(doc, dict) and "a" in doc
        if ok:
            a = doc["a"]
            vals = a if isinstance(a, list) else [a, a, a]
            ok = (isinstance(a, list) and len(a) == 3 or _num(a)) and all(_num(v) and 0 <= v <= 1000 for v in vals)
            ttl = doc.get("ttl_s")
            ttl = 60 if ttl is None else ttl
            ok = ok and _num(ttl) and 1 <= ttl <= 3600
            seq = doc.get("seq")
            ok = ok and _num(seq) and seq == int(seq) and 0 <= seq <= 2 ** 53
            ok = ok and not self.settings["standalone"] and (self.lease_seq is None or seq > self.lease_seq)
        if ok:
            self.lease_seq = seq
            self.lease = ([round(v * 10) / 10 for v in vals], now + int(ttl * 1000) / 1000.0)
        else:
            self.rejected["limit"] += 1

    def config(self, payload, doc):
        if payload == b"":
            return  # a cleared retained config: nothing
        if valid_settings(doc):
            self._settings(doc)
        else:
            self.rejected["config"] += 1

    def ha(self, topic, payload, doc):
        """Home Assistant's controls (docs/home-assistant.md): applied like `config`, or rejected."""
        try:
            v = payload.decode("utf-8")
        except UnicodeError:
            v = None
        ok = False
        if v is None:
            pass
        elif topic == "ha/enabled":
            ok = v in ("ON", "OFF")
            if ok:
                self.settings["enabled"] = v == "ON"
                self.config_applied += 1
        elif topic == "ha/max_current_a":
            ok = _num(doc) and 0 <= doc <= HW_A
            if ok:
                self.settings["max_current_a"] = doc
                self.config_applied += 1
        else:
            ok = v in ("stop", "resume", "authorize")
        if not ok:
            self.rejected[topic] = self.rejected.get(topic, 0) + 1

    def cmd(self, doc):
        """Returns the id whose reply is owed (None: a rejected event is owed instead)."""
        cid = doc.get("id") if isinstance(doc, dict) else None
        if not (isinstance(cid, str) and 1 <= len(cid) <= 64):
            self.rejected["cmd"] += 1
            return None
        op = doc.get("op")
        ok = isinstance(op, str) and op in OPS_OK
        if ok and op == "authorize":
            v = doc.get("auth_id")
            ok = isinstance(v, str) and 1 <= len(v) <= 64
        elif ok and op == "session_ack":
            v = doc.get("session_id")
            ok = isinstance(v, str) and 1 <= len(v) <= 64
        elif ok and op == "set":
            ok = valid_settings(doc.get("settings"))
            if ok:
                self._settings(doc["settings"])
        self.replies[cid] = ok
        return cid

    def standalone(self):
        return self.settings["standalone"]

    def expected_limit(self, now):
        """(limit_a, src) with no vehicle plugged, or None when too close to a lease's end to say."""
        s = self.settings
        if not s["enabled"]:
            return 0, "none"
        mx = min(s["max_current_a"], HW_A)
        if s["standalone"]:
            return mx, "max"
        if self.lease is not None:
            left = self.lease[1] - now
            if abs(left) < 3:
                return None
            if left > 0:
                v = min(self.lease[0])
                return (v, "cloud") if v <= mx else (mx, "max")
        fb = s["fallback_current_a"]
        return (fb, "fallback") if fb <= mx else (mx, "max")


def same_settings(a, b):
    if set(a) != set(b):
        return False
    for k in a:
        x, y = a[k], b[k]
        if _num(x) and _num(y):
            if abs(x - y) > 0.051:
                return False
        elif x != y:
            return False
    return True


# ---- the mutator -----------------------------------------------------------------------------------
POOL = [None, True, False, 0, 1, -1, 6, 16, 32, 33, 6.5, 16.04, 1e9, -0.0, 2 ** 53, 2 ** 53 + 1, 10 ** 30, "", "x",
        "16", "L2L3L1", "L1L1L1", "x" * 64, "x" * 65, "\u00e9t\u00e9", [], [1], [16, 16], [16, 16, 16],
        [16, 16, 16, 16], ["AA"], [""], {}, {"a": 1}, 3600, 3601, 10, 9, 60, 0.5, 1.5, 1000, 1000.1]
KEYS = list(SETTINGS) + ["id", "op", "a", "ttl_s", "seq", "settings", "auth_id", "session_id", "junk"]
OPS_POOL = list(OPS_OK) + ["fly", "", "GET", "reboot"]


class Mutator:
    def __init__(self, rng):
        self.r = rng
        self.seq = 0
        self.ids = 0

    def value(self, key=None):
        r = self.r
        if key in SETTINGS and r.random() < 0.6:
            spec = SETTINGS[key]
            kind = spec[0]
            if kind == "bool":
                return r.random() < 0.5
            if kind == "amps":
                return r.choice([0, 6, 6, 10, 13, 16, 16.5, 20, 32, 32.5, 40, -1])
            if kind == "int":
                return r.choice([spec[1], spec[2], spec[1] - 1, spec[2] + 1, 30, 60, 12.0, 12.5])
            if kind == "choice":
                return r.choice(list(spec[1]) + ["3", 2, True])
            return r.choice([[], ["AA"], ["AA", "BB"], [""], ["x" * 65], "AA", [1]])
        return r.choice(POOL)

    def limit(self):
        r = self.r
        if r.random() < 0.7:
            self.seq += 1
        a = r.choice([0, 6, 10, 16, 16.04, 32, 40, 1000, -1, 1001, "16", None, True])
        if r.random() < 0.3:
            a = [r.choice([0, 6, 10, 16, 32, -1, "x"]) for _ in range(r.choice([3, 3, 3, 2, 4]))]
        doc = {"a": a, "ttl_s": r.choice([3600, 3600, 600, 60, 1, 0, 3601, None, 1.5, "60", -5]),
               "seq": r.choice([self.seq, self.seq, self.seq, self.seq - 3, self.seq + 0.5, str(self.seq), None, -1])}
        return doc

    def cmd(self):
        r = self.r
        self.ids += 1
        op = r.choice(OPS_POOL)
        doc = {"id": "f-%d" % self.ids, "op": op}
        if op == "authorize" or r.random() < 0.1:
            doc["auth_id"] = r.choice(["app:1", "", "x" * 65, 5, None, "tag:AA"])
        if op == "session_ack" or r.random() < 0.1:
            doc["session_id"] = r.choice(["SIM-1-1", "", 7, "x" * 65])
        if op == "set":
            doc["settings"] = self.settings_doc()
        return doc

    def settings_doc(self):
        r = self.r
        doc = {}
        for _ in range(r.choice([0, 1, 1, 2, 3])):
            k = r.choice(list(SETTINGS) + ["junk"] if r.random() < 0.1 else list(SETTINGS))
            doc[k] = self.value(k)
        return doc

    def mutate(self, doc):
        """Structure-level mutations of a document: drop, add, retype a key; the id is kept unique."""
        r = self.r
        for _ in range(r.choice([0, 0, 1, 1, 2])):
            m = r.random()
            keys = list(doc)
            if m < 0.3 and keys:
                k = r.choice(keys)
                if k != "id" or r.random() < 0.3:
                    del doc[k]
            elif m < 0.6:
                k = r.choice(KEYS)
                if k != "id":
                    doc[k] = self.value(k)
            elif keys:
                k = r.choice(keys)
                if k == "id":
                    doc[k] = r.choice([None, 5, "", "x" * 65, "f-%d-%s" % (self.ids, "y" * 60)])
                else:
                    doc[k] = self.value(k)
        return doc

    def encode(self, doc):
        """JSON bytes, sometimes with byte-level damage."""
        r = self.r
        b = bytearray(json.dumps(doc).encode())
        m = r.random()
        if m < 0.08 and b:
            b[r.randrange(len(b))] = r.randrange(256)
        elif m < 0.12:
            b = b[:r.randrange(len(b) + 1)]
        elif m < 0.14:
            b += b"\xff"
        elif m < 0.16:
            b = bytearray(json.dumps(doc).replace("16", "NaN", 1).encode())
        elif m < 0.17:
            b = bytearray(b"")
        elif m < 0.18:
            b = bytearray(b'{"id":"f-%d","op":"get","pad":"\\ud800"}' % self.ids)
        return bytes(b)

    def ha(self):
        r = self.r
        t = r.choice(HA_TOPICS)
        if t == "ha/enabled":
            p = r.choice(["ON", "OFF", "ON", "on", "", "ON ", "true", "\u00e9"])
        elif t == "ha/max_current_a":
            p = r.choice(["10", "12.5", "16", "0", "32", "33", "-1", "1e1", "NaN", "true", '"16"', "16x", "", "[16]"])
        else:
            p = r.choice(["stop", "resume", "authorize", "STOP", "", "restart"])
        b = p.encode()
        if r.random() < 0.05:
            b += b"\xff"
        return t, b

    def message(self):
        r = self.r
        if r.random() < 0.12:
            return self.ha()
        t = r.choice(["limit", "limit", "cmd", "cmd", "cmd", "config"])
        doc = self.limit() if t == "limit" else self.cmd() if t == "cmd" else self.settings_doc()
        return t, self.encode(self.mutate(doc))


def _retry(fn, *a, **kw):
    """A cloud-side publish right after a broker restart, before paho has reconnected, fails: retry
    it for up to 15 s (the test harness's own connection, not the charger's)."""
    end = time.monotonic() + 15
    while True:
        try:
            return fn(*a, **kw)
        except (RuntimeError, ValueError):
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


def _tmp(name):
    d = tempfile.mkdtemp(prefix="soak-%s-" % name)
    os.makedirs(os.path.join(d, "mosq"))
    return d


def _charger_errors(ch):
    """Crashes the supervisor reported and exceptions the firmware swallowed, from the charger's log."""
    tail = ch.log_tail(1 << 22)
    n = 0
    for line in tail.splitlines():
        if "Traceback" in line or "cloud: error handling" in line or "crashed" in line or "restarting firmware" in line:
            n += 1
    return n, tail[-3000:]


# ================================================================================================
# fuzz
# ================================================================================================
def fuzz_lanes(scale, seed):
    """The fuzz leg on two chargers at once (each its own mosquitto and seed) when it is long enough
    for that to pay: the charger's slow work (8 messages per 50 ms) and the round trips bound one."""
    import threading

    n = max(50, int(soak.FUZZ_MSGS * scale))
    lanes = 2 if n >= 2000 else 1
    res = [None] * lanes
    errs = []

    def lane(k):
        try:
            res[k] = fuzz(scale, seed * 10 + k, n_msgs=n // lanes + (n % lanes if k == 0 else 0),
                          serial="SOAKF%d" % (k + 1))
        except Exception as e:  # noqa: BLE001  re-raised below
            errs.append(e)

    ts = [threading.Thread(target=lane, args=(k,)) for k in range(lanes)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errs:
        raise errs[0]
    out = {}
    for r in res:
        for k, v in r.items():
            out[k] = out.get(k, 0) + v
    out["fuzz_lanes"] = lanes
    return out


def fuzz(scale, seed, n_msgs=None, batch=12, breaker=None, serial="SOAKF1"):
    n_msgs = n_msgs or max(50, int(soak.FUZZ_MSGS * scale))
    rng = random.Random(seed * 7919 + 15)
    mut = Mutator(rng)
    tmp = _tmp("fuzz")
    b = Broker(folder=os.path.join(tmp, "mosq")).start()
    cl = CloudClient(b.port, serial)
    settings = {"standalone": False, "state_interval_s": 60, "session_retry_s": 3600}
    ch = Charger(serial, b.port, os.path.join(tmp, serial), settings, log_dir=tmp,
                 args=["--ha-discovery"]).start()
    out = {"fuzz_msgs": 0, "fuzz_gets": 0, "fuzz_crashes": 0, "fuzz_wrong_applies": 0, "fuzz_missing_replies": 0}
    log = []  # what was sent, for the failure record
    failures = []
    try:
        cl.wait("online", lambda d: d in (b"online", "online"), timeout=60)
        first = cl.cmd("get", cid="g-0", timeout=60)
        shadow = Shadow(first["result"]["settings"])
        mark = cl.mark()
        ng = 0
        sent = 0
        while sent < n_msgs:
            owed = []
            for _ in range(min(batch, n_msgs - sent)):
                topic, payload = mut.message()
                now = time.monotonic()
                doc = strict_json(payload) if payload else None
                if topic == "limit":
                    shadow.limit(doc, now)
                elif topic == "config":
                    shadow.config(payload, doc)
                elif topic in HA_TOPICS:
                    shadow.ha(topic, payload, doc)
                else:
                    cid = shadow.cmd(doc)
                    if cid is not None:
                        owed.append(cid)
                cl.publish(topic, payload)
                log.append([topic, payload.decode("latin-1")])
                sent += 1
            ng += 1
            gid = "g-%d" % ng
            cl.publish("cmd", json.dumps({"id": gid, "op": "get"}))
            shadow.replies[gid] = True
            try:
                rep = cl.wait("reply", lambda d, g=gid: d["id"] == g, timeout=30, since=mark).d
            except AssertionError:
                out["fuzz_crashes"] += 1
                failures.append({"what": "no reply to get %s" % gid, "log": log[-60:]})
                break
            out["fuzz_gets"] += 1
            new = cl.msgs[mark:rep_index(cl, gid, mark) + 1]
            mark += len(new)
            # the effective limit follows a lease or a setting at the next fast tick (docs/architecture.md
            # "What flows where"): a second get, handled in a later slow work, shows it
            ng += 1
            gid2 = "g-%d" % ng
            cl.publish("cmd", json.dumps({"id": gid2, "op": "get"}))
            try:
                rep2 = cl.wait("reply", lambda d, g=gid2: d["id"] == g, timeout=30, since=mark).d
            except AssertionError:
                out["fuzz_crashes"] += 1
                failures.append({"what": "no reply to get %s" % gid2, "log": log[-60:]})
                break
            out["fuzz_gets"] += 1
            mark = rep_index(cl, gid2, mark) + 1
            rep["result"]["state"] = rep2["result"]["state"]
            wrong, missing, why = compare(shadow, rep, new, owed, time.monotonic(), breaker)
            if wrong or missing:
                out["fuzz_wrong_applies"] += wrong
                out["fuzz_missing_replies"] += missing
                if len(failures) < 5:
                    now = time.monotonic()
                    lease = None if shadow.lease is None else [shadow.lease[0], round(shadow.lease[1] - now, 2)]
                    failures.append({"what": why, "log": log[-(batch + 1) * 3:],
                                     "shadow": {"settings": dict(shadow.settings), "lease_left_s": lease,
                                                "lease_seq": shadow.lease_seq},
                                     "charger": {"settings": rep["result"]["settings"],
                                                 "state": rep2["result"]["state"]}})
                # resynchronise so that one difference is counted once
                shadow.settings = dict(rep["result"]["settings"])
                if rep2["result"]["state"].get("lease_s") is None:
                    shadow.lease = None
            if not ch.alive():
                out["fuzz_crashes"] += 1
                failures.append({"what": "sim-charger died", "log": log[-60:]})
                break
        out["fuzz_msgs"] = sent
        errs, tail = _charger_errors(ch)
        if errs:
            out["fuzz_crashes"] += errs
            failures.append({"what": "errors in the charger's log", "tail": tail})
    finally:
        cl.close()
        ch.close()
        b.close()
    for i, f in enumerate(failures):
        f["seed"] = seed
        soak.write_failure("fuzz", "seed%d-%d" % (seed, i), f)
    if not failures:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def rep_index(cl, gid, since):
    for m in cl.msgs[since:]:
        if m.rel == "reply" and isinstance(m.d, dict) and m.d.get("id") == gid:
            return m.idx
    raise AssertionError("reply vanished")


def compare(shadow, rep, new, owed, now, breaker=None):
    """(wrong applies, missing answers, why) for one batch: the messages from the last get's reply to
    this one's."""
    if breaker is not None:
        breaker(shadow)
    wrong = missing = 0
    why = []
    res = rep.get("result") or {}
    if not same_settings(res.get("settings", {}), shadow.settings):
        wrong += 1
        why.append("settings %r, the shadow %r" % (res.get("settings"), shadow.settings))
    exp = shadow.expected_limit(now)
    st = res.get("state", {})
    if exp is not None and (abs(st.get("limit_a", -1) - exp[0]) > 0.051 or st.get("limit_src") != exp[1]):
        wrong += 1
        why.append("limit %r %r, the shadow %r" % (st.get("limit_a"), st.get("limit_src"), exp))
    replies = {}
    rejected = dict(NO_REJECTS)
    applied = 0
    for m in new:
        if not isinstance(m.d, dict):
            continue
        if m.rel == "reply":
            replies.setdefault(m.d.get("id"), []).append(m.d.get("ok"))
        elif m.rel == "event" and m.d.get("type") == "rejected":
            rejected[m.d.get("topic")] = rejected.get(m.d.get("topic"), 0) + 1
        elif m.rel == "event" and m.d.get("type") == "config_applied":
            applied += 1
    for cid in owed:
        got = replies.get(cid, [])
        if len(got) != 1:
            missing += 1
            why.append("cmd %s: %d replies" % (cid, len(got)))
        elif got[0] != shadow.replies[cid]:
            wrong += 1
            why.append("cmd %s: ok %r, the contract %r" % (cid, got[0], shadow.replies[cid]))
    for t in rejected:
        if rejected[t] != shadow.rejected[t]:
            d = shadow.rejected[t] - rejected[t]
            if d > 0:
                missing += d
            else:
                wrong += -d
            why.append("%d rejected events on %s, the shadow %d" % (rejected[t], t, shadow.rejected[t]))
    if applied != shadow.config_applied:
        wrong += 1
        why.append("%d config_applied, the shadow %d" % (applied, shadow.config_applied))
    shadow.rejected = dict(NO_REJECTS)
    shadow.config_applied = 0
    return wrong, missing, "; ".join(why)


# ================================================================================================
# power cuts
# ================================================================================================
def powercut(scale, seed, n_cuts=None, breaker=None):
    n_cuts = n_cuts or max(3, int(soak.POWERCUTS * scale))
    rng = random.Random(seed * 104729 + 3)
    tmp = _tmp("cut")
    b = Broker(folder=os.path.join(tmp, "mosq")).start()
    px = Proxy(b.port)
    cl = CloudClient(b.port, "SOAKP1")
    settings = {"standalone": True, "state_interval_s": 1, "session_retry_s": 5}
    ch = Charger("SOAKP1", px.port, os.path.join(tmp, "SOAKP1"), settings, log_dir=tmp)
    out = {"powercuts": 0, "boot_failures": 0}
    script = []  # what happened, for the failure record
    failures = []
    acked = set()
    try:
        for k in range(n_cuts):
            mark = cl.mark()
            ch.start()
            try:
                cl.wait("online", lambda d: d == b"online" or d == "online", timeout=60, since=mark)
                cl.event("boot", timeout=30, since=mark)
            except AssertionError as e:
                out["boot_failures"] += 1
                failures.append({"what": "boot %d: %s" % (k, e), "tail": ch.log_tail()})
            plugged = False
            t_end = time.monotonic() + rng.uniform(0.3, 9.0)
            while time.monotonic() < t_end:
                op = rng.choice(["plug", "plug", "unplug", "charge", "wait", "wait", "ack", "ack", "outage"])
                script.append([k, op])
                if op == "plug" and not plugged:
                    _retry(cl.plug, rng.choice([16, 32]), 3, rng.choice([6, 16, 32]))
                    plugged = True
                elif op == "unplug" and plugged:
                    _retry(cl.ev, "unplug")
                    plugged = False
                elif op == "charge":
                    _retry(cl.ev, "charge", on=rng.random() < 0.7)
                elif op == "ack":
                    ack_all(cl, acked)
                elif op == "outage":
                    mode = rng.choice(["cut", "blackhole", "broker"])
                    script[-1].append(mode)
                    if mode == "broker":
                        b.stop()
                    else:
                        px.set_mode(mode)
                    time.sleep(rng.uniform(0.2, 3.0))
                    if mode == "broker":
                        b.start()
                    else:
                        px.set_mode("pass")
                        px.cut()  # a blackholed connection is dead for good: the link must notice
                time.sleep(rng.uniform(0.05, 1.5))
            ch.sigkill()
            out["powercuts"] += 1
            if plugged and rng.random() < 0.5:
                _retry(cl.ev, "unplug")  # (the vehicle op is lost with the firmware: it boots unplugged anyway)
        # the end: running, connected, every session acknowledged
        mark = cl.mark()
        ch.start()
        cl.wait("online", lambda d: d == b"online" or d == "online", timeout=60, since=mark)
        quiet = time.monotonic()
        end = time.monotonic() + 90
        while time.monotonic() < end:
            if ack_all(cl, acked):
                quiet = time.monotonic()
            if time.monotonic() - quiet > 12:  # two session_retry_s without anything new to ack
                break
            time.sleep(0.5)
        time.sleep(1)
        res = check_sessions(cl, breaker)
        out.update(res["counts"])
        if res["problems"]:
            failures.append({"what": res["problems"][:20], "script": script})
    finally:
        cl.close()
        ch.close()
        px.close()
        b.close()
    for i, f in enumerate(failures):
        f["seed"] = seed
        soak.write_failure("powercut", "seed%d-%d" % (seed, i), f)
    if not failures:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def ack_all(cl, acked):
    """Ack every session record received whose ack has not been confirmed; True when any was sent."""
    ids = set()
    for m in cl.all("session"):
        if isinstance(m.d, dict):
            ids.add(m.d.get("id"))
    done = set()
    for m in cl.all("reply"):
        r = m.d.get("result") if isinstance(m.d, dict) else None
        if isinstance(r, dict) and r.get("deleted"):
            done.add(r.get("session_id"))
    todo = ids - done
    for sid in todo:
        _retry(cl.publish, "cmd", {"id": "ack-%s-%d" % (sid, len(acked)), "op": "session_ack", "session_id": sid})
        acked.add(sid)
    return bool(todo)


def check_sessions(cl, breaker=None):
    msgs = [m for m in cl.msgs if isinstance(m.d, dict)]
    if breaker is not None:
        msgs = breaker(msgs)
    problems = []
    # QoS 1 is at least once: a message whose PUBACK was lost to a cut is published again after the
    # reconnect, and the broker delivers both. (boot, seq) names one message of the charger, so
    # the same pair with the same content is that redelivery (counted, dropped); with other content
    # it is two messages under one name, e.g. a boot counter that went back.
    seen = {}
    uniq = []
    redelivered = 0
    for m in msgs:
        key = (m.d.get("boot"), m.d.get("seq"))
        if key[0] is None or key[1] is None:
            uniq.append(m)
            continue
        prev = seen.get(key)
        if prev is None:
            seen[key] = (m.rel, m.d)
            uniq.append(m)
        elif prev == (m.rel, m.d):
            redelivered += 1
        else:
            problems.append("two messages at boot %s seq %s: %s %r / %s %r" % (key + (prev[0], prev[1], m.rel, m.d)))
    msgs = uniq
    known = set()
    records = {}
    deleted = {}
    e_last = None
    boots = []
    for m in sorted([m for m in msgs if m.rel in ("state", "event", "session", "reply")],
                    key=lambda m: (m.d.get("boot", 0), m.d.get("seq", 0))):
        d = m.d
        if m.rel == "state":
            s = d.get("session")
            if isinstance(s, dict):
                known.add(s.get("id"))
            e = d.get("e_wh")
            if e_last is not None and e < e_last[0]:
                problems.append("e_wh %d at boot %d seq %d after %d at boot %d seq %d"
                                % (e, d["boot"], d["seq"], e_last[0], e_last[1], e_last[2]))
            e_last = (e, d["boot"], d["seq"])
        elif m.rel == "event":
            if d.get("type") in ("session_started", "session_ended"):
                known.add(d.get("session_id"))
            if d.get("type") == "boot":
                boots.append(d["boot"])
        elif m.rel == "session":
            sid = d.get("id")
            known.add(sid)
            body = tuple(d.get(k) for k in ("ts_start", "wh", "meter_start_wh", "meter_end_wh", "stop_reason",
                                             "auth_id"))
            if sid in records and records[sid] != body:
                problems.append("session %s re-sent with other content %r / %r" % (sid, records[sid], body))
            records.setdefault(sid, body)
            if sid in deleted:
                problems.append("session %s sent at boot %d seq %d after its ack deleted it"
                                % (sid, d["boot"], d["seq"]))
        elif m.rel == "reply":
            r = d.get("result")
            if isinstance(r, dict) and r.get("deleted"):
                sid = r.get("session_id")
                if sid in deleted:
                    problems.append("session %s acknowledged (deleted) twice" % sid)
                deleted[sid] = (d["boot"], d["seq"])
    known.discard(None)
    lost = sorted(known - set(records))
    unacked = sorted(set(records) - set(deleted))
    dup = [p for p in problems if p.startswith("session")]
    energy = [p for p in problems if p.startswith("e_wh")]
    bad_boots = sum(1 for i in range(1, len(boots)) if boots[i] <= boots[i - 1])
    bad_boots += sum(1 for p in problems if p.startswith("two messages"))
    problems += ["session %s never delivered" % s for s in lost]
    problems += ["session %s never acknowledged" % s for s in unacked]
    if bad_boots:
        problems.append("boot counter did not increase %d times" % bad_boots)
    return {"counts": {"sessions_seen": len(known), "sessions_lost": len(lost) + len(unacked),
                       "sessions_duplicated": len(dup), "energy_decreases": len(energy),
                       "boot_counter_errors": bad_boots, "redeliveries": redelivered},
            "problems": problems}


# ================================================================================================
# broker flaps
# ================================================================================================
def flaps(scale, seed, seconds=None):
    seconds = seconds or max(30, int(soak.FLAP_S * scale))
    rng = random.Random(seed * 15485863 + 7)
    tmp = _tmp("flap")
    b = Broker(folder=os.path.join(tmp, "mosq")).start()
    px = Proxy(b.port)
    cl = CloudClient(b.port, "SOAKL1")
    settings = {"standalone": False, "state_interval_s": 5, "fallback_current_a": 6}
    ch = Charger("SOAKL1", px.port, os.path.join(tmp, "SOAKL1"), settings, log_dir=tmp).start()
    out = {"broker_flaps": 0, "leases_checked": 0, "leases_overrun_ms_max": None, "leases_overrun_ms_bound": 0,
           "leases_late": 0, "leases_early": 0,
           "leases_unobserved": 0, "leases_exact": 0, "flaps_errors": 0}
    failures = []
    seq = 0
    n = 0
    try:
        cl.wait("online", lambda d: d in (b"online", "online"), timeout=60)
        cl.cmd("get", timeout=60)
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            n += 1
            seq += 1
            ttl = rng.choice([1, 2, 3, 5])
            a = rng.choice([8, 10, 13, 16])
            mark = cl.mark()
            g1, g2 = "l%d-a" % n, "l%d-b" % n
            # get, limit, get back to back: the charger handles them in one slow work (same up_ms)
            # or not, and then the first get's up_ms is a lower bound of when the lease began
            _retry(cl.publish, "cmd", {"id": g1, "op": "get"})
            _retry(cl.publish, "limit", {"a": a, "ttl_s": ttl, "seq": seq})
            _retry(cl.publish, "cmd", {"id": g2, "op": "get"})
            try:
                r1 = cl.wait("reply", lambda d, g=g1: d["id"] == g, timeout=20, since=mark).d
                r2 = cl.wait("reply", lambda d, g=g2: d["id"] == g, timeout=20, since=mark).d
            except AssertionError:
                time.sleep(1)
                continue  # the link is still recovering from the last flap: try again
            st2 = r2["result"]["state"]
            if st2.get("limit_src") != "cloud" or st2.get("lease_s") is None or r1["boot"] != r2["boot"]:
                continue  # not applied (a stale seq after a reconnect re-delivery, say): no lease to measure
            u1, u2 = r1["result"]["state"]["up_ms"], st2["up_ms"]
            end_lo = u1 + ttl * 1000  # the lease ends at or after this (charger clock)
            end_hi = u2 + ttl * 1000
            # a flap now and then, during the lease or across its end
            if rng.random() < 0.6:
                time.sleep(rng.uniform(0, ttl))
                mode = rng.choice(["broker", "cut", "blackhole", "blackhole"])
                out["broker_flaps"] += 1
                if mode == "broker":
                    b.stop()
                else:
                    px.set_mode(mode)
                time.sleep(rng.uniform(0.1, 4.0))
                if mode == "broker":
                    b.start()
                else:
                    px.set_mode("pass")
                    if mode == "blackhole":
                        px.cut()
            try:
                ev = cl.wait("event", lambda d, u=u1: d["type"] == "limit_expired" and d["up_ms"] >= u, timeout=90,
                             since=mark).d
            except AssertionError:
                out["leases_unobserved"] += 1
                continue
            out["leases_checked"] += 1
            if ev["boot"] != r2["boot"]:
                continue
            # exact when both gets came in the lease's slow work; else only bounds: late is late for sure
            exact = u1 == u2
            out["leases_exact"] += exact
            over_lo = ev["up_ms"] - end_hi  # at least this late
            out["leases_overrun_ms_bound"] = max(out["leases_overrun_ms_bound"], ev["up_ms"] - end_lo)
            if exact:
                out["leases_overrun_ms_max"] = max(out["leases_overrun_ms_max"] or 0, over_lo)
            if over_lo > SLOW_MS + FAST_MS:
                out["leases_late"] += 1
                failures.append({"what": "lease of %d s ended at up_ms %d..%d, limit_expired at %d" %
                                 (ttl, end_lo, end_hi, ev["up_ms"]), "n": n})
            if ev["up_ms"] < end_lo:
                out["leases_early"] += 1
                failures.append({"what": "lease of %d s ended at up_ms %d..%d, limit_expired already at %d" %
                                 (ttl, end_lo, end_hi, ev["up_ms"]), "n": n})
        errs, tail = _charger_errors(ch)
        if errs:
            failures.append({"what": "errors in the charger's log", "tail": tail})
            out["flaps_errors"] += errs
    finally:
        cl.close()
        ch.close()
        px.close()
        b.close()
    for i, f in enumerate(failures[:10]):
        f["seed"] = seed
        soak.write_failure("flaps", "seed%d-%d" % (seed, i), f)
    if not failures:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def ocpp(scale, seed):
    import soak_ocpp  # (it imports this module)

    return soak_ocpp.ocpp_fuzz(scale, seed)


LEGS = {"fuzz": fuzz_lanes, "powercut": powercut, "flaps": flaps, "ocpp": ocpp}
