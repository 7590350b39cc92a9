# The core leg of `make soak` (tools/soak.py): random episodes of the charging core
# (firmware/charger.py Charger on the simulated board and plant, host_tests/charger_rig.py) with
# every safety invariant of shared/design.md §4 checked after each tick. Runs under CPython and
# under the MicroPython unix ports (32-bit build/mp32), with its own PRNG so that a seed gives the
# same actions on both runtimes and a failure found on one replays on the other.
#
#   micropython tools/soak_core.py run SEED EPISODES ACTIONS   -> one JSON line of counts
#   micropython tools/soak_core.py replay FILE                 -> one JSON line: the case's result
#
# An episode: a random setup (start ticks near the wrap or not, auth, standalone, phases,
# tethered cable, hardware rating), then ACTIONS random actions (vehicle, cable, limits, commands,
# settings, faults, temperatures, waits and time jumps), each followed by its ticks. A case is the
# setup and the action list: JSON, replayable, shrinkable (tools/soak.py removes actions while the
# case still fails).
import json
import sys

try:
    import _frozen_sim  # noqa: F401  (32-bit frozen binary: the simulator from the frozen image)
except ImportError:
    pass

from charger_rig import NEAR_WRAP, MemStorage, Rig, apply_command

from firmware import sessions
from firmware.ticks import ticks_add, ticks_diff

_M32 = 0xFFFFFFFF

TRIP = ("rcd_ac", "rcd_dc", "rcd_selftest", "diode", "cp_short", "cp_invalid", "vent_required",
        "contactor_welded", "contactor_stuck_open", "overcurrent")
REASONS = ("ev_unplugged", "cmd_stop", "deauthorized", "fault", "restart")
ROTATIONS = ("L1L2L3", "L2L3L1", "L3L1L2", "L1L3L2", "L3L2L1", "L2L1L3")


class Rng:
    """xorshift32: the same numbers on CPython and MicroPython."""

    def __init__(self, seed):
        self.x = (seed * 2654435761 + 12345) & _M32 or 1

    def next(self):
        x = self.x
        x ^= (x << 13) & _M32
        x ^= x >> 17
        x ^= (x << 5) & _M32
        self.x = x
        return x

    def below(self, n):
        return self.next() % n

    def pick(self, seq):
        return seq[self.next() % len(seq)]


# ---- generation -------------------------------------------------------------------------------------
SETTING_CHOICES = {
    "enabled": [True, True, True, False],
    "max_current_a": [0, 6, 10, 13, 16, 25, 32],
    "min_current_a": [6, 6, 8, 12],
    "standalone": [True, False, False],
    "auth_required": [True, False],
    "auth_timeout_s": [10, 60, 3600],
    "fallback_current_a": [0, 6, 10, 20],
    "fallback_phases": [1, 3],
    "phase_rotation": list(ROTATIONS),
    "local_auth_ids": [[], ["AA"], ["AA", "BB"]],
}
SETTING_KEYS = sorted(SETTING_CHOICES)


def gen_setup(rng):
    return {
        "start": rng.pick([0, 0, NEAR_WRAP, NEAR_WRAP + 4990, 1 << 29]),
        "auth": rng.below(2) == 1,
        "standalone": rng.below(3) == 0,
        "phases": rng.pick([1, 3, 3]),
        "tethered": rng.pick([None, None, None, 16, 32]),
        "hw": rng.pick([16, 32, 32]),
    }


def gen_action(rng):
    """One action as a JSON-able list [name, arg...]."""
    k = rng.below(100)
    if k < 8:
        return ["plug", rng.pick([13, 20, 32, 63, 32, 0, -1]), rng.pick([6, 16, 32, 32])]
    if k < 13:
        return ["unplug"]
    if k < 18:
        return ["wants", rng.below(4) != 0]
    if k < 20:
        return ["stop_delay", rng.pick([0, 200, 1500, 4000, 60000])]
    if k < 24:
        return ["draw", rng.pick([None, None, None, 50, 170, 200, 400])]
    if k < 27:
        return ["cp", rng.pick([None, None, None, "D", "E", "X", "F"])]
    if k < 45:
        return ["wait", rng.pick([1, 3, 10, 25, 40, 100, 300, 610, 1050, 3100])]
    if k < 49:
        # a time jump: one tick that comes late (a stalled loop) by up to 10 minutes
        return ["jump", rng.pick([50, 150, 500, 2000, 7000, 65000, 600000])]
    if k < 62:
        a = rng.pick([0, 5, 6, 10, 16, 32, 40, 80, 1000, -1, 1001])
        return ["limit", rng.below(3) == 0, a, rng.pick([a, 32, 20]), rng.pick([a, 10, 32]),
                rng.pick([1, 2, 5, 60, 3600, 0, 3601]), rng.below(8) == 0]
    if k < 76:
        return ["cmd", rng.pick(["authorize", "deauthorize", "stop", "resume", "tag_ok", "tag_bad", "restart"])]
    if k < 86:
        key = rng.pick(SETTING_KEYS)
        return ["set", key, rng.pick(SETTING_CHOICES[key])]
    if k < 94:
        return ["fault", rng.pick(["rcd_ac", "rcd_dc", "diode", "weld", "stuck_open", "selftest", "meter"]),
                rng.below(3) != 0]
    return ["temp", rng.pick([250, 250, 640, 655, 690, 720, 600, None])]


def gen_case(seed, n_actions):
    rng = Rng(seed)
    setup = gen_setup(rng)
    return {"seed": seed, "setup": setup, "actions": [gen_action(rng) for _ in range(n_actions)]}


# ---- the checked run ----------------------------------------------------------------------------------
class Violation(Exception):
    pass


class Soak:
    """One episode: the rig, the shadow state the invariants need, and the checks."""

    def __init__(self, setup, breaker=None):
        self.setup = setup
        cfg = {"auth_required": setup["auth"], "standalone": setup["standalone"], "local_auth_ids": ["AA"],
               "max_current_a": setup["hw"]}
        self.r = Rig(start=setup["start"], hw=setup["hw"], phases=setup["phases"], tethered=setup["tethered"],
                     cfg=cfg)
        self.log = sessions.SessionLog(MemStorage(), "T", 1)
        self.breaker = breaker  # tests: a function(soak) that corrupts what the checker sees
        self.ticks = 0
        self.seq = 0
        self.last_energy = 0
        self.lease_valid = False  # the shadow lease: what the contract says applies
        self.lease_until = 0
        self.lease_grid = [0, 0, 0]
        self.lease_seq = None
        self.expiries = 0  # limit_expired the shadow expects minus those the core emitted
        self.notc_since = None
        self.nopwm_since = None
        self.over_since = None
        self.c_since = None
        self.low_since = None
        self.opened_at = None
        self.free_session = False
        self.selftest = 0  # 0: none since the last close, 1: requested, 2: passed
        self.prev_mode = self.r.ch.pilot_mode
        self.prev_offered = 0
        self.offer_changed_at = None
        self.prev_closed = False
        self.prev_phases = self.r.ch.phases
        self.dt = 10

    def fail(self, what):
        raise Violation(what)

    # one tick: the rig steps (dt ms later than the last), then every invariant
    def tick(self, dt=10):
        r = self.r
        ch = r.ch
        r.dt = dt
        self.dt = dt
        was = ch.contactor
        prev_mode = ch.pilot_mode
        r.step()
        r.dt = 10
        self.ticks += 1
        now = ticks_add(r.now, -dt)  # the tick's own time (step advanced the clock after it)
        inp = r.inp
        if self.breaker is not None:
            self.breaker(self)
        ev = r.events
        r.events = []
        self.check(now, inp, was, prev_mode, ev)

    def check(self, now, inp, was, prev_mode, events):
        ch = self.r.ch
        s = self.r.settings
        dt = self.dt
        mode = ch.pilot_mode
        off = ch.offered_da
        # -- events: sessions and leases
        for e in events:
            t = e["type"]
            if t == "session_start":
                if self.log.current is not None:
                    self.fail("session_start while a session is open")
                self.log.open(e["auth_id"], inp.energy_wh, None)
                # a session that began without auth_required stays free when it is switched on
                # (docs/charging.md, Authentication): the setting applies from the next session
                self.free_session = not s["auth_required"]
            elif t == "session_end":
                rec = self.log.close(e["reason"], inp.energy_wh, None)
                if rec is None:
                    self.fail("session_end without a session")
                if rec["wh"] < 0:
                    self.fail("session with negative energy")
                if rec["stop_reason"] not in REASONS:
                    self.fail("bad stop_reason %r" % rec["stop_reason"])
            elif t == "limit_expired":
                self.expiries -= 1
        if (self.log.current is not None) != ch.session_active:
            self.fail("session log and core disagree on the open session")
        if self.lease_valid and ticks_diff(now, self.lease_until) >= 0:
            self.lease_valid = False
            self.expiries += 1
        if self.expiries != 0:
            self.fail("limit_expired events off by %d (a lease outlived its ttl or expired twice)" % self.expiries)
        if self.lease_valid and not s["standalone"]:
            left = ch.lease_ms_left
            if left is None or left != ticks_diff(self.lease_until, now):
                self.fail("lease_ms_left %r, the lease has %d ms left" % (left, ticks_diff(self.lease_until, now)))
        elif ch.lease_ms_left is not None:
            self.fail("lease_ms_left %r without a lease" % ch.lease_ms_left)
        if inp.energy_wh < self.last_energy:
            self.fail("energy decreased")
        self.last_energy = inp.energy_wh
        # -- the offer never exceeds any active limit (§4: offered = min of the terms)
        if mode == "pwm":
            if not (60 <= off <= ch.limit_da):
                self.fail("offered %d da outside 6 A..limit %d" % (off, ch.limit_da))
            if off > s["max_current_a"] * 10 or off > self.setup["hw"] * 10:
                self.fail("offered %d da above max_current_a / hardware" % off)
            teth = self.setup["tethered"]
            if teth is not None:
                if off > teth * 10:
                    self.fail("offered %d da above the tethered cable" % off)
            elif inp.pp_a <= 0 or off > inp.pp_a * 10:
                self.fail("offered %d da with cable reading %d A" % (off, inp.pp_a))
            if not s["standalone"]:
                if self.lease_valid:
                    rot = s["phase_rotation"]
                    g = [self.lease_grid[int(rot[1]) - 1]]
                    if ch.phases == 3:
                        g += [self.lease_grid[int(rot[3]) - 1], self.lease_grid[int(rot[5]) - 1]]
                    if off > min(g):
                        self.fail("offered %d da above the lease %r" % (off, g))
                elif off > s["fallback_current_a"] * 10:
                    self.fail("offered %d da above the fallback without a lease" % off)
            t = inp.temp_dc
            if t is None or t >= 710:
                self.fail("PWM offered at %r deci-degC (stop band or no sensor)" % t)
            if t >= 680 and off > (s["max_current_a"] * 10) >> 2:
                self.fail("offered %d da above 1/4 at %d deci-degC" % (off, t))
            if t >= 650 and off > (s["max_current_a"] * 10) >> 1:
                self.fail("offered %d da above 1/2 at %d deci-degC" % (off, t))
            if not s["enabled"] or not ch.session_active:
                self.fail("PWM while disabled or without a session")
            if [f for f in ch.faults if f != "reader"]:
                self.fail("PWM with faults %r" % ch.faults)
            if ch.limit_da < s["min_current_a"] * 10:
                self.fail("PWM with the limit below min_current_a")
            if not ch.pilot.plugged:
                self.fail("PWM without a vehicle")
        elif off != 0:
            self.fail("offered %d da without PWM" % off)
        # -- the offer rises at most once per 5 s while charging (a decrease at once)
        if mode == "pwm" and prev_mode == "pwm":
            if off > self.prev_offered and was and ch.contactor and self.offer_changed_at is not None \
                    and ticks_diff(now, self.offer_changed_at) < 5000:
                self.fail("offer raised %d -> %d da %d ms after the last change while charging"
                          % (self.prev_offered, off, ticks_diff(now, self.offer_changed_at)))
        if off != self.prev_offered:
            self.offer_changed_at = now
        self.prev_offered = off
        # -- state F after a trip holds at least 300 ms
        if mode == "low":
            if self.low_since is None:
                self.low_since = now
        else:
            if self.low_since is not None and ticks_diff(now, self.low_since) < 300:
                self.fail("state F held only %d ms" % ticks_diff(now, self.low_since))
            self.low_since = None
        # -- C seen with PWM (for the 300 ms C-stable rule)
        if inp.cp == "C" and mode == "pwm":
            if self.c_since is None:
                self.c_since = now
        elif inp.cp != "C":
            self.c_since = None
        # an RCD self-test requested after the last close, and its pass read after the request
        if self.selftest == 1 and inp.rcd_selftest is True:
            self.selftest = 2
        if ch.selftest_req:
            self.selftest = 1
        # -- the contactor
        if ch.contactor:
            if not was:  # a new close
                if inp.cp != "C" or inp.diode_ok is not True or mode != "pwm" or prev_mode != "pwm":
                    self.fail("close without C, diode or PWM (cp %s diode %r pilot %s)" % (inp.cp, inp.diode_ok, mode))
                if self.c_since is None or ticks_diff(now, self.c_since) < 300:
                    self.fail("close before C held 300 ms")
                if not s["enabled"] or not ch.session_active or [f for f in ch.faults if f != "reader"]:
                    self.fail("close while disabled, without a session or with faults")
                if s["auth_required"] and not self.free_session and ch.auth_id is None \
                        and ch.auth_state != "authorized":
                    self.fail("close without authorization")
                if self.selftest != 2:
                    self.fail("close without a passed RCD self-test since the last close")
                if self.opened_at is not None and ticks_diff(now, self.opened_at) < 10000:
                    self.fail("close %d ms after the last open (rest 10 s)" % ticks_diff(now, self.opened_at))
                self.selftest = 0
            # safety trips open at once (in the tick that reads them)
            if inp.rcd_ac or inp.rcd_dc:
                self.fail("contactor closed with an RCD trip")
            if inp.cp in ("E", "D", "F"):
                self.fail("contactor closed in state %s" % inp.cp)
            for f in ch.faults:
                if f in TRIP:
                    self.fail("contactor closed with trip fault %s" % f)
            if inp.contactor_fault is not None:
                self.fail("contactor closed with %s" % inp.contactor_fault)
            # C->B / C->A: open within 100 ms; no valid plateau: within 200 ms (plus this tick)
            if inp.cp != "C":
                if self.notc_since is None:
                    self.notc_since = now
                lim = 210 if inp.cp == "X" else 100
                if ticks_diff(now, self.notc_since) > lim + dt:
                    self.fail("contactor still closed %d ms after C ended" % ticks_diff(now, self.notc_since))
            else:
                self.notc_since = None
            # PWM removed: open after 6 s at the latest
            if mode != "pwm":
                if self.nopwm_since is None:
                    self.nopwm_since = now
                if ticks_diff(now, self.nopwm_since) > 6000 + dt:
                    self.fail("contactor closed %d ms after the PWM went" % ticks_diff(now, self.nopwm_since))
            else:
                self.nopwm_since = None
            # drawing above (offered + 0.5 A) * 1.1 for ~7 s -> a fault opens
            over = False
            if mode == "pwm" and prev_mode == "pwm" and inp.meter_ok:
                for k in range(3):
                    if inp.i_da[k] * 10 > (off + 5) * 11:
                        over = True
            if over:
                if self.over_since is None:
                    self.over_since = now
                if ticks_diff(now, self.over_since) > 7000 + dt:
                    self.fail("overcurrent for %d ms without a trip" % ticks_diff(now, self.over_since))
            else:
                self.over_since = None
        else:
            if was:
                self.opened_at = now
            self.notc_since = None
            self.nopwm_since = None
            self.over_since = None
        # -- the phase relay moves only with the contactor open
        if ch.phases != self.prev_phases and (was or ch.contactor):
            self.fail("phases switched %d -> %d under a closed contactor" % (self.prev_phases, ch.phases))
        self.prev_phases = ch.phases
        if not isinstance(ch.version, int):
            self.fail("version is not an int")

    # ---- actions ------------------------------------------------------------------------------------
    def act(self, a):
        r = self.r
        ch = r.ch
        name = a[0]
        if name == "plug":
            if not r.plugged:
                r.plug(a[1], a[2])
        elif name == "unplug":
            if r.plugged:
                r.unplug()
        elif name == "wants":
            r.wants = a[1]
        elif name == "stop_delay":
            r.stop_ms = a[1]
        elif name == "draw":
            r.draw_da = a[1]
        elif name == "cp":
            r.force_cp = a[1]
        elif name == "wait":
            for _ in range(a[1]):
                self.tick()
            return
        elif name == "jump":
            self.tick(a[1])
            return
        elif name == "limit":
            self.limit(a)
        elif name == "cmd":
            self.command(a[1])
        elif name == "set":
            key, val = a[1], a[2]
            if key == "min_current_a" and val > self.setup["hw"]:
                val = self.setup["hw"]
            if key in ("max_current_a", "fallback_current_a") and val > self.setup["hw"]:
                val = self.setup["hw"]
            r.set(**{key: val})
            if key == "standalone" and val:
                self.lease_valid = False  # standalone drops the lease (contract: limits ignored)
        elif name == "fault":
            kind, on = a[1], a[2]
            if kind == "rcd_ac":
                r.rcd(ac=on)
            elif kind == "rcd_dc":
                r.rcd(dc=on)
            elif kind == "diode":
                r.diode_fault = on
            elif kind == "weld":
                r.weld = on
            elif kind == "stuck_open":
                r.stuck_open = on
            elif kind == "selftest":
                r.selftest_result = not on
            elif kind == "meter":
                r.inp.meter_ok = not on
        elif name == "temp":
            r.inp.temp_dc = a[1]
        else:
            raise ValueError("unknown action %r" % (name,))
        del ch
        self.tick()

    def limit(self, a):
        _, per_phase, a1, a2, a3, ttl, stale = a
        if not stale:
            self.seq += 1
        val = [a1, a2, a3] if per_phase else a1
        vals = [a1, a2, a3] if per_phase else [a1, a1, a1]
        now = self.r.now
        got = self.r.ch.set_cloud_limit(now, val, ttl, self.seq)
        want = not self.r.settings["standalone"] and 1 <= ttl <= 3600 and min(vals) >= 0 and max(vals) <= 1000 \
            and (self.lease_seq is None or self.seq > self.lease_seq)
        if (got is None) != want:
            self.fail("limit %r ttl %d seq %d: core says %r, the contract %s" % (val, ttl, self.seq, got,
                                                                                 "applies" if want else "rejects"))
        if want:
            self.lease_valid = True
            self.lease_until = ticks_add(now, ttl * 1000)
            self.lease_grid = [v * 10 for v in vals]
            self.lease_seq = self.seq

    def command(self, op):
        apply_command(self.r.ch, self.r.now, op)


def run_case(case, breaker=None):
    """Run one case; returns (actions done, ticks, violation or None, index of the failing action)."""
    try:
        s = Soak(case["setup"], breaker)
        s.tick()
    except Violation as e:
        return 0, 1, str(e), -1
    acts = case["actions"]
    for i in range(len(acts)):
        try:
            s.act(acts[i])
        except Violation as e:
            return i + 1, s.ticks, str(e), i
    return len(acts), s.ticks, None, None


def run_many(seed, episodes, n_actions, breaker=None):
    """Episodes seed, seed+1, ...: counts and the failing cases (at most 5 kept)."""
    steps = ticks = 0
    fails = []
    nfail = 0
    for k in range(episodes):
        case = gen_case(seed + k, n_actions)
        n, t, v, idx = run_case(case, breaker)
        steps += n
        ticks += t
        if v is not None:
            nfail += 1
            if len(fails) < 5:
                case["actions"] = case["actions"][:idx + 1]
                case["violation"] = v
                fails.append(case)
    return {"steps": steps, "ticks": ticks, "violations": nfail, "failures": fails}


def main(argv):
    if argv[1] == "run":
        out = run_many(int(argv[2]), int(argv[3]), int(argv[4]))
    else:
        with open(argv[2]) as f:
            case = json.load(f)
        n, t, v, idx = run_case(case)
        out = {"steps": n, "ticks": t, "violation": v, "index": idx}
    out["runtime"] = sys.implementation.name
    print("@@SOAK " + json.dumps(out))


if __name__ == "__main__":
    main(sys.argv)
