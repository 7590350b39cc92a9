# The charging core: IEC 61851 pilot state machine, current arbitration, safety monitor,
# authentication, cloud leases and session boundaries. Pure logic: no I/O, no sleeping, no
# `machine`; time comes in as `now_ms` ticks. `Charger.tick` is the fast path and allocates nothing
# (integers only, interned string constants, preallocated state); events (rare) allocate.
# The rules and numbers are documented in docs/charging.md.
from firmware.auth import IDLE, AuthSessions
from firmware.iec61851 import (
    C_STABLE_MS,
    CP_A,
    CP_B,
    CP_B1,
    CP_B2,
    CP_C,
    CP_C1,
    CP_C2,
    CP_F,
    CP_OPEN_DEBOUNCE_MS,
    F_HOLD_MS,
    HIGH,
    LOW,
    MIN_OFF_MS,
    PWM,
    PWM_OFF_OPEN_MS,
    RAISE_INTERVAL_MS,
    WAKE_AFTER_MS,
    WAKE_MS,
    duty_pm_for_da,
)
from firmware.lease import Lease
from firmware.monitor import SRC_NONE, ST_IDLE, ST_PASSED, ST_RUNNING, Monitor
from firmware.safety import Faults
from firmware.ticks import ticks_diff

# contract modes
DISCONNECTED = "disconnected"
REQUESTING = "connected_requesting"
CHARGING = "connected_charging"
FINISHED = "connected_finished"
FAULT = "fault"
DISABLED = "disabled"

def _da(a):
    return int(a * 10 + 0.5)


class Inputs:
    """Filled by the app every tick (see docs/architecture.md)."""

    def __init__(self):
        self.cp = CP_A
        self.diode_ok = None
        self.pp_a = 0
        self.contactor_closed = False
        self.contactor_fault = None
        self.rcd_ac = False
        self.rcd_dc = False
        self.rcd_selftest = None
        self.temp_dc = 250
        self.i_da = [0, 0, 0]
        self.meter_ok = True
        self.energy_wh = 0


class Charger(AuthSessions, Monitor):
    def __init__(self, settings, hw_max_a, phases, tethered_a=None):
        self.hw_da = _da(hw_max_a)
        self.hw_phases = 1 if phases == 1 else 3
        self.tethered_da = None if tethered_a is None else _da(tethered_a)
        self._events = []
        self.lease = Lease()
        self.flt = Faults(self._emit)
        # outputs
        self.pilot_mode = HIGH
        self.offered_da = 0
        self.duty_pm = 1000
        self.contactor = False
        self.selftest_req = False
        self.phases = self.hw_phases
        self.mode = DISCONNECTED
        self.cp_name = CP_A
        self.limit_da = 0
        self.limit_src = SRC_NONE
        self.lease_ms_left = None
        self.faults = self.flt.names
        self.auth_state = IDLE
        self.auth_id = None
        self.session_active = False
        self.version = 0
        # pilot reading
        self._letter = CP_A  # last valid reading A..E (F unexpected -> treated as X)
        self._plugged = False
        self._plug_cand = False
        self._plug_cand_on = False
        self._plug_cand_at = 0
        self._c_on = False
        self._c_since = 0
        self._x_on = False
        self._x_since = 0
        self._notc_on = False
        self._notc_since = 0
        # pilot output state
        self._pwm_since = 0
        self._pwm_off_at = 0
        self._offer_da = 0
        self._offer_at = 0
        self._f_hold = False
        self._f_at = 0
        self._wake_active = False
        self._wake_done = False
        self._wake_at = 0
        # contactor
        self._opened_ever = False
        self._opened_at = 0
        self._charged = False  # contactor closed at least once since plug-in
        self._ev_done = False  # the vehicle left C by itself (PWM on) after charging: it is full
        self._prev_letter = CP_A
        self._st = ST_IDLE
        self._st_at = 0
        # safety
        self._thermal = 0
        self._meter_bad = False
        self._meter_bad_since = 0
        self._oc_on = False
        self._oc_since = 0
        self._oc_pen_da = 0
        # auth / session
        self._grant_valid = False
        self._grant_id = None
        self._grant_at = 0
        self._pending_on = False
        self._pending_at = 0
        self._denied = False
        self._denied_id = None
        self._need_grant = False
        self._sess_auth = None
        self._stopped = False
        self._halted = False
        self._phase_pending = False
        # version snapshot
        self._v_mode = None
        self._v_cp = None
        self._v_con = None
        self._v_offer = -1
        self._v_src = None
        self._v_auth = None
        self._v_sess = None
        self.apply_settings(settings)

    # ---- events --------------------------------------------------------------------------------
    def _emit(self, typ, key, val):
        self._events.append({"type": typ, key: val})

    def set_tethered(self, tethered_a):
        """Slow path: the board's cable is tethered (its rating in A) or a socket (None)."""
        self.tethered_da = None if tethered_a is None else _da(tethered_a)

    def pop_events(self):
        ev = self._events
        if ev:
            self._events = []
        return ev

    # ---- slow path -------------------------------------------------------------------------------
    def _open(self, now):
        self.contactor = False
        self._opened_ever = True
        self._opened_at = now

    # ---- fast path ---------------------------------------------------------------------------------
    def tick(self, now, inp):
        flt = self.flt
        prev = self.pilot_mode
        was_closed = self.contactor
        self.selftest_req = False

        self._sense(now, inp, prev)
        letter = self._cur
        # a vehicle that stops asking while it is offered current has finished; one that stops
        # because the PWM went away (pause, stop, rest) has not
        if letter == CP_C:
            self._ev_done = False
        elif letter == CP_B and self._prev_letter == CP_C and prev == PWM and self._charged:
            self._ev_done = True
        self._prev_letter = letter
        self._detect(now, inp, prev, was_closed)
        self._auth_tick(now)

        # 4. arbitration
        self._arbitrate(inp.pp_a)

        # phases: changed only while the contactor is open (a change while charging pauses first)
        want_ph = self.hw_phases
        if want_ph == 3 and not self.standalone and not self.lease.valid:
            want_ph = self._fb_phases
        if want_ph != self.phases:
            if self.contactor:
                self._phase_pending = True
            else:
                self.phases = want_ph
                self._phase_pending = False
        else:
            self._phase_pending = False

        # 5. pilot output
        if self._f_hold:
            if ticks_diff(now, self._f_at) < F_HOLD_MS:
                self.pilot_mode = LOW
            else:
                self._f_hold = False
        if not self._f_hold:
            allow = (
                self.enabled
                and self._plugged
                and self.session_active
                and not self._stopped
                and not self._halted
                and flt.n_active == 0
                and self.limit_da >= self._min_da
                and self.limit_da > 0
                and not self._phase_pending
                and (self.contactor or not self._opened_ever or ticks_diff(now, self._opened_at) >= MIN_OFF_MS)
            )
            if allow and self._wake_active:
                if ticks_diff(now, self._wake_at) >= WAKE_MS:
                    self._wake_active = False
                else:
                    allow = False
            if allow:
                target = self.limit_da
                if self.pilot_mode != PWM:
                    self.pilot_mode = PWM
                    self._pwm_since = now
                    self._offer_da = target
                    self._offer_at = now
                elif target < self._offer_da:
                    self._offer_da = target
                    self._offer_at = now
                elif target > self._offer_da:
                    if not self.contactor or ticks_diff(now, self._offer_at) >= RAISE_INTERVAL_MS:
                        self._offer_da = target
                        self._offer_at = now
                # wake-up: PWM without C for 30 s and never charged -> X1 for 3 s, once per plug-in
                if (
                    not self._wake_done
                    and not self._charged
                    and letter == CP_B
                    and ticks_diff(now, self._pwm_since) >= WAKE_AFTER_MS
                ):
                    self._wake_done = True
                    self._wake_active = True
                    self._wake_at = now
                    self.pilot_mode = HIGH
                    self._pwm_off_at = now
            else:
                if self.pilot_mode == PWM:
                    self._pwm_off_at = now
                self.pilot_mode = HIGH
        if self.pilot_mode == PWM:
            self.offered_da = self._offer_da
            self.duty_pm = duty_pm_for_da(self._offer_da)
        else:
            self.offered_da = 0
            self.duty_pm = 0 if self.pilot_mode == LOW else 1000

        # 6. contactor
        if self.contactor:
            if self._notc_on and ticks_diff(now, self._notc_since) >= CP_OPEN_DEBOUNCE_MS:
                self._open(now)  # C->B / C->A
            elif self.pilot_mode != PWM and ticks_diff(now, self._pwm_off_at) >= PWM_OFF_OPEN_MS:
                self._open(now)  # PWM removed and the vehicle did not stop
        elif (
            self.pilot_mode == PWM
            and prev == PWM
            and letter == CP_C
            and self._c_on
            and ticks_diff(now, self._c_since) >= C_STABLE_MS
            and ticks_diff(now, self._pwm_since) >= C_STABLE_MS
            and inp.diode_ok is True
            and self._st == ST_PASSED
            and flt.n_active == 0
        ):
            self.contactor = True
            self._charged = True
            self._st = ST_IDLE  # the next close needs a new self-test
        # RCD self-test before each close: requested when the vehicle asks (C) with PWM
        if (
            not self.contactor
            and self._st == ST_IDLE
            and self.pilot_mode == PWM
            and letter == CP_C
            and flt.n_active == 0
        ):
            self._st = ST_RUNNING
            self._st_at = now
            self.selftest_req = True

        # 7. reporting
        if self.pilot_mode == LOW:
            name = CP_F
        else:
            lt = self._letter
            pwm = self.pilot_mode == PWM
            if lt == CP_B:
                name = CP_B2 if pwm else CP_B1
            elif lt == CP_C:
                name = CP_C2 if pwm else CP_C1
            else:
                name = lt
        self.cp_name = name
        if flt.n_active:
            mode = FAULT
        elif not self.enabled:
            mode = DISABLED
        elif not self._plugged:
            mode = DISCONNECTED
        elif self.contactor:
            mode = CHARGING
        elif self._stopped or self._halted or (self._ev_done and self._letter == CP_B):
            mode = FINISHED
        else:
            mode = REQUESTING
        self.mode = mode
        if flt.changed:
            flt.changed = False
            self.faults = flt.names
            self.version += 1
        if (
            mode != self._v_mode
            or name != self._v_cp
            or inp.contactor_closed != self._v_con
            or self.offered_da != self._v_offer
            or self.limit_src != self._v_src
            or self.auth_state != self._v_auth
            or self.session_active != self._v_sess
        ):
            self._v_mode = mode
            self._v_cp = name
            self._v_con = inp.contactor_closed
            self._v_offer = self.offered_da
            self._v_src = self.limit_src
            self._v_auth = self.auth_state
            self._v_sess = self.session_active
            self.version += 1

