# Hand-built fakes of machine peripherals for driver edge cases (both runtimes).


class FakePin:
    def __init__(self, level=0):
        self.level = level
        self.writes = []
        self.stuck = None  # a level the pin reads whatever is written

    def value(self, x=None):
        if x is None:
            return self.level if self.stuck is None else self.stuck
        self.level = 1 if x else 0
        self.writes.append(self.level)
        return None


class FakePWM:
    def __init__(self):
        self.f = None
        self.duty = None

    def freq(self, f=None):
        if f is None:
            return self.f
        self.f = f

    def duty_u16(self, d=None):
        if d is None:
            return self.duty
        self.duty = d


class SeqADC:
    """Returns the values of `seq` (uV) in turn, cyclically."""

    def __init__(self, seq):
        self.seq = seq
        self.i = 0

    def read_uv(self):
        v = self.seq[self.i]
        self.i = (self.i + 1) % len(self.seq)
        return v


def pwm_wave(cal, high_mv, low_mv, duty_pm, n=100, conv_us=25, period_us=1000, noise_mv=0, seed=7):
    """ADC samples (uV) of a CP waveform as the board's divider presents it."""
    hi_us = duty_pm * period_us // 1000
    hi = cal.adc_mv(high_mv) * 1000
    lo = cal.adc_mv(low_mv) * 1000
    out = []
    x = seed
    for k in range(n):
        t = (k * conv_us) % period_us
        v = hi if t < hi_us else lo
        if noise_mv:
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF
            v += (x >> 8) % (2 * noise_mv * 70 + 1) - noise_mv * 70  # ~70 uV at the ADC per CP mV
        out.append(v)
    return out
