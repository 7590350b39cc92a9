# The simulated board: the SAME driver classes as board/esp32_ref.py, built on fakes of the ESP32
# `machine` API (board/sim/machine.py) that are bound to a plant (board/sim/plant.py).
# Runs on CPython and on the MicroPython unix port.
from board import circuit as C
from board.sim import machine
from board.sim.plant import Plant
from drivers.atm90e32 import ATM90E32
from drivers.button import Button
from drivers.contactor import Contactor
from drivers.ntc import NTC
from drivers.pilot import Pilot
from drivers.proximity import Proximity
from drivers.rcd import RCD
from drivers.status_led import StatusLed

RESET_EXIT_CODE = 75


class SimRfid:
    """RFID reader of the simulator: delivers the last `tag` op once."""

    def __init__(self, plant):
        self._plant = plant

    def poll(self):
        return self._plant.pop_tag()


class SimBoard:
    def __init__(self, clock, plant=None, serial="SIM0001", reset_cause="power_on", storage_root="build/sim/flash",
                 tethered_a=None, hw_max_a=C.HW_MAX_A, phases=C.PHASES):
        if plant is None:
            plant = Plant()
        plant.attach_clock(clock)
        machine.bind(plant)
        self.clock = clock
        self.plant = plant
        self.serial = serial
        self._reset_cause = reset_cause
        self.storage_root = storage_root
        self.hw_max_a = hw_max_a
        self.phases = phases
        self._tethered_a = tethered_a
        Pin = machine.Pin
        ADC = machine.ADC

        pwm = machine.PWM(Pin(C.PIN_CP_PWM, Pin.OUT), freq=1000, duty_u16=65535)
        self.pilot = Pilot(pwm, ADC(Pin(C.PIN_CP_ADC), atten=ADC.ATTN_11DB), C.pilot_cal())
        if tethered_a is None:
            self.pp = Proximity(ADC(Pin(C.PIN_PP_ADC), atten=ADC.ATTN_11DB), C.PP_PULLUP, C.VREF_MV)
        else:
            self.pp = None
        self.contactor = Contactor(
            Pin(C.PIN_CONTACTOR, Pin.OUT, value=0),
            Pin(C.PIN_CONTACTOR_SENSE, Pin.IN),
            C.CONTACTOR_ACTUATION_MS,
            phase_pin=Pin(C.PIN_PHASE_RELAY, Pin.OUT, value=1) if phases == 3 else None,
        )
        spi = machine.SPI(C.SPI_ID, baudrate=C.SPI_BAUD, polarity=C.SPI_POLARITY, phase=C.SPI_PHASE,
                          sck=Pin(C.PIN_SPI_SCK), mosi=Pin(C.PIN_SPI_MOSI), miso=Pin(C.PIN_SPI_MISO))
        self.meter = ATM90E32(spi, Pin(C.PIN_METER_CS, Pin.OUT, value=1), C.METER_UGAIN, C.METER_IGAIN)
        self.rcd = RCD(Pin(C.PIN_RCD_AC, Pin.IN, Pin.PULL_DOWN), Pin(C.PIN_RCD_DC, Pin.IN, Pin.PULL_DOWN),
                       Pin(C.PIN_RCD_TEST, Pin.OUT, value=0), True)
        self.temp = NTC(ADC(Pin(C.PIN_NTC_ADC), atten=ADC.ATTN_11DB), C.NTC_R_FIXED, C.NTC_R25, C.NTC_BETA,
                        C.VREF_MV)
        self.rfid = SimRfid(plant)
        self.led = StatusLed(Pin(C.PIN_LED, Pin.OUT, value=0))
        self.button = Button(Pin(C.PIN_BUTTON, Pin.IN, Pin.PULL_UP))
        self.wdt = machine.WDT(timeout=10000)

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
