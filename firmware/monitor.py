# Pilot sensing, safety-monitor detection and current arbitration of the charging core: the parts
# of Charger.tick that turn Inputs into facts (cp letter, plug state, faults, limit). Mixed into
# firmware.charger.Charger; fast path, allocates nothing (events on fault changes excepted).
from firmware import safety
from firmware.iec61851 import (
    CP_A,
    CP_B,
    CP_C,
    CP_D,
    CP_E,
    CP_F,
    CP_INVALID_MS,
    CP_X,
    LOW,
    METER_FAULT_MS,
    OVERCURRENT_MS,
    PLUG_DEBOUNCE_MS,
    PWM,
    SELFTEST_TIMEOUT_MS,
)
from firmware.ticks import ticks_diff

SRC_CLOUD = "cloud"
SRC_FALLBACK = "fallback"
SRC_MAX = "max"
SRC_CABLE = "cable"
SRC_THERMAL = "thermal"
SRC_OVERCURRENT = "overcurrent"
SRC_NONE = "none"

ST_IDLE = 0
ST_RUNNING = 1
ST_PASSED = 2

_WELDED = "contactor_welded"
_STUCK_OPEN = "contactor_stuck_open"


class Monitor:
    def _sense(self, now, inp, prev):
        """Classify the pilot reading; sets _cur (letter A..E or X) and _valid, tracks plug state."""
        # a reading taken while we drove -12 V says nothing about the vehicle
        cp = inp.cp
        valid = prev != LOW
        letter = CP_X
        if valid:
            if cp == CP_A or cp == CP_B or cp == CP_C or cp == CP_D or cp == CP_E:
                letter = cp
                self._letter = cp
        if valid and letter == CP_X:
            if not self._x_on:
                self._x_on = True
                self._x_since = now
        else:
            self._x_on = False
        if letter == CP_C:
            if not self._c_on:
                self._c_on = True
                self._c_since = now
        elif valid:
            self._c_on = False
        if letter == CP_A or letter == CP_B:
            if not self._notc_on:
                self._notc_on = True
                self._notc_since = now
        else:
            self._notc_on = False

        # plug state, debounced
        if letter == CP_A or letter == CP_B or letter == CP_C or letter == CP_D:
            p = letter != CP_A
            if p != self._plugged:
                if not self._plug_cand_on or self._plug_cand != p:
                    self._plug_cand_on = True
                    self._plug_cand = p
                    self._plug_cand_at = now
                elif ticks_diff(now, self._plug_cand_at) >= PLUG_DEBOUNCE_MS:
                    self._plug_cand_on = False
                    if p:
                        self._on_plug(now)
                    else:
                        self._on_unplug(now)
            else:
                self._plug_cand_on = False

        self._cur = letter
        self._valid = valid

    def _detect(self, now, inp, prev, was_closed):
        """Raise and clear faults; open at once on a trip; start the state-F hold."""
        flt = self.flt
        letter = self._cur
        valid = self._valid
        cp = inp.cp
        # raise
        tripped = False
        if self._st != ST_RUNNING:  # the self-test current trips the module on purpose
            if inp.rcd_ac:
                tripped = flt.raise_(safety.RCD_AC, now) or tripped
            if inp.rcd_dc:
                tripped = flt.raise_(safety.RCD_DC, now) or tripped
        cf = inp.contactor_fault
        if cf is not None:
            if cf == _WELDED:
                tripped = flt.raise_(safety.CONTACTOR_WELDED, now) or tripped
            elif cf == _STUCK_OPEN:
                tripped = flt.raise_(safety.CONTACTOR_STUCK_OPEN, now) or tripped
        if letter == CP_E:
            tripped = flt.raise_(safety.CP_SHORT, now) or tripped
        elif letter == CP_D:
            tripped = flt.raise_(safety.VENT_REQUIRED, now) or tripped
        elif letter == CP_X and self.contactor:
            if (valid and cp == CP_F) or ticks_diff(now, self._x_since) > CP_INVALID_MS:
                tripped = flt.raise_(safety.CP_INVALID, now) or tripped
        if prev == PWM and inp.diode_ok is False and (letter == CP_B or letter == CP_C):
            tripped = flt.raise_(safety.DIODE, now) or tripped
        self._thermal = safety.thermal_level(self._thermal, inp.temp_dc)
        if self._thermal == 3:
            flt.raise_(safety.OVERTEMP, now)
        if inp.meter_ok:
            self._meter_bad = False
        else:
            if not self._meter_bad:
                self._meter_bad = True
                self._meter_bad_since = now
            elif ticks_diff(now, self._meter_bad_since) >= METER_FAULT_MS:
                flt.raise_(safety.METER, now)
        pp_bad = self.tethered_da is None and inp.pp_a < 0
        if pp_bad:
            flt.raise_(safety.PP_INVALID, now)
        # overcurrent: any terminal above (offered + 0.5 A) * 1.1 for OVERCURRENT_MS
        if self.contactor and prev == PWM and inp.meter_ok:
            ref = self._offer_da + 5
            i_da = inp.i_da
            over = False
            for k in range(3):
                if i_da[k] * 10 > ref * 11:
                    over = True
            if over:
                if not self._oc_on:
                    self._oc_on = True
                    self._oc_since = now
                elif ticks_diff(now, self._oc_since) >= OVERCURRENT_MS:
                    self._oc_on = False
                    pen = self._offer_da - (self._offer_da >> 2)
                    if pen < self._min_da:
                        pen = self._min_da
                    self._oc_pen_da = pen
                    tripped = flt.raise_(safety.OVERCURRENT, now) or tripped
            else:
                self._oc_on = False
        else:
            self._oc_on = False
        # RCD self-test result
        if self._st == ST_RUNNING:
            r = inp.rcd_selftest
            if r is True:
                self._st = ST_PASSED
            elif r is False or ticks_diff(now, self._st_at) >= SELFTEST_TIMEOUT_MS:
                self._st = ST_IDLE
                flt.raise_(safety.RCD_SELFTEST, now)
        if not self._c_on and (letter == CP_A or letter == CP_B):
            if self._st == ST_PASSED:
                self._st = ST_IDLE

        # clear
        if flt.n_active:
            flt.service(safety.RCD_AC, inp.rcd_ac, now)
            flt.service(safety.RCD_DC, inp.rcd_dc, now)
            flt.service(safety.RCD_SELFTEST, False, now)
            flt.service(safety.DIODE, False, now)
            flt.service(safety.CP_SHORT, letter == CP_E or not valid, now)
            flt.service(safety.CP_INVALID, letter == CP_X, now)
            flt.service(safety.CONTACTOR_STUCK_OPEN, cf == _STUCK_OPEN, now)
            flt.service(safety.OVERCURRENT, False, now)
            flt.service(safety.OVERTEMP, self._thermal == 3, now)
            flt.service(safety.METER, self._meter_bad, now)
            flt.service(safety.PP_INVALID, pp_bad, now)

        # a trip opens at once; after a trip while charging (or offering PWM) state F >= 300 ms
        if flt.n_trip and self.contactor:
            self._open(now)
        if tripped and (was_closed or prev == PWM):
            self._f_hold = True
            self._f_at = now


    def _arbitrate(self, pp_a):
        if not self.enabled:
            self.limit_da = 0
            self.limit_src = SRC_NONE
            return
        m = self._max_da if self._max_da < self.hw_da else self.hw_da
        if self.standalone:
            lim = m
            src = SRC_MAX
        else:
            if self.lease.valid:
                lim = self.lease.min_da(self._rot, self.phases)
                src = SRC_CLOUD
            else:
                lim = self._fb_da
                src = SRC_FALLBACK
            if m < lim:
                lim = m
                src = SRC_MAX
        cable = self.tethered_da
        if cable is None:
            # socket: the cable's PP capacity; no or an invalid reading with a vehicle -> 0
            if pp_a > 0 or self._plugged:
                pp = pp_a * 10 if pp_a > 0 else 0
                if pp < lim:
                    lim = pp
                    src = SRC_CABLE
        elif cable < lim:
            lim = cable
            src = SRC_CABLE
        th = self._thermal
        if th:
            t = 0 if th == 3 else (lim >> 1 if th == 1 else lim >> 2)
            if t < lim:
                lim = t
                src = SRC_THERMAL
        pen = self._oc_pen_da
        if pen and pen < lim:
            lim = pen
            src = SRC_OVERCURRENT
        self.limit_da = lim
        self.limit_src = src

