# The reference ESP32 board: builds the drivers on the real `machine` peripherals.
# Pin map and component values: board/circuit.py and docs/hardware.md. Imports `machine`: device only.
import time

import machine
from machine import ADC, PWM, SPI, Pin

from board import circuit as C
from drivers.atm90e32 import ATM90E32
from drivers.button import Button
from drivers.contactor import Contactor
from drivers.ntc import NTC
from drivers.pilot import Pilot
from drivers.proximity import Proximity
from drivers.rcd import RCD
from drivers.status_led import StatusLed

WDT_TIMEOUT_MS = 8000

_RESET_CAUSES = {
    machine.PWRON_RESET: "power_on",
    machine.HARD_RESET: "hard",
    machine.WDT_RESET: "watchdog",
    machine.SOFT_RESET: "soft",
    machine.DEEPSLEEP_RESET: "unknown",
}


class NoRfid:
    """Placeholder until a reader driver (e.g. PN532 / MFRC522) exists: never sees a tag."""

    def poll(self):
        return None


def _adc(pin_no):
    adc = ADC(Pin(pin_no), atten=ADC.ATTN_11DB)  # ~0.15..2.45 V linear, eFuse-calibrated read_uv()
    return adc


class Board:
    def __init__(self, serial=None, tethered_a=None, wdt=True, storage_root="/flash"):
        self.hw_max_a = C.HW_MAX_A
        self.phases = C.PHASES
        self.tethered_a = tethered_a
        self.storage_root = storage_root
        if serial is None:
            uid = machine.unique_id()
            serial = "EVSE" + "".join("%02X" % b for b in uid[-3:])
        self.serial = serial
        self._reset_cause = _RESET_CAUSES.get(machine.reset_cause(), "unknown")
        # the watchdog first: everything after this must keep feeding it
        self.wdt = machine.WDT(timeout=WDT_TIMEOUT_MS) if wdt else _NoWdt()

        pwm = PWM(Pin(C.PIN_CP_PWM, Pin.OUT), freq=1000, duty_u16=65535)  # start at steady +12 V (A/X1)
        self.pilot = Pilot(pwm, _adc(C.PIN_CP_ADC), C.pilot_cal())
        self.pp = None if tethered_a is not None else Proximity(_adc(C.PIN_PP_ADC), C.PP_PULLUP, C.VREF_MV)
        self.contactor = Contactor(
            Pin(C.PIN_CONTACTOR, Pin.OUT, value=0),
            Pin(C.PIN_CONTACTOR_SENSE, Pin.IN),  # GPIO35: input only, external pull-up on the board
            C.CONTACTOR_ACTUATION_MS,
            phase_pin=Pin(C.PIN_PHASE_RELAY, Pin.OUT, value=1) if C.PHASES == 3 else None,
        )
        spi = SPI(C.SPI_ID, baudrate=C.SPI_BAUD, polarity=C.SPI_POLARITY, phase=C.SPI_PHASE,
                  sck=Pin(C.PIN_SPI_SCK), mosi=Pin(C.PIN_SPI_MOSI), miso=Pin(C.PIN_SPI_MISO))
        self.meter = ATM90E32(spi, Pin(C.PIN_METER_CS, Pin.OUT, value=1), C.METER_UGAIN, C.METER_IGAIN)
        self.rcd = RCD(Pin(C.PIN_RCD_AC, Pin.IN, Pin.PULL_DOWN), Pin(C.PIN_RCD_DC, Pin.IN, Pin.PULL_DOWN),
                       Pin(C.PIN_RCD_TEST, Pin.OUT, value=0), True)
        self.temp = NTC(_adc(C.PIN_NTC_ADC), C.NTC_R_FIXED, C.NTC_R25, C.NTC_BETA, C.VREF_MV)
        self.rfid = NoRfid()
        self.led = StatusLed(Pin(C.PIN_LED, Pin.OUT, value=0))
        self.button = Button(Pin(C.PIN_BUTTON, Pin.IN, Pin.PULL_UP))

    _time_ok = False
    # time.time() counts from 2000 on some ports and builds, from 1970 on others
    _EPOCH_OFFSET = 946684800 if time.gmtime(0)[0] == 2000 else 0

    def sync_time(self):
        """Set the RTC from NTP (blocking: call it from the network thread). Raises on failure."""
        import ntptime

        ntptime.settime()
        self._time_ok = True

    def unix_time(self):
        """Unix seconds once NTP has set the clock, else None (the contract's `ts: null`)."""
        return int(time.time()) + self._EPOCH_OFFSET if self._time_ok else None

    def ticks_ms(self):
        return time.ticks_ms()

    def ticks_us(self):
        return time.ticks_us()

    def sleep_ms(self, ms):
        time.sleep_ms(ms)

    def reset_cause(self):
        return self._reset_cause

    def reset(self):
        machine.reset()


class _NoWdt:
    def feed(self):
        pass
