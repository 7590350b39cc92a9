# What a Station (firmware/station.py) takes from a board, for the tests that run a real Station
# without a simulated board: capabilities, a meter with fixed readings, the reset cause and the
# time. Both runtimes.
HW = 32


class Meter:
    """A meter with fixed readings (what Station.meter_read takes from a board's meter)."""

    def __init__(self, energy_wh=1000, v_v=(230.1, 229.8, 231.0)):
        self.v_v = list(v_v)
        self.i_a = [0.0, 0.0, 0.0]
        self.i_da = [0, 0, 0]
        self.p_w = 0
        self.energy_wh = energy_wh
        self.ok = True


class BoardCaps:
    """What a Station takes from a board: capabilities, a meter with fixed readings, the reset
    cause and the time."""

    hw_max_a = HW
    phases = 3
    tethered_a = None

    def __init__(self, reset_cause="power_on", energy_wh=1000, unix_time=1763712000):
        self.meter = Meter(energy_wh)
        self._reset_cause = reset_cause
        self._unix = unix_time  # None: a board that does not know the time

    def reset_cause(self):
        return self._reset_cause

    def unix_time(self):
        return self._unix
