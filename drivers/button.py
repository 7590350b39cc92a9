# Debounced push button with long press. poll(now_ms) -> None, 'short' (released before long_ms,
# and within short_max_ms when that is set) or 'long' (reported once while still held, when held for
# long_ms). A release between short_max_ms and long_ms is nothing: the user let go of a long press.
# held_ms(now_ms) says how long the debounced press has lasted (0 when released). Allocates nothing.
from drivers.ticks import ticks_diff

TYPE_CHECKING = False  # mypy treats this name as true: tools/typecheck.py checks machine calls
if TYPE_CHECKING:
    from machine import Pin  # noqa: F401  (used in type comments)

SHORT = "short"
LONG = "long"


class Button:
    def __init__(self, pin, active_low=True, debounce_ms=30, long_ms=2000, short_max_ms=None):
        self.pin = pin  # type: Pin
        self._down_level = 0 if active_low else 1
        self.debounce_ms = debounce_ms
        self.long_ms = long_ms
        self.short_max_ms = long_ms if short_max_ms is None else short_max_ms
        self.pressed = False  # debounced state
        self._raw = False
        self._t_raw = 0
        self._t_down = 0
        self._long_sent = False

    def poll(self, now_ms):
        raw = self.pin.value() == self._down_level
        if raw != self._raw:
            self._raw = raw
            self._t_raw = now_ms
            return None
        if raw != self.pressed and ticks_diff(now_ms, self._t_raw) >= self.debounce_ms:
            self.pressed = raw
            if raw:
                self._t_down = now_ms
                self._long_sent = False
            elif not self._long_sent and ticks_diff(now_ms, self._t_down) <= self.short_max_ms:
                return SHORT  # both edges are seen debounce_ms late: the difference is the press
            return None
        if self.pressed and not self._long_sent and ticks_diff(now_ms, self._t_down) >= self.long_ms:
            self._long_sent = True
            return LONG
        return None

    def held_ms(self, now_ms):
        return ticks_diff(now_ms, self._t_down) if self.pressed else 0
