# The safety monitor of the charging core: turns the board's readings into faults (raise and clear
# through firmware.safety.Faults), keeps the RCD self-test that must pass before each close, the
# thermal derating level and the overcurrent penalty. Fast path; allocates nothing except the
# events of a fault change.
from firmware import safety
from firmware.iec61851 import (
    CP_B,
    CP_C,
    CP_D,
    CP_E,
    CP_F,
    CP_INVALID_MS,
    CP_X,
    METER_FAULT_MS,
    OVERCURRENT_MS,
    PWM,
    SELFTEST_TIMEOUT_MS,
)
from firmware.ticks import ticks_diff

# RCD self-test before a close
SELFTEST_IDLE = 0
SELFTEST_RUNNING = 1
SELFTEST_PASSED = 2

# contactor feedback of the board (Inputs.contactor_fault) carries the fault's contract name
WELDED = safety.FAULT_NAMES[safety.CONTACTOR_WELDED]
STUCK_OPEN = safety.FAULT_NAMES[safety.CONTACTOR_STUCK_OPEN]


class SafetyMonitor:
    def __init__(self, emit):
        self.faults = safety.Faults(emit)
        self.thermal = 0  # derating level 0..3 (firmware.safety.thermal_level)
        self.penalty_da = 0  # after an overcurrent: the offer is capped here until unplug
        self.selftest = SELFTEST_IDLE
        self._selftest_at = 0
        self._meter_bad = False
        self._meter_bad_since = 0
        self._oc_on = False
        self._oc_since = 0

    def on_plug(self):
        self.penalty_da = 0

    def on_unplug(self):
        self.penalty_da = 0
        self.selftest = SELFTEST_IDLE
        self.faults.on_unplug()

    def check(self, now, inp, pm, prev_mode, offer_da, min_da, socket):
        """Raise and clear faults from this tick's readings (pm: the PilotMachine after sense()).
        Returns True when a trip fault was newly raised."""
        flt = self.faults
        reading = pm.reading
        tripped = self._raise_inputs(now, inp, pm, prev_mode)
        self.thermal = safety.thermal_level(self.thermal, inp.temp_dc)
        if self.thermal == 3:
            flt.raise_(safety.OVERTEMP, now)
        if inp.meter_ok:
            self._meter_bad = False
        elif not self._meter_bad:
            self._meter_bad = True
            self._meter_bad_since = now
        elif ticks_diff(now, self._meter_bad_since) >= METER_FAULT_MS:
            flt.raise_(safety.METER, now)
        pp_bad = socket and inp.pp_a < 0
        if pp_bad:
            flt.raise_(safety.PP_INVALID, now)
        if pm.contactor and prev_mode == PWM and inp.meter_ok:
            tripped = self._overcurrent(now, inp.i_da, offer_da, min_da) or tripped
        else:
            self._oc_on = False
        self._selftest_result(now, inp.rcd_selftest, pm)
        if not inp.reader_ok:
            flt.raise_(safety.READER, now)  # no-op while active
        elif flt.active[safety.READER]:
            flt.clear(safety.READER)
        if flt.n_active:
            self._clear(now, inp, reading, pm.valid, pp_bad)
        return tripped

    def _raise_inputs(self, now, inp, pm, prev_mode):
        flt = self.faults
        reading = pm.reading
        tripped = False
        if self.selftest != SELFTEST_RUNNING:  # the self-test current trips the module on purpose
            if inp.rcd_ac:
                tripped = flt.raise_(safety.RCD_AC, now) or tripped
            if inp.rcd_dc:
                tripped = flt.raise_(safety.RCD_DC, now) or tripped
        cf = inp.contactor_fault
        if cf == WELDED:
            tripped = flt.raise_(safety.CONTACTOR_WELDED, now) or tripped
        elif cf == STUCK_OPEN:
            tripped = flt.raise_(safety.CONTACTOR_STUCK_OPEN, now) or tripped
        if reading == CP_E:
            tripped = flt.raise_(safety.CP_SHORT, now) or tripped
        elif reading == CP_D:
            tripped = flt.raise_(safety.VENT_REQUIRED, now) or tripped
        elif reading == CP_X and pm.contactor:
            # §4: cp invalid (F or no plateau) while closed -> open within 200 ms
            if (pm.valid and inp.cp == CP_F) or ticks_diff(now, pm.x_since) > CP_INVALID_MS:
                tripped = flt.raise_(safety.CP_INVALID, now) or tripped
        if prev_mode == PWM and inp.diode_ok is False and (reading == CP_B or reading == CP_C):
            tripped = flt.raise_(safety.DIODE, now) or tripped
        return tripped

    def _overcurrent(self, now, i_da, offer_da, min_da):
        # §4: any terminal above (offered + 0.5 A) * 1.1 for OVERCURRENT_MS
        ref = offer_da + 5
        over = False
        for k in range(3):
            if i_da[k] * 10 > ref * 11:
                over = True
        if not over:
            self._oc_on = False
            return False
        if not self._oc_on:
            self._oc_on = True
            self._oc_since = now
            return False
        if ticks_diff(now, self._oc_since) < OVERCURRENT_MS:
            return False
        self._oc_on = False
        pen = offer_da - (offer_da >> 2)
        self.penalty_da = pen if pen > min_da else min_da
        return self.faults.raise_(safety.OVERCURRENT, now)

    def _selftest_result(self, now, result, pm):
        if self.selftest == SELFTEST_RUNNING:
            if result is True:
                self.selftest = SELFTEST_PASSED
            elif result is False or ticks_diff(now, self._selftest_at) >= SELFTEST_TIMEOUT_MS:
                self.selftest = SELFTEST_IDLE
                self.faults.raise_(safety.RCD_SELFTEST, now)
        if self.selftest == SELFTEST_PASSED and pm.vehicle_idle():
            self.selftest = SELFTEST_IDLE  # a pass counts for the request it was made for

    def _clear(self, now, inp, reading, valid, pp_bad):
        flt = self.faults
        flt.service(safety.RCD_AC, inp.rcd_ac, now)
        flt.service(safety.RCD_DC, inp.rcd_dc, now)
        flt.service(safety.RCD_SELFTEST, False, now)
        flt.service(safety.DIODE, False, now)
        flt.service(safety.CP_SHORT, reading == CP_E or not valid, now)
        flt.service(safety.CP_INVALID, reading == CP_X, now)
        flt.service(safety.CONTACTOR_STUCK_OPEN, inp.contactor_fault == STUCK_OPEN, now)
        flt.service(safety.OVERCURRENT, False, now)
        flt.service(safety.OVERTEMP, self.thermal == 3, now)
        flt.service(safety.METER, self._meter_bad, now)
        flt.service(safety.PP_INVALID, pp_bad, now)

    def start_selftest(self, now, pm):
        """§4: an RCD self-test before each close, requested when the vehicle asks (C) with PWM.
        Returns True when the board must start one now."""
        if (
            self.selftest == SELFTEST_IDLE
            and not pm.contactor
            and pm.mode == PWM
            and pm.reading == CP_C
            and self.faults.n_active == 0
        ):
            self.selftest = SELFTEST_RUNNING
            self._selftest_at = now
            return True
        return False

    def may_close(self, diode_ok):
        return diode_ok is True and self.selftest == SELFTEST_PASSED and self.faults.n_active == 0

    def closed(self):
        self.selftest = SELFTEST_IDLE  # the next close needs a new self-test
