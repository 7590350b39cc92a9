# The simulated board's hardware watchdog, as tools/sim-charger (the "hardware") keeps it: when the
# supervisor sets SIM_WDT_FILE, start() arms it with a timeout and feed() touches the file at most
# every FEED_EVERY_MS; a file older than the timeout makes the supervisor reset the firmware (SIGKILL,
# restart with reset cause `watchdog`), as the ESP32's watchdog does. Without SIM_WDT_FILE (tests in
# virtual time, the one-process fleet) nothing is kept. feed() allocates nothing: the fast loop feeds.
import os

from firmware.ticks import ticks_diff, ticks_ms

FEED_EVERY_MS = 200
_f = None
_stamp = b""  # the timeout in ms, written by every feed
_last = 0


def start(timeout_ms):
    """machine.WDT(timeout=...): arms the watchdog, or changes its timeout."""
    global _f, _stamp, _last
    path = os.getenv("SIM_WDT_FILE")
    if not path:
        return
    if _f is None:
        _f = open(path, "wb")
    _stamp = ("%d\n" % timeout_ms).encode()
    _last = ticks_ms()
    _write()


def feed():
    global _last
    if _f is None:
        return
    now = ticks_ms()
    if ticks_diff(now, _last) >= FEED_EVERY_MS:
        _last = now
        _write()


def _write():
    _f.seek(0)
    _f.write(_stamp)
    _f.flush()
