"""Several reference-cloud instances splitting one fleet behind one broker or a broker cluster
(docs/cloud.md, "Past one machine").

Every instance reads the same installation files (one per installation; its id is the file name
without the extension) and

- consumes the chargers' topics through MQTT shared subscriptions, `$share/<group>/<p>/+/<kind>`:
  the broker hands each message to one arbitrary member of the group;
- announces itself on `<cp>/instances/<name>` (retained, republished every `heartbeat_s`, with the
  installations it balances and its counters); its last will (and a clean stop) clears that
  retained message. An instance is live while its presence is there and its heartbeat is younger
  than 3 heartbeats, so a dead process is noticed by its will (1.5 keepalives) and a hung one by
  its silence;
- owns an installation when it has the highest rendezvous score sha256(name, installation id)
  among the live instances: every instance computes the same owners from the same live set, and
  when an instance joins or dies only the installations it gains or loses move;
- handles a charger message itself when it owns that charger's installation and otherwise forwards
  it once, as `<topic> NUL <payload>`, to `<cp>/fwd/<owner>` (a forwarded message is never
  forwarded again: when ownership has just moved it is dropped; the charger repeats state every
  `state_interval_s` and a session until it is acknowledged);
- on gaining an installation: a fresh balancer, the chargers' retained `online` and `state` read
  again through plain subscriptions held for `reread_s`, then, after `settle_s` (plus the smaller
  of one round and 3 heartbeats when the previous owner is still alive and has to notice first that
  it lost it), its retained `config` and leases. The leases' seq is wall-clock deciseconds, so the
  new owner's are greater than the old owner's and the chargers take them;
- on losing one (a new instance took it): no more leases for it, at once;
- after its own loop was frozen for more than 3 heartbeats (the others have taken it as dead): it
  leaves every installation before sending anything, then takes its share back as a graceful move.

Nothing toward the chargers changes except the extra `by` field of a limit (the instance's name).
Each session message reaches one instance and is acknowledged by at most one (the one that owns the
installation, or nobody during a handover; the charger then sends it again).

Threading: paho's thread only queues; one loop (`run`) owns the membership, the routing and every
installation's balancer.
"""

import hashlib
import json
import os
import queue
import threading
import time

from .balancer import Balancer, BalancerParams
from .cloud import SEQ_EPOCH, Cloud, SessionStore, new_client, parse_broker

KINDS = ("online", "state", "event", "session", "reply", "config/reported")
REREAD_KINDS = ("online", "state")   # retained: what a new owner reads again
SEP = b"\0"                          # never in a topic (MQTT forbids NUL there)


def score(instance, inst_id):
    return hashlib.sha256(("%s\n%s" % (instance, inst_id)).encode()).digest()


def owner(inst_id, live):
    """The live instance that balances inst_id (rendezvous hashing), None when none is live."""
    return max(live, key=lambda n: score(n, inst_id)) if live else None


def installation_files(folder):
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if f.endswith((".json", ".toml")) and not f.startswith("."))


def inst_id(path):
    return os.path.splitext(os.path.basename(path))[0]


class ShardCloud:
    def __init__(self, broker, inst_paths, name, prefix="evse", cloud_prefix="refcloud", group="refcloud",
                 sessions_path=None, params=BalancerParams(), log=print, keys=None, keepalive=5,
                 heartbeat_s=1.0, settle_s=1.0, reread_s=2.0):
        if not name or any(ch in name for ch in "/+#\0"):
            raise ValueError("an instance name is needed, without / + # or NUL")
        self.name = name
        self.host, self.port = parse_broker(broker)
        self.prefix = prefix
        self.cp = cloud_prefix
        self.group = group
        self.params = params
        self.log = log
        self.keepalive = keepalive
        self.heartbeat_s = heartbeat_s
        self.settle_s = settle_s
        self.reread_s = reread_s
        self.presence_topic = "%s/instances/%s" % (cloud_prefix, name)
        self.fwd_topic = "%s/fwd/%s" % (cloud_prefix, name)
        self.client = new_client("refcloud-%s" % name)
        self.client.will_set(self.presence_topic, b"", qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda c, u, f, rc, p=None: self.inbox.put(("_down", rc, None))
        self.client.on_message = lambda c, u, m: self.inbox.put((m.topic, m.payload, None))
        self.inbox = queue.Queue()
        self.stopping = threading.Event()
        self.sessions = SessionStore(sessions_path)
        self.sites = {}
        for p in inst_paths:
            iid = inst_id(p)
            if iid in self.sites:
                raise ValueError("two installation files with the id %r" % iid)
            self.sites[iid] = Cloud(broker, p, prefix=prefix, params=params, log=log, keys=keys,
                                    client=self.client, sessions=self.sessions, instance=name)
        self.by_serial = {}
        self.indexed = {}
        self._index()
        self.up = False
        self.conn = None             # nonce of the current connection, echoed in our own presence
        self.discovered = False      # our own presence came back: every retained one before it too
        self.peers = {}              # name -> (monotonic seen, heartbeat_s)
        self.live = frozenset()
        self.owners = {}             # iid -> owner name
        self.owned = {}              # iid -> monotonic t when its leases start (None: started)
        self.pending = []            # charger messages that came before discovery
        self.last_state = {}         # serial -> (boot, seq) of the newest state handled
        self.last_online = {}        # serial -> the last online payload handled
        self.rereads = []            # [(t subscribe, t unsubscribe, topics, subscribed?)]
        self.last_hb = None
        self.last_tick = None
        self.dup_warned = -1e9
        self.stalled = False
        self.stats = {"rx": 0, "fwd_out": 0, "fwd_in": 0, "handled": 0, "dropped": 0, "dups": 0,
                      "limits": 0, "takeovers": 0, "busy_s": 0.0}
        self.t_start = time.monotonic()

    # ---- paho thread
    def _on_connect(self, client, userdata, flags, rc, props=None):
        if rc != 0:
            self.log("shard %s: connect refused: %s" % (self.name, rc))
            return
        conn = "%d-%d" % (os.getpid(), time.monotonic_ns())
        subs = [("%s/instances/+" % self.cp, 1), (self.fwd_topic, 1)]
        subs += [("$share/%s/%s/+/%s" % (self.group, self.prefix, k), 1) for k in KINDS]
        client.subscribe(subs)
        self.inbox.put(("_up", conn, None))
        # after the subscribe on the same connection: it comes back after every retained presence
        client.publish(self.presence_topic, self._presence(conn, []), qos=1, retain=True)

    def _presence(self, conn, owns):
        return json.dumps({"name": self.name, "conn": conn, "ts": round(time.time(), 3),
                           "heartbeat_s": self.heartbeat_s, "owns": owns,
                           "stats": dict(self.stats, busy_s=round(self.stats["busy_s"], 3),
                                         up_s=round(time.monotonic() - self.t_start, 1))})

    # ---- loop thread
    def _index(self):
        for iid, site in self.sites.items():
            if self.indexed.get(iid) is not site.inst:
                for s in [s for s, i in self.by_serial.items() if i == iid]:
                    del self.by_serial[s]
                for s in site.inst.chargers:
                    if self.by_serial.setdefault(s, iid) != iid:
                        self.log("shard %s: charger %s is in %s and %s; %s ignores it" % (
                            self.name, s, self.by_serial[s], iid, iid))
                self.indexed[iid] = site.inst

    def _message(self, topic, payload, now):
        if topic == "_up":
            self.up, self.conn, self.discovered = True, payload, False
            return
        if topic == "_down":
            if not self.stopping.is_set():
                self.log("shard %s: broker connection lost (%s), reconnecting" % (self.name, payload))
            self.up, self.discovered = False, False
            self._set_live(frozenset(), now)
            self.peers.clear()
            self.rereads = []
            return
        if topic.startswith(self.cp + "/"):
            rest = topic[len(self.cp) + 1:]
            if rest.startswith("instances/"):
                self._presence_msg(rest[len("instances/"):], payload, now)
            elif topic == self.fwd_topic:
                t, sep, p = bytes(payload).partition(SEP)
                if sep:
                    self.stats["fwd_in"] += 1
                    self._route(t.decode("utf-8", "replace"), p, now, forwarded=True)
            return
        self.stats["rx"] += 1
        if not self.discovered:
            self.pending.append((topic, payload))
            del self.pending[:-100000]
            return
        self._route(topic, payload, now)

    def _presence_msg(self, name, payload, now):
        if not payload:
            if self.peers.pop(name, None) is not None:
                self.log("shard %s: instance %s left" % (self.name, name))
            return
        try:
            doc = json.loads(payload)
            hb = float(doc.get("heartbeat_s") or 1.0)
        except (ValueError, TypeError, AttributeError):
            return
        if name == self.name:
            if doc.get("conn") == self.conn:
                if not self.discovered:
                    self.discovered = True
                    self.log("shard %s: discovered %s" % (self.name, ", ".join(sorted(self.peers))
                                                         or "no other instance"))
            elif self.discovered and now - self.dup_warned > 10:
                # not our connection's: an older retained one of ours arrives before our echo, but
                # after it only a second process with our name publishes here; both would lease
                self.dup_warned = now
                self.log("shard %s: ERROR: another instance runs with this name (connection %s)" % (
                    self.name, doc.get("conn")))
            return
        if name not in self.peers:
            self.log("shard %s: instance %s is live" % (self.name, name))
        self.peers[name] = (now, hb)

    def _live_now(self, now):
        if not (self.up and self.discovered):
            return frozenset()
        for n, (seen, hb) in list(self.peers.items()):
            if now - seen > 3 * max(hb, 0.2):
                self.log("shard %s: instance %s silent for %.1f s: taken as dead" % (self.name, n, now - seen))
                del self.peers[n]
        return frozenset(self.peers) | {self.name}

    def _set_live(self, live, now):
        if live == self.live:
            return
        self.live = live
        others = live - {self.name}
        for iid, site in self.sites.items():
            new = owner(iid, live)
            prev = self.owners.get(iid)
            self.owners[iid] = new
            if new == self.name and iid not in self.owned:
                if prev is None:  # no earlier view (start, reconnect, stall): whoever has it without us
                    prev = owner(iid, others)
                # graceful when the previous owner is alive and has to see us first; not after a death
                graceful = prev is not None and prev in others
                self.log("shard %s: taking %s from %s (%s)" % (
                    self.name, iid, prev or "nobody", "alive: after it has seen us" if graceful else "gone"))
                self._acquire(iid, site, now, graceful=graceful)
            elif new != self.name and iid in self.owned:
                del self.owned[iid]
                site.connected.clear()
                self.log("shard %s: %s now belongs to %s" % (self.name, iid, new or "nobody we know of (offline"
                                                                          " or stalled): leases stop"))
        if live:
            self.log("shard %s: live %s; owns %s" % (self.name, ",".join(sorted(live)),
                                                    ",".join(sorted(self.owned)) or "nothing"))

    def _acquire(self, iid, site, now, graceful):
        with site.lock:
            site.connected.clear()
            site.balancer = Balancer(site.inst, self.params, seq_start=int((time.time() - SEQ_EPOCH) * 10))
        for s in site.inst.chargers:
            self.last_state.pop(s, None)
            self.last_online.pop(s, None)
        # graceful: the previous owner is alive and stops as soon as it sees our presence; one that is
        # frozen stops by itself once it wakes after more than 3 heartbeats (tick), so that bounds it
        self.owned[iid] = now + self.settle_s + (min(self.params.period_s, 3 * self.heartbeat_s) if graceful else 0.0)
        self.stats["takeovers"] += 1
        topics = ["%s/%s/%s" % (self.prefix, s, k) for s in site.inst.chargers for k in REREAD_KINDS]
        self.rereads.append([now, now + self.reread_s, topics, False])

    def _route(self, topic, payload, now, forwarded=False):
        parts = topic.split("/", 2)
        if len(parts) < 3 or parts[0] != self.prefix:
            return
        iid = self.by_serial.get(parts[1])
        if iid is None:
            return
        own = self.owners.get(iid)
        if own == self.name:
            self._deliver(iid, parts[1], parts[2], topic, payload, now)
        elif forwarded or own is None:
            self.stats["dropped"] += 1
        else:
            self.client.publish("%s/fwd/%s" % (self.cp, own), topic.encode() + SEP + bytes(payload), qos=1)
            self.stats["fwd_out"] += 1

    def _deliver(self, iid, serial, kind, topic, payload, now):
        if kind == "state":
            try:
                doc = json.loads(payload)
                key = (int(doc["boot"]), int(doc["seq"]))
            except (ValueError, TypeError, KeyError):
                key = None
            if key is not None:
                if key <= self.last_state.get(serial, (-1, -1)):
                    self.stats["dups"] += 1  # seen through the other path (re-read or forward), or older
                    return
                self.last_state[serial] = key
        elif kind == "online":
            val = bytes(payload).strip()
            last = self.last_online.get(serial)
            if last == val:
                self.stats["dups"] += 1
                return
            if last is not None:
                # a flip may have overtaken an older one on the other path: read the retained truth again
                self.rereads.append([now + 1.0, now + 1.0 + self.reread_s, [topic], False])
            self.last_online[serial] = val
        site = self.sites[iid]
        with site.lock:
            site.handle(topic, payload, now)
        self.stats["handled"] += 1

    def _rereads(self, now):
        keep = []
        for r in self.rereads:
            t_sub, t_unsub, topics, subscribed = r
            if not subscribed and now >= t_sub:
                for i in range(0, len(topics), 200):
                    self.client.subscribe([(t, 1) for t in topics[i:i + 200]])
                r[3] = True
            if r[3] and now >= t_unsub:
                for i in range(0, len(topics), 200):
                    self.client.unsubscribe(topics[i:i + 200])
                continue
            keep.append(r)
        self.rereads = keep

    def tick(self):
        t0 = time.monotonic()
        if self.last_tick is not None and t0 - self.last_tick > 3 * self.heartbeat_s:
            # we were frozen (stopped, swapped out) long enough for the others to take us as dead and
            # take our installations: give them up before sending anything, and take back what the
            # hash gives us only as a graceful move (after one round more, once they have seen us)
            self.log("shard %s: stalled for %.1f s; leaving our installations" % (self.name, t0 - self.last_tick))
            self._set_live(frozenset(), t0)
            self.stalled = True
        self.last_tick = t0
        n = 0
        while n < 20000:
            try:
                topic, payload, _ = self.inbox.get_nowait()
            except queue.Empty:
                break
            self._message(topic, payload, time.monotonic())
            n += 1
        now = time.monotonic()
        if self.stalled:
            # what came in while we were frozen is in the inbox now: the others' heartbeats included
            self.stalled = False
            for n_, (seen, hb) in list(self.peers.items()):
                self.peers[n_] = (max(seen, now - hb), hb)
        self._set_live(self._live_now(now), now)
        if self.discovered and self.pending:
            pending, self.pending = self.pending, []
            for topic, payload in pending:
                self._route(topic, payload, now)
        self._rereads(now)
        for iid, site in self.sites.items():
            start = self.owned.get(iid)
            if start is not None and now >= start and self.up:
                self.owned[iid] = None
                site.connected.set()
                site.push_configs()
                self.log("shard %s: balancing %s (%d chargers)" % (self.name, iid, len(site.inst.chargers)))
            before = site.sent
            site.tick()
            self.stats["limits"] += site.sent - before
        self._index()
        if self.up and self.discovered and (self.last_hb is None or now - self.last_hb >= self.heartbeat_s):
            self.last_hb = now
            owns = sorted(i for i, s in self.owned.items() if s is None)
            self.client.publish(self.presence_topic, self._presence(self.conn, owns), qos=1, retain=True)
        self.stats["busy_s"] += time.monotonic() - t0

    def start(self):
        self.client.reconnect_delay_set(1, 5)
        self.client.connect_async(self.host, self.port, keepalive=self.keepalive)
        self.client.loop_start()
        return self

    def run(self, until=None):
        while not self.stopping.is_set() and not (until and until()):
            self.tick()
            self.stopping.wait(0.05)

    def stop(self):
        """A clean leave: the presence is cleared so that the others take over at once."""
        self.stopping.set()
        try:
            if self.up:
                self.client.publish(self.presence_topic, b"", qos=1, retain=True).wait_for_publish(2)
            self.client.disconnect()
        finally:
            self.client.loop_stop()
