# Runs first on the device. Keeps the contactor off, decides on safe mode, starts the watchdog early
# so that a hang anywhere before the app's loop resets the board.
#
# Safe mode (no app, no watchdog, REPL free for mpremote): hold the BOOT button (GPIO0) during reset,
# or create /safe_mode, or crash three boots in a row (main.py counts them in /crashes).
import machine
import os

try:
    from board.circuit import PIN_CONTACTOR

    machine.Pin(PIN_CONTACTOR, machine.Pin.OUT, value=0)  # contactor drive off before anything else
except ImportError:  # no image deployed yet: the board's pull-down keeps the coil off
    pass


def _safe_mode():
    if machine.Pin(0, machine.Pin.IN, machine.Pin.PULL_UP).value() == 0:
        return True
    try:
        os.stat("/safe_mode")
        return True
    except OSError:
        pass
    try:
        with open("/crashes") as f:
            return int(f.read() or 0) >= 3
    except (OSError, ValueError):
        return False


SAFE_MODE = _safe_mode()
if not SAFE_MODE:
    machine.WDT(timeout=8000)
