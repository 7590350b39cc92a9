# Control pilot (CP) driver: 1 kHz +-12 V PWM out, burst-sampled plateau voltages in.
#
# The PWM pin drives the board's +-12 V output stage (through 1 kOhm to the CP line). The CP line is
# read by an ADC1 pin through a resistive divider with an offset (see PilotCal and docs/hardware.md),
# so that -12..+12 V lands inside the ADC's range.
#
# The duty for a current is the charging core's business (firmware/iec61851.py): the driver takes
# a duty in per mille, as a board-support layer gives it.
# Fast path (set_* while unchanged, sample()): integers only, allocates nothing.
from drivers.ticks import const

TYPE_CHECKING = False  # mypy treats this name as true: tools/typecheck.py checks machine calls
if TYPE_CHECKING:
    from machine import ADC, PWM  # noqa: F401  (used in type comments)

_FREQ_HZ = const(1000)
_BURST = const(100)  # ADC reads per sample(); must span >= 2 PWM periods at the port's read cost

# Plateau classification: nominal high-plateau voltage of A..E, entry window, keep window.
_STATES = ("A", "B", "C", "D", "E")
_NOM_STEP_MV = const(3000)  # nominal high plateaus 12, 9, 6, 3, 0 V (computed: a frozen tuple of such ints
# would hold big-int objects, and reading one allocates)
_ENTER_MV = const(1000)  # +-1 V (IEC 61851 tolerance)
_KEEP_MV = const(1300)  # hysteresis: a state is kept while within +-1.3 V of its nominal value
_F_MV = const(-12000)
_F_WIN_MV = const(1500)
# Diode check: with PWM on, the negative plateau must be about -12 V (J1772: -11.4..-12.6 V);
# a missing or shorted diode loads it to about -8.8 V (B) or -5.6 V (C).
_DIODE_LO_MV = const(-13000)
_DIODE_HI_MV = const(-11000)

MODE_PWM = "pwm"
MODE_HIGH = "high"
MODE_LOW = "low"
ST_A = "A"
ST_F = "F"
ST_X = "X"


class PilotCal:
    """Integer calibration of the CP sense circuit: cp_mv = (adc_mv * num - off) // den + trim_mv.

    The reference circuit (docs/hardware.md): CP -- R_series -- ADC node; node -- R_up -- Vref;
    node -- R_down -- GND. Solving the node equation gives
        Vcp = Vadc * (R2*R3 + R1*R3 + R1*R2) / (R2*R3) - Vref * R1 / R2.
    from_divider() reduces that to small integers (every intermediate < 2**30, so no big ints on
    the ESP32)."""

    def __init__(self, num, den, off, trim_mv=0):
        self.num = num
        self.den = den
        self.off = off
        self.trim_mv = trim_mv

    @classmethod
    def from_divider(cls, r_series, r_up, r_down, vref_mv, trim_mv=0):
        num = r_up * r_down + r_series * r_down + r_series * r_up
        den = r_up * r_down
        off = vref_mv * r_series * r_down
        g = _gcd(_gcd(num, den), off)
        num //= g
        den //= g
        off //= g
        # keep adc_mv * num (adc_mv <= 3300) and off inside small-int range
        while num * 3300 >= (1 << 29) or off >= (1 << 29) or den >= (1 << 20):
            num = (num + 1) >> 1
            den = (den + 1) >> 1
            off = (off + 1) >> 1
        return cls(num, den, off, trim_mv)

    def cp_mv(self, adc_mv):
        return (adc_mv * self.num - self.off) // self.den + self.trim_mv

    def adc_mv(self, cp_mv):
        """Inverse (slow path): the ADC voltage that a CP voltage produces."""
        return ((cp_mv - self.trim_mv) * self.den + self.off) // self.num


def _gcd(a, b):
    while b:
        a, b = b, a % b
    return a


class Pilot:
    """Control pilot: Pilot(pwm, adc, cal, burst=BURST, invert=False).

    pwm: machine.PWM on the CP output pin (freq 1 kHz, 16-bit duty). adc: machine.ADC (ADC1 pin,
    11 dB attenuation) reading the CP sense node; read_uv() is used (eFuse-calibrated on the ESP32).
    invert: the output stage inverts (a high GPIO gives -12 V)."""

    def __init__(self, pwm, adc, cal, burst=_BURST, invert=False):
        self.pwm = pwm  # type: PWM
        self.adc = adc  # type: ADC
        self.cal = cal
        self.burst = burst
        self.invert = invert
        self.state = ST_X
        self.high_mv = 0
        self.low_mv = 0
        self.diode_ok = None
        self.duty_pm = -1
        self.mode = ""
        self.samples = 0  # bursts taken (diagnostics)
        self._read = adc.read_uv  # bound once: taking a bound method allocates on MicroPython
        pwm.freq(_FREQ_HZ)
        self.set_high()

    # -- output ------------------------------------------------------------------------------
    def _duty(self, pm):
        if pm != self.duty_pm:
            self.duty_pm = pm
            u16 = pm * 65535 // 1000
            if self.invert:
                u16 = 65535 - u16
            self.pwm.duty_u16(u16)

    def set_duty_pm(self, pm):
        """1 kHz PWM at `pm` per mille; 1000 or more is steady +12 V (X1). Returns the duty set."""
        if pm >= 1000:
            self.set_high()
            return 1000
        self.mode = MODE_PWM
        self._duty(pm)
        return pm

    def set_high(self):
        self.mode = MODE_HIGH
        self._duty(1000)

    def set_low(self):
        self.mode = MODE_LOW
        self._duty(0)

    # -- input -------------------------------------------------------------------------------
    def sample(self):
        """One burst of ADC reads; updates state, high_mv, low_mv, diode_ok. Returns state."""
        read = self._read
        h1 = h2 = -1
        l1 = l2 = 1 << 29
        for _ in range(self.burst):
            v = read()
            if v > h2:
                if v > h1:
                    h2 = h1
                    h1 = v
                else:
                    h2 = v
            if v < l2:
                if v < l1:
                    l2 = l1
                    l1 = v
                else:
                    l2 = v
        self.samples += 1
        return self.classify(h2 // 1000, l2 // 1000)  # 2nd highest / 2nd lowest: one spike does not count

    def classify(self, high_adc_mv, low_adc_mv):
        """The plateaus seen at the ADC (mV) -> state, high_mv, low_mv, diode_ok. Returns state."""
        cal = self.cal
        hi = cal.cp_mv(high_adc_mv)
        lo = cal.cp_mv(low_adc_mv)
        self.high_mv = hi
        self.low_mv = lo
        self.state = self._state_of(hi)
        if self.mode == MODE_PWM:
            self.diode_ok = _DIODE_LO_MV <= lo <= _DIODE_HI_MV
        else:
            self.diode_ok = None
        return self.state

    def _state_of(self, mv):
        prev = self.state
        if _F_MV - _F_WIN_MV <= mv <= _F_MV + _F_WIN_MV:
            return ST_F
        for i in range(5):
            d = mv - (12000 - i * _NOM_STEP_MV)
            if d < 0:
                d = -d
            if d <= _ENTER_MV:
                return _STATES[i]
            if d <= _KEEP_MV and prev == _STATES[i]:
                return prev
        return ST_X
