# Pins, analog inputs, SPI bus and RFID of the simulated plant (a mixin of board/sim/plant.py's
# Plant, in its own module so each compiles in a small heap on the MicroPython unix port).
from board import circuit
from drivers.ntc import ohms_for_temp_c

CABLE_OHMS = {13: 1500, 20: 680, 32: 220, 63: 100}
ADC_MAX_UV = 3150000  # ESP32 ADC1 at 11 dB saturates a little above 3.1 V


class PlantIO:
    # -- pins ---------------------------------------------------------------------------------------
    def pin_write(self, pin, v):
        self.sync_now()
        if pin == circuit.PIN_CONTACTOR:
            on = bool(v)
            if on != self.contactor_cmd:
                self.contactor_cmd = on
                self._at("contactor", self.contactor_close_ms if on else self.contactor_open_ms)
        elif pin == circuit.PIN_PHASE_RELAY:
            self.phase_cmd = bool(v)
            self._at("phase", self.contactor_close_ms)
        elif pin == circuit.PIN_RCD_TEST:
            on = bool(v)
            self.rcd_test_in = on
            self._rcd_test_eval()
        elif pin == circuit.PIN_METER_CS:
            self._meter_cs = v

    def _rcd_test_eval(self):
        on = self.rcd_test_in or self.rcd_test_stuck
        if on and not self.faults["rcd_selftest"]:
            self._cancel("rcd_release")
            if not self.rcd_test_trip:
                self._at("rcd_trip", self.rcd_trip_ms)
        else:
            self._cancel("rcd_trip")
            if self.rcd_test_trip:
                self._at("rcd_release", self.rcd_release_ms)

    def pin_readback(self, pin, out):
        if pin == circuit.PIN_RCD_TEST and self.rcd_test_stuck:
            return 1
        return out

    def pin_reader(self, pin):
        if pin == circuit.PIN_CONTACTOR_SENSE:
            return self.read_contactor_sense
        if pin == circuit.PIN_RCD_AC:
            return self.read_rcd_ac
        if pin == circuit.PIN_RCD_DC:
            return self.read_rcd_dc
        if pin == circuit.PIN_BUTTON:
            return self.read_button
        return self.read_zero

    def read_contactor_sense(self):
        self.sync_now()
        return 1 if self.contactor_closed and self.grid_on else 0

    def read_rcd_ac(self):
        self.sync_now()
        return 1 if self.faults["rcd_ac"] else 0

    def read_rcd_dc(self):
        self.sync_now()
        return 1 if self.faults["rcd_dc"] or self.rcd_test_trip else 0

    def read_button(self):
        self.sync_now()
        return 0 if self.button_down else 1

    def read_zero(self):
        return 0

    # -- analog -------------------------------------------------------------------------------------
    def adc_reader(self, pin):
        if pin == circuit.PIN_CP_ADC:
            return self.read_cp
        if pin == circuit.PIN_PP_ADC:
            return self.read_pp
        if pin == circuit.PIN_NTC_ADC:
            return self.read_ntc
        return self.read_zero

    def pp_ohms(self):
        ev = self.ev
        if not ev.plugged or ev.cable_a is None:
            return None
        return CABLE_OHMS[ev.cable_a]

    def read_pp(self):
        self.sync_now()
        r = self.pp_ohms()
        if r is None:
            uv = circuit.VREF_MV * 1000
        else:
            uv = circuit.VREF_MV * 1000 * r // (r + circuit.PP_PULLUP)
        uv += self._noise(3000)
        return max(0, min(ADC_MAX_UV, uv))

    def read_ntc(self):
        self.sync_now()
        self._integrate()
        t = 75.0 if self.faults["overtemp"] else self.temp_c
        r = ohms_for_temp_c(t, circuit.NTC_R25, circuit.NTC_BETA)
        uv = int(circuit.VREF_MV * 1000 * circuit.NTC_R_FIXED / (circuit.NTC_R_FIXED + r)) + self._noise(2000)
        return max(0, min(ADC_MAX_UV, uv))

    # -- SPI ----------------------------------------------------------------------------------------
    def spi_xfer(self, bus, wbuf, rbuf):
        self.sync_now()
        if bus == circuit.SPI_ID and self._meter_cs == 0:
            self._integrate()
            self._update_draw()
            self.meter.xfer(wbuf, rbuf)
        else:
            for k in range(len(rbuf)):
                rbuf[k] = 0xFF  # nobody drives MISO: pulled up

    # -- RFID ---------------------------------------------------------------------------------------
    def press_button(self, ms):
        self.button_down = True  # the front button, held for ms of board time
        self._at("button_up", ms)

    def present_tag(self, uid):
        self._tag = uid  # the reader delivers it once

    def pop_tag(self):
        t = self._tag
        self._tag = None
        return t
