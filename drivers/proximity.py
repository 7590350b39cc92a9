# Proximity pilot (PP) of a Type 2 socket: the cable's coding resistor between PP and PE, read
# through the board's pull-up to Vref with an ADC1 pin.
#
#   Vadc = Vref * R / (R + R_pullup)  ->  R = R_pullup * Vadc / (Vref - Vadc)
# IEC 61851-1 / 62196: <75 Ohm invalid; 100 Ohm 63 A; 220 Ohm 32 A; 680 Ohm 20 A; 1.5 kOhm 13 A;
# above 2.2 kOhm no cable. Slow path (called a few times a second).

from drivers.analog import read_mv
from drivers.ticks import const

TYPE_CHECKING = False  # mypy treats this name as true: tools/typecheck.py checks machine calls
if TYPE_CHECKING:
    from machine import ADC  # noqa: F401  (used in type comments)

_OPEN_OHMS = const(1000000)

# (upper bound in Ohm, capacity in A)
_BANDS = ((75, -1), (150, 63), (330, 32), (1000, 20), (2200, 13))


def amps_for_ohms(ohms):
    for limit, amps in _BANDS:
        if ohms < limit:
            return amps
    return 0


class Proximity:
    def __init__(self, adc, pullup_ohm=1000, vref_mv=3300, reads=4):
        self.adc = adc  # type: ADC
        self.pullup_ohm = pullup_ohm
        self.vref_mv = vref_mv
        self.reads = reads
        self.ohms = _OPEN_OHMS
        self.amps = 0
        self.mv = 0

    def read(self):
        """Cable capacity in A (13/20/32/63), 0 = no cable, -1 = invalid (< 75 Ohm)."""
        mv = read_mv(self.adc, self.reads)
        self.mv = mv
        span = self.vref_mv - mv
        if span <= 20:  # at the rail: nothing connected
            ohms = _OPEN_OHMS
        else:
            ohms = self.pullup_ohm * mv // span
            if ohms > _OPEN_OHMS:
                ohms = _OPEN_OHMS
        self.ohms = ohms
        self.amps = amps_for_ohms(ohms)
        return self.amps
