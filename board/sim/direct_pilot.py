# The pilot driver with its ADC burst replaced by the plant's plateau voltages: the same outputs,
# calibration, classification and diode check as drivers/pilot.py, without the 100 simulated ADC
# conversions per sample. For tests that run the charging core for millions of ticks against the
# simulator's vehicle (host_tests/charger_rig.py); the firmware's own runs keep the real burst.
from drivers.pilot import Pilot


class DirectPilot(Pilot):
    def __init__(self, pwm, adc, cal, plant):
        self._plant = plant
        Pilot.__init__(self, pwm, adc, cal)

    def sample(self):
        p = self._plant
        self.samples += 1
        return self.classify(p.cp_plateau_uv(True) // 1000, p.cp_plateau_uv(False) // 1000)
