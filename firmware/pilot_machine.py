# The IEC 61851-1 control-pilot state machine of the charging core: reads the CP letter the board
# measured, debounces the plug, drives the pilot (PWM / steady +12 V X1 / steady -12 V F) and applies
# the contactor timing rules. It knows nothing of sessions, clouds or settings: the charger tells it
# whether power may be offered and at what current; it reports CP events and what it drives.
# Every timing rule cites shared/design.md §4 (numbers in firmware/iec61851.py). Allocates nothing.
from firmware.iec61851 import (
    C_STABLE_MS,
    CP_A,
    CP_B,
    CP_B1,
    CP_B2,
    CP_C,
    CP_C1,
    CP_C2,
    CP_D,
    CP_E,
    CP_F,
    CP_OPEN_DEBOUNCE_MS,
    CP_X,
    F_HOLD_MS,
    HIGH,
    LOW,
    MIN_OFF_MS,
    PLUG_DEBOUNCE_MS,
    PWM,
    PWM_OFF_OPEN_MS,
    RAISE_INTERVAL_MS,
    WAKE_AFTER_MS,
    WAKE_MS,
    duty_pm_for_da,
)
from firmware.ticks import ticks_diff

# CP events of sense()
NO_EVENT = 0
PLUGGED = 1
UNPLUGGED = 2


class PilotMachine:
    def __init__(self):
        # sensing
        self.reading = CP_A  # this tick's letter A..E, or X when it says nothing valid
        self.valid = True  # False: read while we drove -12 V
        self.last_letter = CP_A  # last valid letter A..E (the cp name keeps it through X)
        self.plugged = False
        self.ev_stopped = False  # the vehicle left C by itself while offered current, after charging
        self.closed_since_plug = False
        self.x_since = 0
        self._prev_reading = CP_A
        self._plug_cand = False
        self._plug_cand_on = False
        self._plug_cand_at = 0
        self._c_on = False
        self._c_since = 0
        self._x_on = False
        self._not_c_on = False  # the vehicle is in A or B
        self._not_c_since = 0
        # output
        self.mode = HIGH
        self.offer_da = 0  # current signalled while mode is PWM
        self.offered_da = 0  # what the vehicle is offered now: offer_da with PWM, else 0
        self.duty_pm = 1000
        self.contactor = False  # commanded
        self._pwm_since = 0
        self._pwm_off_at = 0
        self._offer_at = 0
        self._f_hold = False
        self._f_at = 0
        self._wake_active = False
        self._wake_done = False
        self._wake_at = 0
        self._opened_ever = False
        self._opened_at = 0

    # ---- sensing ----------------------------------------------------------------------------------
    def sense(self, now, cp):
        """Classify this tick's CP letter; returns PLUGGED / UNPLUGGED / NO_EVENT."""
        valid = self.mode != LOW  # a reading taken while we drove -12 V says nothing about the vehicle
        letter = CP_X
        if valid and (cp == CP_A or cp == CP_B or cp == CP_C or cp == CP_D or cp == CP_E):
            letter = cp
            self.last_letter = cp
        if valid and letter == CP_X:
            if not self._x_on:
                self._x_on = True
                self.x_since = now
        else:
            self._x_on = False
        if letter == CP_C:
            if not self._c_on:
                self._c_on = True
                self._c_since = now
        elif valid:
            self._c_on = False
        if letter == CP_A or letter == CP_B:
            if not self._not_c_on:
                self._not_c_on = True
                self._not_c_since = now
        else:
            self._not_c_on = False
        self.reading = letter
        self.valid = valid
        event = self._debounce_plug(now, letter)
        # a vehicle that stops asking while it is offered current has stopped by itself; one that
        # stops because the PWM went away (pause, stop, rest) has not
        if letter == CP_C:
            self.ev_stopped = False
        elif letter == CP_B and self._prev_reading == CP_C and self.mode == PWM and self.closed_since_plug:
            self.ev_stopped = True
        self._prev_reading = letter
        return event

    def _debounce_plug(self, now, letter):
        # A <-> plugged must hold PLUG_DEBOUNCE_MS (design.md §4: plug debounce)
        if not (letter == CP_A or letter == CP_B or letter == CP_C or letter == CP_D):
            return NO_EVENT
        p = letter != CP_A
        if p == self.plugged:
            self._plug_cand_on = False
            return NO_EVENT
        if not self._plug_cand_on or self._plug_cand != p:
            self._plug_cand_on = True
            self._plug_cand = p
            self._plug_cand_at = now
            return NO_EVENT
        if ticks_diff(now, self._plug_cand_at) < PLUG_DEBOUNCE_MS:
            return NO_EVENT
        self._plug_cand_on = False
        self.plugged = p
        self._wake_active = False
        if p:
            self._wake_done = False
            self.closed_since_plug = False
            self.ev_stopped = False
            return PLUGGED
        return UNPLUGGED

    def stable_c(self, now):
        """State C has held long enough to close (design.md §4: C stable 300 ms)."""
        return self.reading == CP_C and self._c_on and ticks_diff(now, self._c_since) >= C_STABLE_MS

    def vehicle_idle(self):
        """Not asking for power now (A or B), and no C pending."""
        return not self._c_on and (self.reading == CP_A or self.reading == CP_B)

    def cp_name(self):
        """The contract's cp name: A, B1/B2, C1/C2, D, E, F or X."""
        if self.mode == LOW:
            return CP_F
        lt = self.last_letter
        if lt == CP_B:
            return CP_B2 if self.mode == PWM else CP_B1
        if lt == CP_C:
            return CP_C2 if self.mode == PWM else CP_C1
        return lt

    # ---- output -----------------------------------------------------------------------------------
    def hold_f(self, now):
        """After a trip while charging or offering: steady -12 V at least F_HOLD_MS (§4: state F)."""
        self._f_hold = True
        self._f_at = now

    def open(self, now):
        self.contactor = False
        self._opened_ever = True
        self._opened_at = now

    def drive(self, now, allow, target_da):
        """Set the pilot for this tick: PWM for target_da when allowed and the timing rules agree."""
        if self._f_hold:
            if ticks_diff(now, self._f_at) < F_HOLD_MS:
                self.mode = LOW
            else:
                self._f_hold = False
        if not self._f_hold:
            # §4: the contactor rests MIN_OFF_MS between an open and the next close
            if allow and not self.contactor and self._opened_ever and ticks_diff(now, self._opened_at) < MIN_OFF_MS:
                allow = False
            if allow and self._wake_active:
                if ticks_diff(now, self._wake_at) >= WAKE_MS:
                    self._wake_active = False
                else:
                    allow = False
            if allow:
                self._offer(now, target_da)
            else:
                if self.mode == PWM:
                    self._pwm_off_at = now
                self.mode = HIGH
        if self.mode == PWM:
            self.offered_da = self.offer_da
            self.duty_pm = duty_pm_for_da(self.offer_da)
        else:
            self.offered_da = 0
            self.duty_pm = 0 if self.mode == LOW else 1000

    def _offer(self, now, target):
        if self.mode != PWM:
            self.mode = PWM
            self._pwm_since = now
            self.offer_da = target
            self._offer_at = now
        elif target < self.offer_da:
            self.offer_da = target  # a decrease at once
            self._offer_at = now
        elif target > self.offer_da:
            # §4: while charging, the offer rises at most once per RAISE_INTERVAL_MS
            if not self.contactor or ticks_diff(now, self._offer_at) >= RAISE_INTERVAL_MS:
                self.offer_da = target
                self._offer_at = now
        # §4 wake-up: PWM without C for WAKE_AFTER_MS and never charged -> X1 for WAKE_MS, once per plug-in
        if (
            not self._wake_done
            and not self.closed_since_plug
            and self.reading == CP_B
            and ticks_diff(now, self._pwm_since) >= WAKE_AFTER_MS
        ):
            self._wake_done = True
            self._wake_active = True
            self._wake_at = now
            self.mode = HIGH
            self._pwm_off_at = now

    def switch(self, now, prev_mode, may_close):
        """The contactor rules; may_close: the diode, the RCD self-test and the safety monitor agree.
        Returns True on the tick the contactor closes."""
        if self.contactor:
            if self._not_c_on and ticks_diff(now, self._not_c_since) >= CP_OPEN_DEBOUNCE_MS:
                self.open(now)  # §4: C->B / C->A -> open within 100 ms
            elif self.mode != PWM and ticks_diff(now, self._pwm_off_at) >= PWM_OFF_OPEN_MS:
                self.open(now)  # §4: PWM removed and the vehicle did not stop -> open after 6 s
            return False
        if (
            may_close
            and self.mode == PWM
            and prev_mode == PWM
            and self.stable_c(now)
            and ticks_diff(now, self._pwm_since) >= C_STABLE_MS
        ):
            self.contactor = True
            self.closed_since_plug = True
            return True
        return False
