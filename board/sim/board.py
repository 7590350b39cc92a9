# The simulated board: the board support of board/support.py (the same drivers as
# board/esp32_ref.py) built on fakes of the ESP32 `machine` API (board/sim/machine.py) that are
# bound to a plant (board/sim/plant.py).
# Runs on CPython and on the MicroPython unix port.
from board import circuit
from board.sim import machine
from board.sim.neopixel import NeoPixel
from board.sim.plant import Plant
from board.support import BoardSupport

RESET_EXIT_CODE = 75


class TwinReader:
    """The PN532 driver on the reader's frame-level twin (board/sim/pn532_sim.py), fed by the `tag`
    op (plant.pop_tag). Both are built at the first poll: their code and buffers (about 20 KB of the
    unix port's heap) then stay out of the driver tests that build a SimBoard for another driver
    within the 112 KB test heap; the app polls from its first slow work on. A chip made beforehand
    (SimBoard rfid_chip) is used instead: the bench counts the simulator's heap apart that way."""

    def __init__(self, board, chip=None):
        self._board = board
        self.driver = None
        self.chip = chip
        self.fault = None

    def poll(self, now_ms):
        d = self.driver
        if d is None:
            from board.sim.pn532_sim import PN532Sim
            from drivers.pn532 import PN532

            if self.chip is None:
                b = self._board
                self.chip = PN532Sim(b.clock, tag_source=b.plant.pop_tag)
            d = self.driver = PN532(self.chip.uart)
        uid = d.poll(now_ms)
        self.fault = d.fault
        return uid


class SimBoard(BoardSupport):
    def __init__(self, clock, plant=None, serial="SIM0001", reset_cause="power_on", storage_root="build/sim/flash",
                 tethered_a=None, hw_max_a=circuit.HW_MAX_A, phases=circuit.PHASES, direct_pilot=False,
                 unix_time=None, rfid_chip=None):
        if plant is None:
            plant = Plant()
        plant.attach_clock(clock)
        machine.bind(plant)
        self.clock = clock
        self.plant = plant
        self.serial = serial
        self._reset_cause = reset_cause
        self.storage_root = storage_root
        self._tethered_a = tethered_a
        self._rfid_chip = rfid_chip
        if unix_time is not None:  # the host's clock stands in for NTP: `ts` fields are known
            self.unix_time = unix_time
        BoardSupport.__init__(self, machine, hw_max_a, phases, socket=tethered_a is None)
        if direct_pilot:  # long core tests: plateaus straight from the plant (board/sim/direct_pilot.py)
            from board.sim.direct_pilot import DirectPilot

            self.pilot = DirectPilot(self.pilot.pwm, self.pilot.adc, circuit.pilot_cal(), plant)
        self.wdt = machine.WDT(timeout=10000)

    def make_rfid(self, machine):
        return TwinReader(self, self._rfid_chip)

    def make_pixels(self, pin):
        return NeoPixel(pin, circuit.LED_PIXELS)

    @property
    def tethered_a(self):
        """Cable rating of a tethered cable, None with a socket. A board built with tethered_a is
        tethered for good; otherwise a vehicle plugged with `cable_a: null` (the contract's sim op)
        comes on the board's own tethered cable, rated at the hardware maximum."""
        if self._tethered_a is not None:
            return self._tethered_a
        ev = self.plant.ev
        return self.hw_max_a if ev.plugged and ev.cable_a is None else None

    def ticks_ms(self):
        return self.clock.ticks_ms()

    def ticks_us(self):
        return self.clock.ticks_us()

    def sleep_ms(self, ms):
        self.clock.sleep_ms(ms)

    def reset_cause(self):
        return self._reset_cause

    def reset(self):
        raise SystemExit(RESET_EXIT_CODE)
