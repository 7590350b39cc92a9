# Property test of the charging core: random sequences of vehicle, cable, limit, command, settings,
# fault and time events; the safety invariants are checked after every 10 ms tick.
import hypothesis.strategies as st
from charger_rig import NEAR_WRAP, MemStorage, Rig, apply_command
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from firmware import sessions
from firmware.ticks import ticks_diff

CPYTHON_ONLY = "hypothesis"

TRIP_FAULTS = {
    "rcd_ac", "rcd_dc", "rcd_selftest", "diode", "cp_short", "cp_invalid", "vent_required",
    "contactor_welded", "contactor_stuck_open", "overcurrent",
}


class ChargerMachine(RuleBasedStateMachine):
    @initialize(
        start=st.sampled_from([0, NEAR_WRAP, NEAR_WRAP + 4990]),
        auth=st.booleans(),
        standalone=st.booleans(),
        phases=st.sampled_from([1, 3]),
        tethered=st.sampled_from([None, None, 16]),
    )
    def setup(self, start, auth, standalone, phases, tethered):
        cfg = {"auth_required": auth, "standalone": standalone, "local_auth_ids": ["AA"], "max_current_a": 32}
        self.r = Rig(start=start, phases=phases, tethered=tethered, cfg=cfg)
        self.tethered = tethered
        self.log = sessions.SessionLog(MemStorage(), "T", 1)
        self.seq = 0
        self.notc_since = None
        self.nopwm_since = None
        self.last_energy = 0
        self.max_lease_da = None
        self.step_check()

    # ---- stepping with the invariants checked after every tick ----------------------------------------
    def step_check(self):
        r = self.r
        ch = r.ch
        was = ch.contactor
        n_ev = len(r.events)
        r.step()
        inp = r.inp
        now = r.now
        s = r.settings
        for ev in r.events[n_ev:]:
            if ev["type"] == "session_start":
                self.log.open(ev["auth_id"], inp.energy_wh, None)
            elif ev["type"] == "session_end":
                rec = self.log.close(ev["reason"], inp.energy_wh, None)
                assert rec is not None and rec["wh"] >= 0
                assert rec["stop_reason"] in ("ev_unplugged", "cmd_stop", "deauthorized", "fault", "restart")
        assert (self.log.current is not None) == ch.session_active
        assert inp.energy_wh >= self.last_energy
        self.last_energy = inp.energy_wh
        # offered never exceeds any active limit
        if ch.pilot_mode == "pwm":
            assert 60 <= ch.offered_da <= ch.limit_da
            assert ch.offered_da <= s["max_current_a"] * 10
            assert ch.offered_da <= 320
            if self.tethered is not None:
                assert ch.offered_da <= self.tethered * 10
            elif inp.pp_a > 0:
                assert ch.offered_da <= inp.pp_a * 10
            if not s["standalone"] and ch.lease.valid:
                assert ch.offered_da <= max(ch.lease.grid_da)
            assert ch.enabled and ch.session_active and ch.faults == []
            assert ch.limit_da >= s["min_current_a"] * 10
        else:
            assert ch.offered_da == 0
        if ch.contactor:
            if not was:  # a new close
                assert inp.cp == "C" and inp.diode_ok is True and ch.pilot_mode == "pwm"
                assert ch.enabled and ch.session_active and ch.faults == []
                if s["auth_required"]:
                    assert ch.auth_id is not None
            # safety trips open at once
            assert not inp.rcd_ac and not inp.rcd_dc
            assert inp.cp not in ("E", "D", "F")
            assert not (TRIP_FAULTS & set(ch.faults)), ch.faults
            assert inp.contactor_fault is None
            # C->B / C->A: open within 100 ms; X: within 200 ms (+ a tick)
            if inp.cp != "C":
                if self.notc_since is None:
                    self.notc_since = now
                lim = 210 if inp.cp == "X" else 100
                assert ticks_diff(now, self.notc_since) <= lim
            else:
                self.notc_since = None
            # wind-down after the PWM is removed: at most 6 s
            if ch.pilot_mode != "pwm":
                if self.nopwm_since is None:
                    self.nopwm_since = now
                assert ticks_diff(now, self.nopwm_since) <= 6000
            else:
                self.nopwm_since = None
        else:
            self.notc_since = None
            self.nopwm_since = None

    def ticks(self, n):
        for _ in range(n):
            self.step_check()

    # ---- vehicle and cable ---------------------------------------------------------------------------
    @rule(cable=st.sampled_from([13, 20, 32, 63, 0, -1]))
    def plug(self, cable):
        self.r.plug(cable)
        self.ticks(1)

    @rule()
    def unplug(self):
        self.r.unplug()
        self.ticks(1)

    @rule(on=st.booleans())
    def wants(self, on):
        self.r.wants = on
        self.ticks(1)

    @rule(ms=st.sampled_from([0, 200, 1500, 4000, 60000]))
    def vehicle_stop_delay(self, ms):
        self.r.stop_ms = ms
        self.ticks(1)

    @rule(da=st.sampled_from([None, None, 50, 170, 200, 400]))
    def draw(self, da):
        self.r.draw_da = da
        self.ticks(1)

    @rule(cp=st.sampled_from([None, None, None, "D", "E", "X", "F"]))
    def force_cp(self, cp):
        self.r.force_cp = cp
        self.ticks(1)

    # ---- time ----------------------------------------------------------------------------------------
    @rule(ms=st.sampled_from([10, 30, 100, 250, 400, 1000, 3000, 6100, 10500]))
    def wait(self, ms):
        self.ticks(ms // 10)

    @rule()
    def wait_long(self):
        self.ticks(3100)

    # ---- cloud and commands ------------------------------------------------------------------------------
    @rule(a=st.sampled_from([0, 5, 6, 10, 16, 32, 40]), ttl=st.sampled_from([1, 5, 60]), stale=st.booleans(),
          per_phase=st.booleans())
    def limit(self, a, ttl, stale, per_phase):
        if not stale:
            self.seq += 1
        val = [a, 32, a + 3] if per_phase else a
        self.r.ch.set_cloud_limit(self.r.now, val, ttl, self.seq)
        self.ticks(1)

    @rule(op=st.sampled_from(["authorize", "deauthorize", "stop", "resume", "tag_ok", "tag_bad", "restart"]))
    def command(self, op):
        apply_command(self.r.ch, self.r.now, op)
        self.ticks(1)

    @rule(
        key=st.sampled_from(["enabled", "max_current_a", "min_current_a", "standalone", "auth_required",
                             "fallback_current_a", "fallback_phases", "phase_rotation"]),
        data=st.data(),
    )
    def setting(self, key, data):
        choices = {
            "enabled": [True, False],
            "max_current_a": [0, 6, 10, 16, 32],
            "min_current_a": [6, 8, 12],
            "standalone": [True, False],
            "auth_required": [True, False],
            "fallback_current_a": [0, 6, 10, 20],
            "fallback_phases": [1, 3],
            "phase_rotation": ["L1L2L3", "L2L3L1", "L3L2L1"],
        }
        self.r.set(**{key: data.draw(st.sampled_from(choices[key]))})
        self.ticks(1)

    # ---- faults -------------------------------------------------------------------------------------------
    @rule(kind=st.sampled_from(["rcd_ac", "rcd_dc", "diode", "weld", "stuck_open", "selftest", "meter"]),
          on=st.booleans())
    def fault(self, kind, on):
        r = self.r
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
        self.ticks(1)

    @rule(t=st.sampled_from([250, 250, 640, 655, 690, 720, 600, None]))
    def temperature(self, t):
        self.r.inp.temp_dc = t
        self.ticks(1)

    @invariant()
    def version_is_int(self):
        assert isinstance(self.r.ch.version, int)


ChargerMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=100, derandomize=True, deadline=None
)
test_charger_state_machine = ChargerMachine.TestCase
