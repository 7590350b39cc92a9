# What the two network links share (firmware/link.py: MQTT; firmware/ws.py: WebSocket for OCPP):
# the blocking I/O runs in a thread of its own, the control loop only touches lock-protected state,
# and a lost connection comes back after an exponential, jittered back-off. A subclass provides
# _lock, _in, _running, _stop, _connected, _connect_count, log, stack_size, _flag() and _run().
import sys
import time

try:
    import _thread
except ImportError:  # CPython without the MicroPython module: only the queues are usable
    _thread = None

from firmware.ticks import ticks_add, ticks_diff, ticks_ms


def _rand16():
    try:
        import os

        b = os.urandom(2)
        return b[0] << 8 | b[1]
    except (ImportError, AttributeError, OSError):
        import random

        return random.getrandbits(16)


def backoff_ms(attempt, lo, hi, r=None):
    """Delay before reconnect attempt number `attempt` (0 = first retry): exponential, capped,
    with jitter in [d/2, d] so that a fleet that lost its server does not come back in step."""
    d = lo
    for _ in range(attempt):
        d *= 2
        if d >= hi:
            d = hi
            break
    if r is None:
        r = _rand16()
    return d // 2 + (d // 2) * r // 65535


def _nap(ms):
    if hasattr(time, "sleep_ms"):
        time.sleep_ms(ms)
    else:
        time.sleep(ms / 1000)


class LinkThread:
    stack_size = 0

    # ---- the control thread's side -------------------------------------------------------------
    def start(self):
        with self._lock:
            if self._running:
                return
            self._running = True
            self._stop = False
        if sys.platform == "esp32" and self.stack_size:
            old = _thread.stack_size(self.stack_size)  # mbedTLS needs room in the thread's stack
            _thread.start_new_thread(self._run, ())
            _thread.stack_size(old)
        else:
            _thread.start_new_thread(self._run, ())

    @property
    def connected(self):
        with self._lock:
            return self._connected

    @property
    def connect_count(self):
        with self._lock:
            return self._connect_count

    def get(self):
        """The oldest received message (what the subclass queues in _in), or None."""
        with self._lock:
            if self._in:
                return self._in.pop(0)
        return None

    def stop(self):
        """Stop the thread without a goodbye (tests)."""
        with self._lock:
            self._stop = True

    def _wait_stopped(self, start, timeout_ms, idle):
        """After a shutdown request: wait until the thread ends, at most timeout_ms from start,
        calling idle() every ~10 ms (the app keeps its fast tick there); then stop it for good.
        True when it ended in time."""
        ended = False
        while ticks_diff(ticks_ms(), start) < timeout_ms:
            with self._lock:
                if not self._running:
                    ended = True
                    break
            if idle is not None:
                idle()
            _nap(10)
        with self._lock:
            self._stop = True
        return ended

    # ---- the link thread's side ------------------------------------------------------------------
    def _say(self, *args):
        if self.log:
            try:
                self.log(" ".join(str(a) for a in args))
            except Exception:  # noqa: BLE001  a log that fails must not stop the link
                pass

    def _sleep(self, ms):
        """Back-off wait in small slices; True when asked to stop meanwhile."""
        end = ticks_add(ticks_ms(), ms)
        while ticks_diff(end, ticks_ms()) > 0:
            if self._flag() is not None:
                return True
            _nap(50)
        return False
