"""The reference cloud: follows every charger of one installation over the MQTT contract and leases
current to them (docs/cloud.md).

- subscribes `<p>/+/{online,state,event,session,reply,config/reported}` (retained `online`/`state`
  arrive at once on subscribe);
- at start (and on every reconnect) publishes each charger's retained `config`: `standalone` false,
  `fallback_current_a`/`fallback_phases`/`phase_rotation` and any settings from the installation file;
- every `period_s` runs the balancer and publishes a `limit` to every charger that follows leases
  (per-phase `a` in grid phases, `ttl_s`, increasing `seq`);
- stores every finished session once (by id) in a JSON file and acknowledges it with `session_ack`;
- reloads the installation file when it changes (a new breaker value takes effect next round).

Threading: paho's network thread only queues messages; one loop (`run`) owns the balancer.
"""

import itertools
import json
import os
import queue
import threading
import time

import paho.mqtt.client as mqtt

from . import installation
from .balancer import Balancer, BalancerParams
from .signing import Signer

SEQ_EPOCH = 1700000000  # limit seq = deciseconds since then: increasing across cloud restarts


def parse_broker(s):
    host, _, port = s.rpartition(":")
    if not host:
        return s, 1883
    return host, int(port)


def new_client(client_id):
    return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)


class SessionStore:
    """Finished sessions by id in one JSON file, written atomically."""

    def __init__(self, path):
        self.path = path
        self.records = {}
        if path and os.path.exists(path):
            with open(path) as f:
                self.records = json.load(f)

    def add(self, serial, record, now_wall):
        sid = record.get("id")
        if not isinstance(sid, str) or not sid:
            return False
        if sid in self.records:
            return False
        rec = dict(record)
        rec["serial"] = serial
        rec["received_ts"] = round(now_wall, 3)
        self.records[sid] = rec
        if self.path:
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(self.records, f, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        return True


class Cloud:
    def __init__(self, broker, inst_path, prefix="evse", sessions_path=None, params=BalancerParams(),
                 log=print, client_id=None, keys=None, client=None, sessions=None, instance=None):
        """client, sessions, instance: for one installation of a sharded instance (shard.py), which
        owns the MQTT client and the session store, routes messages to handle() and sets `connected`
        only while it owns the installation; instance is its name, sent as an extra field `by` in
        every limit (the charger ignores unknown fields) so that who balances whom is observable."""
        self.host, self.port = parse_broker(broker)
        self.signer = Signer(keys or {})
        self.inst_path = inst_path
        self.inst_mtime = os.stat(inst_path).st_mtime
        self.inst = installation.load(inst_path)
        self.prefix = prefix
        self.log = log
        self.params = params
        self.balancer = Balancer(self.inst, params, seq_start=int((time.time() - SEQ_EPOCH) * 10))
        self.sessions = sessions if sessions is not None else SessionStore(sessions_path)
        self.instance = instance
        self.events = []            # (t, serial, event) recent events, for the view
        self.inbox = queue.Queue()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.connected = threading.Event()
        self.cmd_ids = itertools.count(1)
        self.sent = 0
        self.client = client
        if client is None:
            self.client = new_client(client_id or "refcloud-%d" % os.getpid())
            self.client.on_connect = self._on_connect
            self.client.on_disconnect = self._on_disconnect
            self.client.on_message = lambda c, u, m: self.inbox.put((m.topic, m.payload, m.retain))
        for w in self.inst.warnings():
            self.log("warning: " + w)

    # ---- MQTT callbacks (paho thread)
    def _on_connect(self, client, userdata, flags, rc, props=None):
        if rc != 0:
            self.log("cloud: connect refused: %s" % rc)
            return
        for sub in ("online", "state", "event", "session", "reply", "config/reported"):
            client.subscribe("%s/+/%s" % (self.prefix, sub), qos=1)
        self.push_configs()
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, rc, props=None):
        self.connected.clear()
        if not self.stopping.is_set():
            self.log("cloud: broker connection lost (%s), reconnecting" % rc)

    # ---- outbound
    def config_doc(self, cfg):
        doc = {"standalone": False, "fallback_current_a": cfg.fallback_current_a,
               "fallback_phases": cfg.fallback_phases, "phase_rotation": cfg.phase_rotation}
        doc.update(cfg.settings)
        for k, v in list(doc.items()):
            if isinstance(v, float) and v == int(v):
                doc[k] = int(v)
        return doc

    def push_configs(self):
        for serial, cfg in self.inst.chargers.items():
            self.client.publish("%s/%s/config" % (self.prefix, serial),
                                self.signer.wrap(serial, "config", json.dumps(self.config_doc(cfg))),
                                qos=1, retain=True)

    def command(self, serial, op, **fields):
        doc = {"id": "cloud-%d-%d" % (os.getpid(), next(self.cmd_ids)), "op": op}
        doc.update(fields)
        self.client.publish("%s/%s/cmd" % (self.prefix, serial), self.signer.wrap(serial, "cmd", json.dumps(doc)),
                            qos=1)
        return doc["id"]

    # ---- inbound (loop thread)
    def handle(self, topic, payload, now):
        parts = topic.split("/")
        if len(parts) < 3 or parts[0] != self.prefix:
            return
        serial, kind = parts[1], "/".join(parts[2:])
        if serial not in self.inst.chargers:
            return
        if kind == "online":
            online = payload.strip() == b"online"
            self.balancer.on_online(serial, now, online)
            self.note(now, serial, {"type": "online" if online else "offline"})
            return
        try:
            doc = json.loads(payload)
        except ValueError:
            self.log("cloud: %s: not JSON: %r" % (topic, payload[:80]))
            return
        if not isinstance(doc, dict):
            return
        if kind == "state":
            self.balancer.on_state(serial, now, doc)
        elif kind == "event":
            self.note(now, serial, doc)
        elif kind == "session":
            new = self.sessions.add(serial, doc, time.time())
            self.note(now, serial, {"type": "session", "id": doc.get("id"), "wh": doc.get("wh"), "new": new})
            if isinstance(doc.get("id"), str):
                self.command(serial, "session_ack", session_id=doc["id"])
        elif kind == "reply":
            if not doc.get("ok", False):
                self.note(now, serial, {"type": "reply_error", "id": doc.get("id"), "error": doc.get("error"),
                                        "detail": doc.get("detail")})
        elif kind == "config/reported":
            want = self.config_doc(self.inst.chargers[serial])
            diff = sorted(k for k in want if doc.get(k) != want[k])
            if diff:
                self.note(now, serial, {"type": "config_pending", "keys": diff})

    def note(self, now, serial, ev):
        self.events.append((now, serial, ev))
        del self.events[:-50]
        t = ev.get("type")
        if t not in ("session_started",):
            self.log("cloud: %s %s" % (serial, json.dumps({k: v for k, v in ev.items()
                                                            if k not in ("v", "boot", "seq", "up_ms", "ts")})))

    def reload_if_changed(self):
        try:
            m = os.stat(self.inst_path).st_mtime
        except OSError:
            return
        if m == self.inst_mtime:
            return
        self.inst_mtime = m
        try:
            inst = installation.load(self.inst_path)
        except (installation.InstallationError, OSError, ValueError) as e:
            self.log("cloud: installation file not reloaded: %s" % e)
            return
        with self.lock:
            self.inst = inst
            self.balancer.set_installation(inst)
        self.log("cloud: installation reloaded (%s)" % ", ".join(
            "%s %g A" % (c.name, c.breaker_a) for c in inst.circuits))
        if self.connected.is_set():  # otherwise at the next connect (or when a shard takes it over)
            self.push_configs()

    def set_breaker(self, circuit, breaker_a):
        """Change a breaker value at run time (circuit None: the main breaker), as the portal would."""
        with self.lock:
            self.inst = self.inst.with_breaker(circuit, breaker_a)
            self.balancer.set_installation(self.inst)

    def snapshot(self):
        with self.lock:
            snap = self.balancer.snapshot(time.monotonic())
        snap["events"] = list(self.events[-8:])
        return snap

    def tick(self):
        now = time.monotonic()
        while True:
            try:
                topic, payload, _ = self.inbox.get_nowait()
            except queue.Empty:
                break
            with self.lock:
                self.handle(topic, payload, now)
        self.reload_if_changed()
        if self.connected.is_set() and self.balancer.due(now):
            with self.lock:
                # seq: deciseconds of the wall clock (and at least the previous + 1), so that it keeps
                # increasing across restarts and from one instance to the one that takes over
                msgs = self.balancer.step(now, seq_floor=int((time.time() - SEQ_EPOCH) * 10))
            for serial, payload in msgs:
                if self.instance:
                    payload["by"] = self.instance
                self.client.publish("%s/%s/limit" % (self.prefix, serial),
                                    self.signer.wrap(serial, "limit", json.dumps(payload)), qos=1)
                self.sent += 1

    def start(self):
        self.client.reconnect_delay_set(1, 5)
        self.client.connect_async(self.host, self.port, keepalive=10)
        self.client.loop_start()
        return self

    def run(self, until=None):
        """The loop: until `until()` is true or stop() is called."""
        while not self.stopping.is_set() and not (until and until()):
            self.tick()
            self.stopping.wait(0.1)

    def stop(self):
        self.stopping.set()
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()


def send_command(broker, serial, op, fields, prefix="evse", timeout=15.0, keys=None, clear_config=False):
    """One command over the contract; returns the reply document (or None on timeout). clear_config:
    delete the retained `config` first (offboarding: it must not come back after a factory reset)."""
    host, port = parse_broker(broker)
    cid = "cli-%d-%d" % (os.getpid(), int(time.time() * 1000) % 100000)
    got = {}
    done = threading.Event()
    ready = threading.Event()
    c = new_client(cid)

    def on_connect(client, userdata, flags, rc, props=None):
        client.subscribe("%s/%s/reply" % (prefix, serial), qos=1)

    def on_subscribe(client, userdata, mid, rcs, props=None):
        ready.set()

    def on_message(client, userdata, m):
        try:
            doc = json.loads(m.payload)
        except ValueError:
            return
        if isinstance(doc, dict) and doc.get("id") == cid:
            got["reply"] = doc
            done.set()

    c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
    c.connect(host, port, keepalive=10)
    c.loop_start()
    try:
        if not ready.wait(5):
            raise RuntimeError("no connection to the broker at %s" % broker)
        if clear_config:
            c.publish("%s/%s/config" % (prefix, serial), b"", qos=1, retain=True).wait_for_publish(5)
        doc = {"id": cid, "op": op}
        doc.update(fields)
        c.publish("%s/%s/cmd" % (prefix, serial), Signer(keys or {}).wrap(serial, "cmd", json.dumps(doc)), qos=1)
        done.wait(timeout)
        return got.get("reply")
    finally:
        c.disconnect()
        c.loop_stop()
