# The reference ESP32 board: builds the drivers on the real `machine` peripherals.
# Pin map and component values: board/circuit.py and docs/hardware.md. Imports `machine`: device only.
# The drivers and the board-support interface are built in board/support.py.
import time

import machine

from board import circuit
from board.support import BoardSupport

WDT_TIMEOUT_MS = 8000

_RESET_CAUSES = {
    machine.PWRON_RESET: "power_on",
    machine.HARD_RESET: "hard",
    machine.WDT_RESET: "watchdog",
    machine.SOFT_RESET: "soft",
    machine.DEEPSLEEP_RESET: "unknown",
}


class Board(BoardSupport):
    def __init__(self, serial=None, tethered_a=None, wdt=True, storage_root="/flash"):
        self.tethered_a = tethered_a
        self.storage_root = storage_root
        if serial is None:
            uid = machine.unique_id()
            serial = "EVSE" + "".join("%02X" % b for b in uid[-3:])
        self.serial = serial
        self._reset_cause = _RESET_CAUSES.get(machine.reset_cause(), "unknown")
        # the watchdog first: everything after this must keep feeding it
        self.wdt = machine.WDT(timeout=WDT_TIMEOUT_MS) if wdt else _NoWdt()
        BoardSupport.__init__(self, machine, circuit.HW_MAX_A, circuit.PHASES, socket=tethered_a is None)

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
