"""The reference cloud's allocator (tools/refcloud/allocator.py), a pure function, and the balancer
that feeds it (tools/refcloud/balancer.py), driven in virtual time against a small plant model.

Properties (hypothesis): for random installations, chargers, demands and online/offline patterns
- per grid phase, for the main breaker and every circuit, sum(max(committed, grant)) never exceeds the
  breaker when the committed currents alone fit (and never adds to an overload when they do not);
- the steady-state targets plus the offline chargers' committed currents (their fallback) fit;
- nobody gets 0.1..5.9 A: a grant is 0 or >= the charger's minimum (6 A), and never above its cap;
- when capacity allows the minimum for every wanting charger, every wanting charger gets current.
"""

import os
import sys

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CPYTHON_ONLY = "hypothesis, dataclasses: host-side reference cloud"

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))

from refcloud import allocator, installation  # noqa: E402
from refcloud.allocator import ChargerInput, allocate  # noqa: E402
from refcloud.balancer import Balancer, BalancerParams  # noqa: E402
from refcloud.installation import ROTATIONS, loaded_phases  # noqa: E402

EPS = 1e-6


def inst_doc(grid="TN", main=63, circuits=((32, 3),), fallback=6.0, rotations=None):
    cs = []
    n = 0
    for ci, (breaker, count) in enumerate(circuits):
        chs = []
        for _ in range(count):
            n += 1
            rot = rotations[(n - 1) % len(rotations)] if rotations else "L1L2L3"
            chs.append({"serial": "C%03d" % n, "phase_rotation": rot, "fallback_current_a": fallback})
        cs.append({"name": "c%d" % ci, "breaker_a": breaker, "chargers": chs})
    return installation.parse({"name": "t", "grid": grid, "main_breaker_a": main, "circuits": cs})


# ---------------------------------------------------------------- plain unit tests

def test_rotation_and_loaded_phases():
    assert installation.rotation_map("L1L2L3") == (0, 1, 2)
    assert installation.rotation_map("L2L3L1") == (1, 2, 0)
    assert loaded_phases("TN", "L3L1L2", 1) == (2,)
    assert loaded_phases("TN", "L3L1L2", 3) == (0, 1, 2)
    assert loaded_phases("IT", "L3L1L2", 1) == (0, 2)


def test_installation_rejects_bad_documents():
    bad = [
        {"grid": "XX", "main_breaker_a": 63, "circuits": [{"breaker_a": 32}]},
        {"grid": "TN", "circuits": [{"breaker_a": 32}]},
        {"grid": "TN", "main_breaker_a": 63, "circuits": []},
        {"grid": "TN", "main_breaker_a": 63,
         "circuits": [{"breaker_a": 32, "chargers": [{"serial": "A", "phase_rotation": "L1L1L2"}]}]},
        {"grid": "TN", "main_breaker_a": 63, "circuits": [{"breaker_a": 32, "chargers": ["A", "A"]}]},
    ]
    for doc in bad:
        try:
            installation.parse(doc)
        except installation.InstallationError:
            continue
        raise AssertionError("accepted %r" % (doc,))


def test_example_installations_load():
    folder = os.path.join(ROOT, "installations")
    names = [n for n in os.listdir(folder) if n.endswith((".json", ".toml"))]
    assert names
    for n in names:
        inst = installation.load(os.path.join(folder, n))
        assert inst.chargers


def test_three_on_32a_share_evenly():
    inst = inst_doc(circuits=((32, 3),))
    ins = [ChargerInput(s, wants=True) for s in inst.chargers]
    g = allocate(inst, ins)
    assert [g[s].target_a for s in sorted(g)] == [10.6, 10.6, 10.6]
    assert [g[s].value_a for s in sorted(g)] == [6.0, 6.0, 6.0]  # raise step: the minimum first
    ins = [ChargerInput(s, wants=True, committed_a=(6, 6, 6), granted_a=6) for s in inst.chargers]
    g = allocate(inst, ins)
    assert [g[s].value_a for s in sorted(g)] == [10.6, 10.6, 10.6]
    assert g["C001"].a == [10.6, 10.6, 10.6]


def test_16a_for_three_pauses_the_lowest_priority_one():
    inst = inst_doc(circuits=((16, 3),))
    ins = [ChargerInput("C001", wants=True, priority=5, granted_a=8), ChargerInput("C002", wants=True, priority=1),
           ChargerInput("C003", wants=True, priority=3, granted_a=8)]
    g = allocate(inst, ins)
    assert g["C002"].value_a == 0 and g["C002"].a == [0.0, 0.0, 0.0]
    assert g["C001"].value_a == 8.0 and g["C003"].value_a == 8.0


def test_lower_at_once_raise_only_into_headroom():
    inst = inst_doc(circuits=((32, 2),))
    # C001 still may draw 32 A (a lease we just lowered); C002 wants current but must wait
    ins = [ChargerInput("C001", wants=True, committed_a=(32, 32, 32), granted_a=32),
           ChargerInput("C002", wants=True)]
    g = allocate(inst, ins)
    assert g["C001"].value_a == 16.0  # lowered now
    assert g["C002"].value_a == 0.0 and g["C002"].target_a == 16.0 and g["C002"].waiting
    # once the lowering took effect, the raise follows
    ins = [ChargerInput("C001", wants=True, committed_a=(16, 16, 16), granted_a=16),
           ChargerInput("C002", wants=True)]
    g = allocate(inst, ins)
    assert g["C002"].value_a == 6.0  # raises slowly: from 0 to the minimum first
    ins[1] = ChargerInput("C002", wants=True, committed_a=(6, 6, 6), granted_a=6)
    assert allocate(inst, ins)["C002"].value_a == 12.0


def test_offline_charger_counted_at_fallback():
    inst = inst_doc(circuits=((32, 3),), fallback=10)
    ins = [ChargerInput("C001", online=False, committed_a=(10, 10, 10)),
           ChargerInput("C002", wants=True, granted_a=6), ChargerInput("C003", wants=True, granted_a=6)]
    g = allocate(inst, ins)
    assert g["C002"].value_a == 11.0 and g["C003"].value_a == 11.0
    assert g["C001"].value_a == 0


def test_single_phase_chargers_balance_phases():
    inst = inst_doc(circuits=((32, 4),), main=32, rotations=["L1L2L3", "L2L3L1", "L3L1L2", "L1L2L3"])
    ins = [ChargerInput(s, wants=True, phases=1, granted_a=32) for s in inst.chargers]
    g = allocate(inst, ins)
    # C001 and C004 share grid L1, C002 has L2 to itself, C003 L3
    assert g["C001"].value_a == 16.0 and g["C004"].value_a == 16.0
    assert g["C002"].value_a == 32.0 and g["C002"].a == [0.0, 32.0, 0.0]
    assert g["C003"].a == [0.0, 0.0, 32.0]


def test_main_breaker_binds_across_circuits():
    inst = inst_doc(main=20, circuits=((32, 2), (32, 2)))
    g = allocate(inst, [ChargerInput(s, wants=True, granted_a=6) for s in inst.chargers])
    vals = sorted(x.value_a for x in g.values())
    assert sum(vals) <= 20 and all(v == 0 or v >= 6 for v in vals)
    assert vals.count(0.0) == 1  # three can run at 6.6 A


# ---------------------------------------------------------------- properties

@st.composite
def scenarios(draw):
    grid = draw(st.sampled_from(["TN", "TT", "IT"]))
    ncirc = draw(st.integers(1, 3))
    circuits = []
    n = 0
    for ci in range(ncirc):
        chs = []
        for _ in range(draw(st.integers(1, 5))):
            n += 1
            chs.append({"serial": "S%02d" % n, "phase_rotation": draw(st.sampled_from(ROTATIONS)),
                        "fallback_current_a": draw(st.sampled_from([0, 6, 8, 10, 16])),
                        "fallback_phases": draw(st.sampled_from([1, 3])),
                        "max_current_a": draw(st.sampled_from([0, 6, 10, 16, 32]))})
        circuits.append({"name": "c%d" % ci, "breaker_a": draw(st.sampled_from([6, 10, 13, 16, 20, 25, 32, 40, 63])),
                         "chargers": chs})
    inst = installation.parse({"grid": grid, "main_breaker_a": draw(st.sampled_from([10, 16, 25, 40, 63, 100])),
                               "circuits": circuits})
    steady = draw(st.booleans())
    ins = []
    amps = st.floats(0, 32, allow_nan=False).map(lambda x: round(x, 2))
    for s, cfg in inst.chargers.items():
        online = draw(st.booleans()) or steady and draw(st.booleans())
        phases = draw(st.sampled_from([1, 3]))
        if not online:
            ph = loaded_phases(grid, cfg.phase_rotation, cfg.fallback_phases)
            fb = cfg.fallback_current_a
            com = tuple(fb if g in ph else 0.0 for g in range(3))
        elif steady:
            com = (0.0, 0.0, 0.0)
        else:
            com = (draw(amps), draw(amps), draw(amps))
        ins.append(ChargerInput(
            serial=s, online=online, wants=draw(st.booleans()), phases=phases, committed_a=com,
            max_a=min(cfg.max_current_a, draw(st.sampled_from([6, 10, 16, 32]))), min_a=cfg.min_current_a,
            granted_a=draw(st.sampled_from([0.0, 6.0, 10.0, 16.0])), priority=draw(st.integers(-5, 5))))
    return inst, ins


def node_members(inst):
    out = [("main", inst.main_breaker_a, tuple(inst.chargers))]
    out += [(c.name, c.breaker_a, c.serials) for c in inst.circuits]
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_property_breakers_never_exceeded(sc):
    inst, ins = sc
    g = allocate(inst, ins)
    by = {c.serial: c for c in ins}
    for name, breaker, serials in node_members(inst):
        for ph in range(3):
            com = sum(by[s].committed_a[ph] for s in serials)
            worst = sum(max(by[s].committed_a[ph], g[s].a[ph]) for s in serials)
            assert worst <= max(breaker, com) + EPS, (name, ph, worst, breaker, com)
            if com <= breaker:
                assert worst <= breaker + EPS
            # the steady state the allocator heads for, with offline chargers at their fallback
            fixed = sum(by[s].committed_a[ph] for s in serials if not by[s].online)
            tgt = sum(g[s].target_a for s in serials if by[s].online and ph in g[s].phases)
            if fixed <= breaker:
                assert fixed + tgt <= breaker + EPS, (name, ph, fixed, tgt, breaker)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_property_zero_or_at_least_minimum(sc):
    inst, ins = sc
    g = allocate(inst, ins)
    for c in ins:
        for v in (g[c.serial].value_a, g[c.serial].target_a):
            assert v == 0 or c.min_a - EPS <= v <= c.max_a + EPS, (c, v)
            if v > 0:
                assert c.online and c.wants
        for ph in range(3):
            assert g[c.serial].a[ph] in (0.0, g[c.serial].value_a)
            if ph not in g[c.serial].phases:
                assert g[c.serial].a[ph] == 0.0


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_property_everyone_gets_current_when_capacity_allows(sc):
    inst, ins = sc
    # steady state: online chargers hold nothing they would not get again
    ins = [c if not c.online else ChargerInput(c.serial, True, c.wants, c.phases, (0.0, 0.0, 0.0), c.max_a,
                                               c.min_a, c.granted_a, c.priority) for c in ins]
    by = {c.serial: c for c in ins}
    want = [c.serial for c in ins if c.online and c.wants and c.max_a >= c.min_a]
    ph = {s: loaded_phases(inst.grid, inst.chargers[s].phase_rotation, by[s].phases) for s in by}
    fits = True
    for _, breaker, serials in node_members(inst):
        for p in range(3):
            need = sum(by[s].committed_a[p] for s in serials if not by[s].online)
            need += sum(by[s].min_a for s in serials if s in want and p in ph[s])
            fits = fits and need <= breaker + EPS
    g = allocate(inst, ins)
    if fits:
        for s in want:
            assert g[s].value_a >= by[s].min_a - EPS, (s, g[s])
    # never everyone paused when one of them alone could run
    alone = False
    for s in want:
        ok = True
        for _, breaker, serials in node_members(inst):
            if s in serials:
                for p in ph[s]:
                    fixed = sum(by[t].committed_a[p] for t in serials if not by[t].online)
                    ok = ok and fixed + by[s].min_a <= breaker + EPS
        alone = alone or ok
    if alone:
        assert any(g[s].target_a > 0 for s in want)


# ---------------------------------------------------------------- balancer in virtual time

class Plant:
    """Chargers and vehicles as the contract promises them, in the worst case: a new lease reaches
    the charger after `latency` s, a lowered PWM takes up to `pwm_delay` s (the 5 s rate limit),
    the vehicle follows a lower PWM only after `follow` s, and a raise right away."""

    def __init__(self, inst, wanting, latency=0.5, pwm_delay=5.0, follow=5.0, fallback=6.0):
        self.inst = inst
        self.lat, self.pwm_delay, self.follow = latency, pwm_delay, follow
        self.fallback = fallback
        self.limit = {s: fallback for s in inst.chargers}       # effective limit
        self.lease_until = {s: None for s in inst.chargers}
        self.offered = {s: 0.0 for s in inst.chargers}
        self.draw = {s: 0.0 for s in inst.chargers}
        self.pending = []       # (t_apply, serial, a)
        self.lower_at = {}      # serial -> (t, value) when the vehicle follows
        self.wanting = set(wanting)
        self.online = {s: True for s in inst.chargers}

    def send(self, now, serial, payload):
        if self.online[serial]:
            self.pending.append((now + self.lat, serial, payload))

    def tick(self, now):
        for item in [p for p in self.pending if p[0] <= now]:
            self.pending.remove(item)
            _, s, payload = item
            self.limit[s] = max(payload["a"])
            self.lease_until[s] = now + payload["ttl_s"]
        for s in self.inst.chargers:
            if self.lease_until[s] is not None and now >= self.lease_until[s]:
                self.limit[s] = self.fallback
                self.lease_until[s] = None
            want = self.limit[s] if s in self.wanting and self.limit[s] >= 6 else 0.0
            if want > self.offered[s]:
                self.offered[s] = want
                self.draw[s] = want
                self.lower_at.pop(s, None)
            elif want < self.offered[s] and s not in self.lower_at:
                self.lower_at[s] = (now + self.pwm_delay + self.follow, None)
            if s in self.lower_at and now >= self.lower_at[s][0]:
                self.offered[s] = want
                self.draw[s] = want
                del self.lower_at[s]

    def state(self, s):
        return {"mode": "connected_charging" if s in self.wanting else "disconnected", "standalone": False,
                "enabled": True, "faults": [], "phases": 3, "limit_a": self.limit[s], "contactor": self.draw[s] > 0,
                "i_a": [self.draw[s]] * 3, "offered_a": self.offered[s]}


def run_plant(inst, plant, bal, t_end, dt=0.5, events=()):
    events = sorted(events)
    samples = []
    now = 0.0
    while now < t_end:
        while events and events[0][0] <= now:
            events.pop(0)[1](now)
        plant.tick(now)
        for s in inst.chargers:
            if plant.online[s]:
                bal.on_state(s, now, plant.state(s))
        if bal.due(now):
            for s, payload in bal.step(now):
                plant.send(now, s, payload)
        samples.append((now, dict(plant.draw), bal.inst))
        now += dt
    return samples


def test_balancer_breaker_step_converges_without_overload():
    inst = inst_doc(circuits=((32, 3),), main=63)
    plant = Plant(inst, wanting=inst.chargers)
    bal = Balancer(inst, BalancerParams(period_s=2, ttl_s=20, hold_s=12, min_run_s=60))
    for s in inst.chargers:
        bal.on_online(s, 0, True)
    step_at = 60.0
    new = inst.with_breaker("c0", 16)
    samples = run_plant(inst, plant, bal, 200, events=[(step_at, lambda now: bal.set_installation(new))])
    follow = 2 + 5 + 5 + 0.5  # one round, PWM rate limit, vehicle follow, latency
    for t, draw, _ in samples:
        total = sum(draw.values())
        assert total <= 32 + EPS, (t, draw)
        if t >= step_at + follow:
            assert total <= 16 + EPS, (t, draw)
    # before the step all three charged at 10.6 A; after it, two at 8 A and one paused, in turns
    at = {round(t): d for t, d, _ in samples}
    assert sorted(at[55].values()) == [10.6, 10.6, 10.6]
    assert sorted(at[100].values()) == [0.0, 8.0, 8.0]
    paused = {s for t, d, _ in samples if t > step_at + follow for s in d if d[s] == 0}
    assert paused == set(inst.chargers), "every charger takes its turn to pause"
    for t, d, _ in samples:
        if t > 30:
            assert sum(1 for v in d.values() if v > 0) >= 1, "never everyone stopped at once"


def test_balancer_offline_charger_counted_at_fallback_until_back():
    inst = inst_doc(circuits=((32, 3),), main=63, fallback=10)
    plant = Plant(inst, wanting=inst.chargers, fallback=10)
    bal = Balancer(inst, BalancerParams(period_s=2, ttl_s=20, hold_s=12, min_run_s=600))

    def gone(now):
        plant.online["C003"] = False
        bal.on_online("C003", now, False)

    def back(now):
        plant.online["C003"] = True
        bal.on_online("C003", now, True)

    samples = run_plant(inst, plant, bal, 150, events=[(40, gone), (110, back)])
    for t, draw, _ in samples:
        assert sum(draw.values()) <= 32 + EPS, (t, draw)
    snap_at = {}
    for t, d, _ in samples:
        snap_at[round(t)] = d
    # C003 kept its 10.6 A lease until it lapsed, then fell back to 10 A; the others got 11 A
    assert snap_at[100]["C003"] == 10 and snap_at[100]["C001"] == 11.0
    assert sorted(snap_at[145].values()) == [10.6, 10.6, 10.6]
    comm = bal.snapshot(145)["nodes"]["c0"]["committed"]
    assert max(comm) <= 32 + EPS


def test_node_loads_and_breakers():
    inst = inst_doc(circuits=((32, 2), (16, 1)))
    loads = allocator.node_loads(inst, {"C001": [1, 2, 3], "C003": [4, 0, 0]})
    assert loads == {"main": [5, 2, 3], "c0": [1, 2, 3], "c1": [4, 0, 0]}
    assert allocator.breakers(inst) == {"main": 63, "c0": 32, "c1": 16}


def test_balancer_finished_vehicle_does_not_want_until_it_asks_again():
    inst = inst_doc(circuits=((32, 1),))
    bal = Balancer(inst, BalancerParams())
    st_ = {"standalone": False, "enabled": True, "faults": [], "phases": 3, "limit_a": 16, "i_a": [0, 0, 0],
           "mode": "connected_charging", "session": {"id": "C001-1-1"}}
    bal.on_online("C001", 0, True)
    bal.on_state("C001", 0, st_)
    assert bal.ch["C001"].wants(0, 25)
    bal.on_state("C001", 1, dict(st_, mode="connected_finished"))
    assert not bal.ch["C001"].wants(1, 25)
    bal.on_state("C001", 2, dict(st_, mode="connected_requesting"))  # the vehicle asks again
    assert bal.ch["C001"].wants(2, 25)
