# Status LED: one pin, a blink pattern per charger mode. update(now_ms) is cheap and allocates nothing.
from drivers.ticks import ticks_diff

TYPE_CHECKING = False  # mypy treats this name as true: tools/typecheck.py checks machine calls
if TYPE_CHECKING:
    from machine import Pin  # noqa: F401  (used in type comments)

# mode -> (on_ms, off_ms); off_ms 0 = steady on, on_ms 0 = off
_PATTERNS = {
    "disconnected": (50, 2950),
    "connected_requesting": (500, 500),
    "connected_charging": (1000, 0),
    "connected_finished": (1500, 500),
    "fault": (100, 100),
    "disabled": (0, 1000),
}
_DEFAULT = (200, 800)


class StatusLed:
    def __init__(self, pin, active_high=True):
        self.pin = pin  # type: Pin
        self._on = 1 if active_high else 0
        self.mode = None
        self._on_ms, self._off_ms = _DEFAULT
        self._t0 = 0
        self.lit = False
        pin.value(1 - self._on)

    def set_mode(self, mode, now_ms=0):
        if mode == self.mode:
            return
        self.mode = mode
        self._on_ms, self._off_ms = _PATTERNS.get(mode, _DEFAULT)
        self._t0 = now_ms

    def update(self, now_ms):
        on_ms = self._on_ms
        off_ms = self._off_ms
        if on_ms == 0:
            lit = False
        elif off_ms == 0:
            lit = True
        else:
            lit = ticks_diff(now_ms, self._t0) % (on_ms + off_ms) < on_ms
        if lit != self.lit:
            self.lit = lit
            self.pin.value(self._on if lit else 1 - self._on)
