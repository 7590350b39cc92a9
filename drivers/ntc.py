# NTC thermistor on an ADC1 pin (slow path; floats allowed).
#
# Reference circuit: NTC from Vref to the ADC node, R_fixed from the node to GND (ntc_high=True):
#   Vadc = Vref * R_fixed / (R_fixed + R_ntc)  ->  hot reads high, where the ESP32 ADC is accurate.
# With ntc_high=False the NTC is the low side: Vadc = Vref * R_ntc / (R_fixed + R_ntc).
# Beta equation: 1/T = 1/T25 + ln(R/R25) / B.
# An open sensor drives the node to one rail, a shorted one to the other: read() returns None and
# sets `fault` to 'open' or 'short'.
import math

from drivers.analog import read_mv

TYPE_CHECKING = False  # mypy treats this name as true: tools/typecheck.py checks machine calls
if TYPE_CHECKING:
    from machine import ADC  # noqa: F401  (used in type comments)

OPEN = "open"
SHORT = "short"


class NTC:
    def __init__(self, adc, r_fixed=4700, r25=10000, beta=3950, vref_mv=3300, ntc_high=True,
                 rail_mv=40, reads=4):
        self.adc = adc  # type: ADC
        self.r_fixed = r_fixed
        self.r25 = r25
        self.beta = beta
        self.vref_mv = vref_mv
        self.ntc_high = ntc_high
        self.rail_mv = rail_mv  # within this of a rail = open/short
        self.reads = reads
        self.fault = None
        self.temp_dc = None
        self.ohms = None
        self.mv = 0

    def read(self):
        """Temperature in deci-degrees C (int), or None with `fault` 'open' / 'short'."""
        mv = read_mv(self.adc, self.reads)
        self.mv = mv
        # ESP32's ADC saturates near 3.1 V at 11 dB: treat >= Vref - 200 mV - rail_mv as the top rail
        top = self.vref_mv - 200 - self.rail_mv
        low_rail = mv <= self.rail_mv
        high_rail = mv >= top
        if low_rail or high_rail:
            # NTC high side: 0 V = NTC open, top = NTC shorted; the other way round on the low side
            if self.ntc_high:
                self.fault = OPEN if low_rail else SHORT
            else:
                self.fault = SHORT if low_rail else OPEN
            self.temp_dc = None
            self.ohms = None
            return None
        if self.ntc_high:
            r = self.r_fixed * (self.vref_mv - mv) / mv
        else:
            r = self.r_fixed * mv / (self.vref_mv - mv)
        self.ohms = int(r)
        inv_t = 1.0 / 298.15 + math.log(r / self.r25) / self.beta
        t_c = 1.0 / inv_t - 273.15
        self.fault = None
        self.temp_dc = int(round(t_c * 10))
        return self.temp_dc


def ohms_for_temp_c(t_c, r25=10000, beta=3950):
    """Thermistor resistance at t_c (for simulation and tests)."""
    return r25 * math.exp(beta * (1.0 / (t_c + 273.15) - 1.0 / 298.15))
