"""Two reference-cloud instances share one fleet behind one real mosquitto (tools/refcloud/shard.py).

Four real chargers (tools/sim-charger) in three installations: `garage` (two chargers on one 20 A
circuit), `shop` and `depot` (one each). Two `tools/cloud --installations DIR --instance NAME`
processes consume the chargers' topics through one shared subscription group. The instance names
are picked (by the same rendezvous hash the instances use) so that each owns something and the one
that dies owns `garage`. Observed from the broker side only: every `limit` carries the sending
instance's name (`by`), every presence (`refcloud/instances/<name>`) the installations it balances.

1. Split: once settled, every charger's leases come from the owner of its installation only, the
   two presences claim disjoint sets that cover all three installations, and garage's two leases
   share its 20 A (both vehicles draw about 10 A: one instance balances both).
2. Takeover: the garage owner is SIGKILLed; its will clears its presence, the survivor takes garage
   (re-reads the retained states) and its leases reach garage's chargers before the old ones run
   out: no gap between two leases of a charger reaches the ttl, no `limit_expired`, no `rejected`
   (the new owner's seq are greater), the chargers never leave `limit_src` cloud, and garage is still
   shared at 20 A.
3. Sessions after the takeover: every vehicle leaves; each session message is acknowledged exactly
   once, by the instance that owns the charger's installation now.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

CPYTHON_ONLY = "real mosquitto, simulator and cloud processes, paho-mqtt"

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))

from e2e import Rig  # noqa: E402
from refcloud.shard import owner  # noqa: E402

PERIOD_S = 1.5
TTL_S = 12
KEEPALIVE_S = 2          # the will fires 1.5 keepalives after the last packet
GARAGE_A = 20
INSTALLATIONS = {"garage": ("SHD0001", "SHD0002"), "shop": ("SHD0003",), "depot": ("SHD0004",)}
SERIALS = [s for ss in INSTALLATIONS.values() for s in ss]
SITE = {s: i for i, ss in INSTALLATIONS.items() for s in ss}
ROTATIONS = ("L1L2L3", "L2L3L1")


def write_installations(folder):
    os.makedirs(folder)
    for iid, serials in INSTALLATIONS.items():
        doc = {"name": iid, "grid": "TN", "main_breaker_a": 63,
               "defaults": {"fallback_current_a": 6, "fallback_phases": 3, "max_current_a": 32,
                            "state_interval_s": 1, "session_retry_s": 5},
               "circuits": [{"name": "c1", "breaker_a": GARAGE_A if iid == "garage" else 16,
                             "chargers": [{"serial": s, "phase_rotation": ROTATIONS[k % 2]}
                                          for k, s in enumerate(serials)]}]}
        with open(os.path.join(folder, iid + ".json"), "w") as f:
            json.dump(doc, f)


def pick_names():
    """Two instance names where the first owns garage and the second at least one other installation."""
    for k in range(100):
        a, b = "cloud-a%d" % k, "cloud-b%d" % k
        own = {i: owner(i, {a, b}) for i in INSTALLATIONS}
        if own["garage"] == a and b in own.values():
            return a, b, own
    raise AssertionError("no pair of names splits the installations")


class CloudProc:
    def __init__(self, tmp, name, port, inst_dir, keepalive=KEEPALIVE_S):
        self.name = name
        self.log_path = os.path.join(tmp, name + ".log")
        args = [sys.executable, os.path.join(ROOT, "tools", "cloud"), "--broker", "127.0.0.1:%d" % port,
                "--installations", inst_dir, "--instance", name,
                "--sessions", os.path.join(tmp, name + "-sessions.json"),
                "--period", str(PERIOD_S), "--ttl", str(TTL_S), "--hold", "8", "--min-run", "600",
                "--keepalive", str(keepalive), "--heartbeat", "1"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def kill(self, sig):
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()[-4000:]


def wait_for(pred, timeout, what):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError("timed out after %g s waiting for %s" % (timeout, what))
        time.sleep(0.1)


def limits(cl, since_t=None):
    return [m for m in cl.all("limit") if since_t is None or m.t >= since_t]


def presences(obs, name, since_t=0.0):
    return [m for m in obs.all("refcloud/instances/" + name) if m.t >= since_t]


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path)
    r.clouds = []
    yield r
    for c in r.clouds:
        c.kill(signal.SIGTERM)
        print("---- %s log ----\n%s" % (c.name, c.log()))
    r.close()


def test_two_instances_split_the_fleet_and_take_over(rig, tmp_path):
    name_a, name_b, own = pick_names()
    inst_dir = str(tmp_path / "installations")
    write_installations(inst_dir)
    port = rig.broker.port
    obs = rig.client("observer", topics=["refcloud/instances/+"])
    cl = {}
    for s in SERIALS:
        _, cl[s] = rig.charger(s, settings={"standalone": False, "state_interval_s": 1, "session_retry_s": 5})
    rig.clouds += [CloudProc(str(tmp_path), name_a, port, inst_dir), CloudProc(str(tmp_path), name_b, port, inst_dir)]
    victim, survivor = rig.clouds

    # ---- everyone follows leases, every vehicle charges
    for s in SERIALS:
        cl[s].state(lambda d: d["limit_src"] == "cloud" and d["standalone"] is False, timeout=45,
                    what="under a cloud lease")
    for s in SERIALS:
        cl[s].plug(cable_a=32, phases=3, max_a=32)
    for s in SERIALS:
        cl[s].state(lambda d: d["mode"] == "connected_charging", timeout=20, what="charging")
    for s in INSTALLATIONS["garage"]:
        cl[s].ev_state(lambda d: 8.5 <= max(d["draw_a"]) <= 10.5, timeout=25, what="drawing its share of 20 A")

    # ---- 1. split: each installation's leases from its owner only
    t1 = time.monotonic()
    time.sleep(5)
    for s in SERIALS:
        got = limits(cl[s], t1)
        assert len(got) >= 2, "%s: only %d leases in 5 s" % (s, len(got))
        senders = {m.d.get("by") for m in got}
        assert senders == {own[SITE[s]]}, "%s (%s): leases from %s, owner %s" % (s, SITE[s], senders, own[SITE[s]])
    owns = {}
    for n in (name_a, name_b):
        last = presences(obs, n, t1)[-1].d
        owns[n] = set(last["owns"])
    assert not owns[name_a] & owns[name_b], "both instances claim %s" % (owns[name_a] & owns[name_b])
    assert owns[name_a] | owns[name_b] == set(INSTALLATIONS)
    assert all(owns[own[i]] >= {i} for i in INSTALLATIONS), (owns, own)
    g1, g2 = INSTALLATIONS["garage"]
    for m in limits(cl[g1], t1):  # the two leases that hold together never add up to more than the breaker
        other = [x for x in limits(cl[g2]) if x.t <= m.t]
        if other:
            tot = [a + b for a, b in zip(m.d["a"], other[-1].d["a"], strict=True)]
            assert max(tot) <= GARAGE_A + 1e-6, "garage leases add up to %s" % tot

    # ---- 2. the garage owner dies
    t_kill = time.monotonic()
    victim.kill(signal.SIGKILL)
    for s in INSTALLATIONS["garage"]:
        cl[s].wait("limit", lambda d: d.get("by") == name_b, timeout=TTL_S, since=0,
                   what="from the survivor %s" % name_b)
    first_new = {s: next(m.t for m in limits(cl[s], t_kill) if m.d.get("by") == name_b)
                 for s in INSTALLATIONS["garage"]}
    obs.wait("refcloud/instances/" + name_a, lambda d: d == b"", timeout=5, what="the will clearing the presence")
    time.sleep(max(0.0, t_kill + TTL_S + 2 - time.monotonic()))  # an old lease would have run out by now
    for s in SERIALS:
        got = limits(cl[s])
        gaps = [b.t - a.t for a, b in zip(got, got[1:], strict=False)]
        assert max(gaps) < TTL_S - 2, "%s: %.1f s between two leases (ttl %d s)" % (s, max(gaps), TTL_S)
        seqs = [m.d["seq"] for m in got]
        assert seqs == sorted(set(seqs)), "%s: lease seq not increasing: %s" % (s, seqs)
        assert not cl[s].all("event", pred=lambda d: d["type"] in ("limit_expired", "rejected")), \
            "%s: %s" % (s, cl[s].all("event", pred=lambda d: d["type"] in ("limit_expired", "rejected")))
        first_cloud = next(m.idx for m in cl[s].all("state") if m.d["limit_src"] == "cloud")
        srcs = {m.d["limit_src"] for m in cl[s].all("state") if m.idx > first_cloud}
        assert srcs == {"cloud"}, "%s left the cloud lease: %s" % (s, srcs)
        late = {m.d.get("by") for m in limits(cl[s], t_kill + 0.5)}
        assert late == {name_b}, "%s: leases after the kill from %s" % (s, late)
    last = presences(obs, name_b)[-1].d
    assert set(last["owns"]) == set(INSTALLATIONS), last
    for s in INSTALLATIONS["garage"]:
        cl[s].ev_state(lambda d: 8.5 <= max(d["draw_a"]) <= 10.5, timeout=5, since=cl[s].mark(),
                       what="still drawing its share after the takeover")
    la, lb = limits(cl[g1])[-1].d["a"], limits(cl[g2])[-1].d["a"]
    assert max(a + b for a, b in zip(la, lb, strict=True)) <= GARAGE_A + 1e-6, (la, lb)

    # ---- 3. sessions after the takeover: acknowledged exactly once, by the survivor
    for s in SERIALS:
        cl[s].ev("unplug")
    ack_prefix = "cloud-%d-" % survivor.proc.pid
    for s in SERIALS:
        sess = cl[s].wait("session", timeout=15, what="after the unplug").d
        sid = sess["id"]
        cl[s].wait("cmd", lambda d, sid=sid: d.get("op") == "session_ack" and d.get("session_id") == sid,
                   timeout=10, what="session_ack for %s" % sid)
    time.sleep(2)  # a second ack, or a re-sent record, would show now
    for s in SERIALS:
        sent = {}
        for m in cl[s].all("session"):
            sent[m.d["id"]] = sent.get(m.d["id"], 0) + 1
        acks = {}
        for m in cl[s].all("cmd", pred=lambda d: d.get("op") == "session_ack"):
            assert m.d["id"].startswith(ack_prefix), "%s: ack %r not from the survivor" % (s, m.d)
            acks[m.d["session_id"]] = acks.get(m.d["session_id"], 0) + 1
        assert acks == sent, "%s: session messages %s, acks %s" % (s, sent, acks)
    print("takeover: first survivor lease %s s after the SIGKILL" % {
        s: round(t - t_kill, 1) for s, t in first_new.items()})
    print("presence of the survivor: %s" % json.dumps(last))


class FakeFleet:
    """Retained `online` and a `state` a second for chargers that charge at whatever they are leased:
    enough for the balancer, without the cost of the firmware (the contract payloads are the test
    above's business)."""

    def __init__(self, rig, serials):
        self.serials = serials
        self.pub = rig.client("fake-fleet", topics=["evse/+/limit"])
        self.seq = 0
        self.stop = False
        for s in serials:
            self.pub.c.publish("evse/%s/online" % s, b"online", qos=1, retain=True)
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def lease(self, serial):
        got = self.pub.all("evse/%s/limit" % serial)
        return max(got[-1].d["a"]) if got else 6.0

    def run(self):
        while not self.stop:
            self.seq += 1
            for s in self.serials:
                a = self.lease(s)
                doc = {"v": 1, "boot": 1, "seq": self.seq, "up_ms": self.seq * 1000, "ts": None,
                       "mode": "connected_charging", "cp": "C2", "offered_a": a, "limit_a": a, "limit_src": "cloud",
                       "contactor": True, "phases": 3, "i_a": [a, a, a], "standalone": False, "enabled": True,
                       "faults": [], "pp_a": 32}
                self.pub.c.publish("evse/%s/state" % s, json.dumps(doc), qos=1, retain=True)
            time.sleep(1.0)

    def limits(self, serial, since_t=0.0):
        return [m for m in self.pub.all("evse/%s/limit" % serial) if m.t >= since_t]


def test_hung_instance_is_replaced_by_its_silence_and_comes_back_gracefully(rig, tmp_path):
    """SIGSTOP (keepalive 60 s, so no will): the survivor takes the hung instance's installations when
    its heartbeat has been silent for 3 heartbeats; after SIGCONT the hung one notices its own stall,
    leaves them first and takes its share back only as a graceful move, so that a charger's leases
    never come from both instances in turn (no a-b-a-b), and every seq is greater than the last."""
    name_a, name_b, own = pick_names()
    inst_dir = str(tmp_path / "installations")
    write_installations(inst_dir)
    obs = rig.client("observer", topics=["refcloud/instances/+"])
    fleet = FakeFleet(rig, SERIALS)
    a = CloudProc(str(tmp_path), name_a, rig.broker.port, inst_dir, keepalive=60)
    b = CloudProc(str(tmp_path), name_b, rig.broker.port, inst_dir, keepalive=60)
    rig.clouds += [a, b]
    try:
        garage = INSTALLATIONS["garage"]
        for s in SERIALS:
            wait_for(lambda s=s: any(m.d.get("by") == own[SITE[s]] for m in fleet.limits(s)), 20,
                     "%s leased by %s" % (s, own[SITE[s]]))
        time.sleep(2)
        t_stop = time.monotonic()
        os.killpg(a.proc.pid, signal.SIGSTOP)
        for s in garage:
            m = wait_for(lambda s=s: [m for m in fleet.limits(s, t_stop) if m.d.get("by") == name_b], 12,
                         "the survivor leasing %s" % s)[0]
            # 3 heartbeats of silence + settle 1 s + one round, plus scheduling on a busy machine
            assert m.t - t_stop < 3 + 1 + PERIOD_S + 3, "%.1f s" % (m.t - t_stop)
            print("%s: first survivor lease %.1f s after the SIGSTOP" % (s, m.t - t_stop))
        assert not obs.all("refcloud/instances/" + name_a, pred=lambda d: d is None), "the will fired"
        time.sleep(3)
        t_cont = time.monotonic()
        os.killpg(a.proc.pid, signal.SIGCONT)
        for s in garage:
            wait_for(lambda s=s: [m for m in fleet.limits(s, t_cont) if m.d.get("by") == name_a], 15,
                     "%s back with %s" % (s, name_a))
        time.sleep(2 * PERIOD_S)
        for s in SERIALS:
            got = fleet.limits(s)
            runs = [got[0].d["by"]]
            for m in got[1:]:
                if m.d["by"] != runs[-1]:
                    runs.append(m.d["by"])
            want = [name_a, name_b, name_a] if own[SITE[s]] == name_a else [name_b]
            assert runs[-len(want):] == want and len(runs) <= len(want) + 1, "%s: leases from %s" % (s, runs)
            seqs = [m.d["seq"] for m in got]
            assert seqs == sorted(set(seqs)), "%s: seq not increasing" % s
        assert "stalled" in a.log()
    finally:
        fleet.stop = True
        try:
            os.killpg(a.proc.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


def test_three_instances_a_death_is_taken_over_at_once(rig, tmp_path):
    """With three instances the dead one's installations go to the survivors that the hash picks,
    without the wait of a graceful move (that is for a previous owner that is alive), and nothing
    else moves."""
    for k in range(100):
        names = ["cloud-a%d" % k, "cloud-b%d" % k, "cloud-c%d" % k]
        own = {i: owner(i, set(names)) for i in INSTALLATIONS}
        if own["garage"] == names[0] and len(set(own.values())) >= 2:
            break
    inst_dir = str(tmp_path / "installations")
    write_installations(inst_dir)
    fleet = FakeFleet(rig, SERIALS)
    procs = [CloudProc(str(tmp_path), n, rig.broker.port, inst_dir) for n in names]
    rig.clouds += procs
    try:
        for s in SERIALS:
            wait_for(lambda s=s: any(m.d.get("by") == own[SITE[s]] for m in fleet.limits(s)), 20,
                     "%s leased by %s" % (s, own[SITE[s]]))
        time.sleep(2)
        t_kill = time.monotonic()
        procs[0].kill(signal.SIGKILL)
        after = {i: owner(i, set(names[1:])) for i in INSTALLATIONS}
        for s in SERIALS:
            m = wait_for(lambda s=s: [m for m in fleet.limits(s, t_kill) if m.d.get("by") == after[SITE[s]]], 10,
                         "%s leased by %s" % (s, after[SITE[s]]))[0]
            if own[SITE[s]] == names[0]:
                print("%s: first lease from %s %.1f s after the SIGKILL" % (s, after[SITE[s]], m.t - t_kill))
                assert m.t - t_kill < 3.0, "%.1f s (a graceful wait?)" % (m.t - t_kill)
        time.sleep(PERIOD_S + 0.5)
        for s in SERIALS:
            late = {m.d.get("by") for m in fleet.limits(s, t_kill + 0.5)}
            assert late == {after[SITE[s]]}, "%s: leases after the kill from %s" % (s, late)
        for i in INSTALLATIONS:
            if own[i] == names[0]:
                log = next(p for p in procs if p.name == after[i]).log()
                assert "taking %s from %s (gone)" % (i, names[0]) in log, log
    finally:
        fleet.stop = True


def test_rendezvous_moves_only_what_changes_hands():
    """A join moves to the newcomer only, about 1/K of the installations; a death moves only the dead
    instance's installations, spread over the survivors."""
    ids = ["site%05d" % i for i in range(2000)]
    three = {"c1", "c2", "c3"}
    before = {i: owner(i, three) for i in ids}
    after_join = {i: owner(i, three | {"c4"}) for i in ids}
    moved = [i for i in ids if before[i] != after_join[i]]
    assert all(after_join[i] == "c4" for i in moved)
    assert 0.2 < len(moved) / len(ids) < 0.3, len(moved)
    after_death = {i: owner(i, three - {"c2"}) for i in ids}
    moved = [i for i in ids if before[i] != after_death[i]]
    assert set(moved) == {i for i in ids if before[i] == "c2"}
    got = [after_death[i] for i in moved]
    assert 0.4 < got.count("c1") / len(got) < 0.6
    assert owner("x", set()) is None
