# Clocks for the simulated board. Both give ticks_ms()/ticks_us() with the port's wrap semantics
# (firmware.ticks) and sleep_ms(); VirtualClock only moves when told to, so hours of charging run in
# milliseconds and tests are deterministic.
from firmware.ticks import PERIOD, ticks_add

_MASK = PERIOD - 1


class VirtualClock:
    """Virtual time. start_ms may be any ticks value, e.g. just before the wrap (PERIOD - 1000)."""

    def __init__(self, start_ms=0):
        self._now = start_ms & _MASK
        self._us = 0  # microseconds within the current millisecond
        self.elapsed_ms = 0  # total virtual time advanced (not wrapped)

    def ticks_ms(self):
        return self._now

    def ticks_us(self):
        # same period as ticks_ms, as on the ports
        return (self._now * 1000 + self._us) & _MASK

    def advance(self, ms):
        if ms < 0:
            raise ValueError("time only goes forward")
        self._now = ticks_add(self._now, ms)
        self.elapsed_ms += ms

    def advance_us(self, us):
        us += self._us
        self._us = us % 1000
        if us >= 1000:
            self.advance(us // 1000)

    def sleep_ms(self, ms):
        if ms > 0:
            self.advance(ms)

    def sleep_us(self, us):
        if us > 0:
            self.advance_us(us)


class RealClock:
    """Real time (the simulator run interactively)."""

    def __init__(self):
        import time

        self._time = time
        self._mp = hasattr(time, "ticks_ms")

    def ticks_ms(self):
        if self._mp:
            return self._time.ticks_ms()
        from firmware.ticks import ticks_ms

        return ticks_ms()

    def ticks_us(self):
        if self._mp:
            return self._time.ticks_us()
        return int(self._time.monotonic() * 1000000) & _MASK

    def sleep_ms(self, ms):
        if ms <= 0:
            return
        if self._mp:
            self._time.sleep_ms(ms)
        else:
            self._time.sleep(ms / 1000)

    def sleep_us(self, us):
        if us <= 0:
            return
        if self._mp:
            self._time.sleep_us(us)
        else:
            self._time.sleep(us / 1000000)

    def advance(self, ms):
        self.sleep_ms(ms)
