"""The balancer: what the cloud knows about each charger, turned into allocator inputs every round.

No I/O and no clock of its own: the cloud feeds it contract messages with `now` (seconds, monotonic)
and calls `step(now)`, which returns the `limit` payloads to publish. This is where the allocator's
inputs come from:

- committed current (per grid phase) = the maximum of: every grant sent in the last `hold_s`
  seconds and the last one while its lease runs; every limit the charger reported in the last
  `hold_s` seconds and its current one; what it measurably draws; and, when it is offline or its
  state is stale, its fallback current on its fallback phases (its lease may lapse while we cannot
  reach it). `hold_s` covers the message delay, the charger's PWM update and the vehicle's follow
  time (IEC 61851: about 5 s): a lowered lease is not counted as lowered before then.
- wants current: online, configured (standalone false), enabled, no fault, mode
  connected_requesting or connected_charging, and not waiting for an authorization (a full vehicle
  is `connected_finished` until it asks again).
  (A lapsing lease is a lowering like any other: the last lease counts until `hold_s` after it lapses.)
- cap: the installation's max_current_a, the cable (pp_a) and a demand estimate: a vehicle that has
  drawn well below its grant for `settle_s` gets capped at what it draws + `demand_margin_a`; the cap
  lifts as soon as it draws close to it.
- priority (rotation of pauses): a charger that started within `min_run_s` keeps its slot; then
  waiting chargers, longest wait first; then running chargers, shortest run first. So when not all
  can get the minimum current, the one that has run longest pauses for the one that waited longest.
"""

from dataclasses import dataclass

from . import allocator
from .installation import loaded_phases, rotation_map

WANT_MODES = ("connected_requesting", "connected_charging")


@dataclass(frozen=True)
class BalancerParams:
    period_s: float = 3.0        # allocation round
    ttl_s: int = 30              # lease length (renewed every round)
    hold_s: float = 12.0         # a lowered grant counts at its old value this long
    stale_s: float = 25.0        # no state for this long: accounted as offline
    min_run_s: float = 120.0     # a started charger keeps its slot at least this long
    settle_s: float = 20.0       # measure demand only after the grant has been steady this long
    demand_margin_a: float = 2.0
    raise_step_a: float = 6.0


class Tracked:
    def __init__(self, cfg):
        self.cfg = cfg
        self.online = None          # None: never heard of
        self.state = None
        self.state_at = None
        self.reported = []          # [(t, [da]*3)] reported effective limits on loaded grid phases
        self.grants = []            # [(t, [a]*3, ttl_s)]
        self.seq = 0
        self.granted_a = 0.0
        self.grant_changed_at = None
        self.run_since = None
        self.wait_since = None
        self.demand_cap = None
        self.last = None            # last Grant

    # ---- derived from the last state
    def rot(self):
        return rotation_map(self.cfg.phase_rotation)

    def fresh(self, now, stale_s):
        return self.online is True and self.state_at is not None and now - self.state_at <= stale_s

    def standalone(self):
        return bool(self.state and self.state.get("standalone", True))

    def phases(self):
        p = (self.state or {}).get("phases") or 3
        return 1 if p == 1 else 3

    def measured_grid(self, grid):
        st = self.state or {}
        i = st.get("i_a") or [0, 0, 0]
        rot = self.rot()
        out = [0.0, 0.0, 0.0]
        for k in range(3):
            v = float(i[k] or 0) if k < len(i) else 0.0
            out[rot[k]] += v
        if grid == "IT" and self.phases() == 1:
            out[rot[1]] += float(i[0] or 0)
        return out

    def wants(self, now, stale_s):
        st = self.state
        if not self.fresh(now, stale_s) or st is None:
            return False
        if st.get("standalone", True) or not st.get("enabled", True) or st.get("faults"):
            return False
        if st.get("mode") not in WANT_MODES:
            return False
        auth = st.get("auth") or {}
        if auth.get("required") and auth.get("state") != "authorized":
            return False
        return True


class Balancer:
    def __init__(self, inst, params=BalancerParams(), seq_start=1):
        self.inst = inst
        self.p = params
        self.seq_start = seq_start
        self.ch = {s: Tracked(c) for s, c in inst.chargers.items()}
        self.last_step = None

    def set_installation(self, inst):
        self.inst = inst
        for s, c in inst.chargers.items():
            if s in self.ch:
                self.ch[s].cfg = c
            else:
                self.ch[s] = Tracked(c)
        for s in list(self.ch):
            if s not in inst.chargers:
                del self.ch[s]

    # ---- inputs from the contract
    def on_online(self, serial, now, online):
        t = self.ch.get(serial)
        if t is None:
            return
        t.online = online
        if not online:
            t.state_at = None

    def on_state(self, serial, now, state):
        t = self.ch.get(serial)
        if t is None:
            return
        if t.online is None:
            t.online = True
        t.state = state
        t.state_at = now
        lim = state.get("limit_a")
        if isinstance(lim, (int, float)) and not isinstance(lim, bool):
            ph = loaded_phases(self.inst.grid, t.cfg.phase_rotation, t.phases())
            t.reported.append((now, [float(lim) if g in ph else 0.0 for g in range(3)]))
        if t.grants and self.followed(t, state):
            # the charger applied our last lease and the vehicle draws no more than it: the older,
            # higher grants and limits no longer need holding (early end of hold_s)
            t.grants = t.grants[-1:]
            t.reported = t.reported[-1:]

    @staticmethod
    def followed(t, state):
        last = max(t.grants[-1][1])
        vals = [state.get("limit_a"), state.get("offered_a")]
        i = state.get("i_a")
        if not isinstance(i, list) or not i:
            return False
        for v in vals + [x + (-0.45) if isinstance(x, (int, float)) else x for x in i]:
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v > last + 0.05:
                return False
        return True

    # ---- accounting
    def committed(self, serial, now):
        t = self.ch[serial]
        hold = now - self.p.hold_s
        c = [0.0, 0.0, 0.0]

        def take(a):
            for g in range(3):
                c[g] = max(c[g], a[g])

        t.grants = [x for x in t.grants if x[0] >= hold or x is t.grants[-1]]
        for i, (ts, a, ttl) in enumerate(t.grants):
            # the last lease holds until it lapses, and the vehicle follows the lapse late too
            if ts >= hold or (i == len(t.grants) - 1 and now < ts + ttl + self.p.hold_s):
                take(a)
        t.reported = [x for x in t.reported if x[0] >= hold or x is t.reported[-1]]
        fresh = t.fresh(now, self.p.stale_s)
        for i, (ts, a) in enumerate(t.reported):
            if ts >= hold or (i == len(t.reported) - 1 and fresh):
                take(a)
        if fresh:
            take(t.measured_grid(self.inst.grid))
        if not fresh:
            cfg = t.cfg
            if t.state is not None and t.standalone():
                fb = max(cfg.max_current_a, float(t.state.get("limit_a") or 0))
                ph = (0, 1, 2)
            else:
                fb = cfg.fallback_current_a
                ph = loaded_phases(self.inst.grid, cfg.phase_rotation, cfg.fallback_phases)
            take([fb if g in ph else 0.0 for g in range(3)])
        return c

    def priority(self, t, now):
        if t.granted_a > 0 and t.run_since is not None:
            run = now - t.run_since
            return 1e9 if run < self.p.min_run_s else -run
        if t.wait_since is not None:
            return 1e6 + (now - t.wait_since)
        return 0.0

    def cap(self, t, now):
        st = t.state or {}
        cap = t.cfg.max_current_a
        pp = st.get("pp_a")
        if isinstance(pp, (int, float)) and pp > 0:
            cap = min(cap, float(pp))
        charging = st.get("mode") == "connected_charging" and st.get("contactor")
        if not charging:
            t.demand_cap = None
            return cap
        drawn = max(t.measured_grid(self.inst.grid))
        if t.demand_cap is not None and drawn >= t.demand_cap - 1.0:
            t.demand_cap = None
        steady = t.grant_changed_at is not None and now - t.grant_changed_at >= self.p.settle_s
        if t.demand_cap is None and steady and t.granted_a > 0 and drawn + self.p.demand_margin_a + 1 < t.granted_a:
            t.demand_cap = max(t.cfg.min_current_a, drawn + self.p.demand_margin_a)
        if t.demand_cap is not None:
            cap = min(cap, t.demand_cap)
        return cap

    def inputs(self, now):
        out = []
        for s, t in self.ch.items():
            fresh = t.fresh(now, self.p.stale_s)
            follows = fresh and t.state is not None and not t.standalone()
            wants = t.wants(now, self.p.stale_s)
            if wants and t.granted_a <= 0 and t.wait_since is None:
                t.wait_since = now
            if not wants:
                t.wait_since = None
                t.run_since = None
            out.append(allocator.ChargerInput(
                serial=s, online=follows, wants=wants, phases=t.phases(),
                committed_a=tuple(self.committed(s, now)), max_a=self.cap(t, now),
                min_a=t.cfg.min_current_a, granted_a=t.granted_a, priority=self.priority(t, now)))
        return out

    def due(self, now):
        return self.last_step is None or now - self.last_step >= self.p.period_s

    def step(self, now, seq_floor=0):
        """One allocation round: returns [(serial, limit payload)] for every charger that follows leases.
        seq_floor: the smallest seq to send (the cloud passes deciseconds of the wall clock)."""
        self.last_step = now
        ins = self.inputs(now)
        grants = allocator.allocate(self.inst, ins, allocator.Params(raise_step_a=self.p.raise_step_a))
        msgs = []
        for ci in ins:
            t = self.ch[ci.serial]
            g = grants[ci.serial]
            t.last = g
            if not ci.online:
                continue
            if g.value_a != t.granted_a:
                t.grant_changed_at = now
            if g.value_a > 0 and t.granted_a <= 0:
                t.run_since = now
                t.wait_since = None
            if g.value_a <= 0 and ci.wants and t.wait_since is None:
                t.wait_since = now
                t.run_since = None
            t.granted_a = g.value_a
            t.seq = max(t.seq + 1, self.seq_start, seq_floor)
            t.grants.append((now, list(g.a), self.p.ttl_s))
            msgs.append((ci.serial, {"a": list(g.a), "ttl_s": self.p.ttl_s, "seq": t.seq}))
        self.last_inputs = ins
        self.last_grants = grants
        return msgs

    def snapshot(self, now):
        """Everything the live view and the recorder show, as plain data."""
        chargers = {}
        for s, t in self.ch.items():
            st = t.state or {}
            g = t.last
            chargers[s] = {
                "circuit": t.cfg.circuit, "online": t.online, "fresh": t.fresh(now, self.p.stale_s),
                "mode": st.get("mode"), "offered_a": st.get("offered_a"), "limit_a": st.get("limit_a"),
                "limit_src": st.get("limit_src"), "lease_s": st.get("lease_s"), "e_wh": st.get("e_wh"),
                "i_grid": t.measured_grid(self.inst.grid) if t.fresh(now, self.p.stale_s) else [0.0] * 3,
                "phases": t.phases(), "standalone": st.get("standalone"),
                "session_wh": (st.get("session") or {}).get("wh"),
                "grant_a": g.value_a if g else None, "target_a": g.target_a if g else None,
                "committed": self.committed(s, now), "wants": t.wants(now, self.p.stale_s),
            }
        nodes = {}
        meas = allocator.node_loads(self.inst, {s: c["i_grid"] for s, c in chargers.items()})
        comm = allocator.node_loads(self.inst, {s: c["committed"] for s, c in chargers.items()})
        for name, b in allocator.breakers(self.inst).items():
            nodes[name] = {"breaker_a": b, "measured": meas[name], "committed": comm[name]}
        return {"chargers": chargers, "nodes": nodes}
