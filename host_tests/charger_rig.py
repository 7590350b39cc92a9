# A tiny vehicle + board model around firmware.charger.Charger for tests in virtual time
# (CPython and MicroPython). Each step: the vehicle reacts to the outputs of the previous tick,
# fills Inputs, then Charger.tick runs. Time advances by `dt` ms through ticks_add (wrap-safe).
from firmware import settings as settings_mod
from firmware.charger import Charger, Inputs
from firmware.ticks import PERIOD, ticks_add, ticks_diff

NEAR_WRAP = PERIOD - 5000


class Rig:
    def __init__(self, start=0, hw=32, phases=3, tethered=None, cfg=None):
        s = settings_mod.defaults(hw)
        if cfg:
            s.update(cfg)
        self.settings = s
        self.ch = Charger(s, hw, phases, tethered)
        self.inp = Inputs()
        self.now = start
        self.dt = 10
        # vehicle
        self.plugged = False
        self.cable_a = 32
        self.wants = True  # S2 closes when a PWM is seen
        self.v_state = "B"  # B or C while plugged
        self.stop_ms = 500  # vehicle goes C->B this long after the PWM disappears
        self.sleepy = False  # ignores the PWM until a wake-up sequence
        self.no_pwm_since = None
        self.force_cp = None  # 'D', 'E', 'X' ... overrides the reading
        self.diode_fault = False
        self.draw_da = None  # None: follows the offer; else draws this (ignores the PWM)
        self.max_da = 320
        # board
        self.weld = False
        self.stuck_open = False
        self.selftest_ms = 100
        self.selftest_result = True
        self._st_due = None
        self.events = []
        self.closed_at = None
        self.opened_at = None

    # ---- controls --------------------------------------------------------------------------------
    def plug(self, cable_a=32):
        self.plugged = True
        self.cable_a = cable_a
        self.v_state = "B"

    def unplug(self):
        self.plugged = False

    def set(self, **kw):
        for k in kw:
            self.settings[k] = kw[k]
        self.ch.apply_settings(self.settings)

    # ---- model -------------------------------------------------------------------------------------
    def _vehicle(self):
        ch = self.ch
        inp = self.inp
        mode = ch.pilot_mode
        if not self.plugged:
            inp.cp = "A"
            inp.diode_ok = None if mode != "pwm" else True
            inp.pp_a = 0
        else:
            inp.pp_a = self.cable_a
            if mode == "pwm":
                self.no_pwm_since = None
                if self.wants and not self.sleepy:
                    self.v_state = "C"
            else:
                if mode == "high" and self.sleepy and self._woken_by(mode):
                    self.sleepy = False
                if self.no_pwm_since is None:
                    self.no_pwm_since = self.now
                if self.v_state == "C" and ticks_diff(self.now, self.no_pwm_since) >= self.stop_ms:
                    self.v_state = "B"
            if not self.wants:
                self.v_state = "B"
            cp = self.v_state
            if self.force_cp is not None:
                cp = self.force_cp
            if mode == "low":
                cp = "F"
            inp.cp = cp
            inp.diode_ok = (not self.diode_fault) if mode == "pwm" else None
        # contactor with load-side sense
        if ch.contactor:
            inp.contactor_closed = not self.stuck_open
            inp.contactor_fault = "contactor_stuck_open" if self.stuck_open else None
        else:
            inp.contactor_closed = self.weld and inp.contactor_closed
            inp.contactor_fault = "contactor_welded" if inp.contactor_closed else None
        # current draw
        if inp.contactor_closed and self.plugged:
            if self.draw_da is not None:
                d = self.draw_da
            elif self.v_state == "C":
                d = ch.offered_da if ch.offered_da < self.max_da else self.max_da
            else:
                d = 0
            for k in range(3):
                inp.i_da[k] = d
            inp.energy_wh += 1
        else:
            for k in range(3):
                inp.i_da[k] = 0
        # RCD self-test
        if self._st_due is not None and ticks_diff(self.now, self._st_due) >= 0:
            inp.rcd_selftest = self.selftest_result
            self._st_due = None

    def _woken_by(self, mode):
        return getattr(self, "_wake_seen", False) or self._mark_wake()

    def _mark_wake(self):
        # a sleeping vehicle wakes when it sees steady +12 V after having seen PWM for 25 s+
        if self.no_pwm_since is not None and ticks_diff(self.now, self.no_pwm_since) >= 1000:
            self._wake_seen = True
            return True
        return False

    def step(self):
        self._vehicle()
        was = self.ch.contactor
        self.ch.tick(self.now, self.inp)
        if self.ch.selftest_req:
            self.inp.rcd_selftest = None
            self._st_due = ticks_add(self.now, self.selftest_ms)
        if self.ch.contactor and not was:
            self.closed_at = self.now
        if was and not self.ch.contactor:
            self.opened_at = self.now
        ev = self.ch.pop_events()
        if ev:
            self.events.extend(ev)
        self.now = ticks_add(self.now, self.dt)

    def run(self, ms):
        end = ticks_add(self.now, ms)
        while ticks_diff(end, self.now) > 0:
            self.step()

    def run_until(self, pred, max_ms):
        """Step until pred() is true; returns the virtual ms it took, or None."""
        t0 = self.now
        while ticks_diff(self.now, t0) <= max_ms:
            self.step()
            if pred():
                return ticks_diff(self.now, t0) - self.dt
        return None

    def charge(self, max_ms=3000):
        """Plug (if needed) and run until the contactor is closed; returns ms from plug."""
        if not self.plugged:
            self.plug()
        return self.run_until(lambda: self.ch.contactor, max_ms)

    def types(self, typ):
        return [e for e in self.events if e["type"] == typ]
