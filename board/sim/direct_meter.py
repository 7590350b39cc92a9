# The ATM90E32 driver with its SPI register frames replaced by the plant's own voltages, currents and
# energy: the same outputs (v_v, i_a, i_da, p_w, energy_wh never decreasing, ok / error) as
# drivers/atm90e32.py, without the ~17 simulated SPI frames, the register model and its CRC per read
# (about 2.5 ms each on the unix port). For the one-process fleet (board/sim/fleet.py), where a
# thousand meters are read once a second; the firmware's own runs keep the register-level model.
from drivers.atm90e32 import ATM90E32


class DirectMeter(ATM90E32):
    def __init__(self, spi, cs, plant):
        self._plant = plant
        self._base_wh = 0
        self._e0 = 0.0
        ATM90E32.__init__(self, spi, cs)

    def begin(self):
        self.ok = True
        self.error = None
        self._last_ms = None
        return True

    def set_energy_wh(self, wh):
        self.energy_wh = int(wh)
        self._base_wh = int(wh)
        self._e0 = self._plant.energy_wh

    def _read(self, now_ms):
        p = self._plant
        p.update()  # catch up with the clock, integrate the energy, follow the vehicle
        v = p.meter.v
        i = p.meter.i
        pw = 0.0
        for ph in range(3):
            self.v_v[ph] = v[ph]
            self.i_a[ph] = i[ph]
            self.i_da[ph] = int(i[ph] * 10 + 0.5)
            pw += v[ph] * i[ph]
        self.p_w = int(pw)
        self.freq_hz = 50.0
        e = self._base_wh + int(p.energy_wh - self._e0)
        if e > self.energy_wh:
            self.energy_wh = e
        self._last_ms = now_ms
        return None
