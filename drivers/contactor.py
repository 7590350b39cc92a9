# Contactor driver with load-side feedback.
#
# drive: machine.Pin (OUT) switching the contactor coil (through a transistor / relay driver).
# sense: machine.Pin (IN) from the load-side voltage detector (optocoupler across an output phase,
#        RC-filtered so that it reads steady while the output is live) or an auxiliary contact.
# phase_pin (optional): a second relay that connects L2/L3 (3 phases when energised, L1 only when
#        not). It is only switched while the main contactor is open.
#
# Fast path: update() allocates nothing.
from drivers.ticks import ticks_diff

TYPE_CHECKING = False  # mypy treats this name as true: tools/typecheck.py checks machine calls
if TYPE_CHECKING:
    from machine import Pin  # noqa: F401  (used in type comments)

WELDED = "contactor_welded"
STUCK_OPEN = "contactor_stuck_open"


class Contactor:
    def __init__(self, drive, sense, actuation_ms=100, sense_active_high=True, drive_active_high=True,
                 phase_pin=None, phases=3):
        self.drive = drive  # type: Pin
        self.sense = sense  # type: Pin
        self.actuation_ms = actuation_ms
        self._sense_hi = 1 if sense_active_high else 0
        self._drive_hi = 1 if drive_active_high else 0
        self.phase_pin = phase_pin  # type: Pin | None
        self.commanded = False
        self.closed = False
        self.fault = None
        self.phases = phases if phase_pin is not None else 3
        self._t_cmd = 0
        self._settled = True  # actuation time since the last command has passed
        self.switch_count = 0
        drive.value(1 - self._drive_hi)
        if phase_pin is not None:
            phase_pin.value(1 if self.phases == 3 else 0)

    def set(self, on, now_ms):
        """Command the contactor; the sense line is checked after actuation_ms."""
        on = bool(on)
        if on == self.commanded:
            return
        self.commanded = on
        self.drive.value(self._drive_hi if on else 1 - self._drive_hi)
        self._t_cmd = now_ms
        self._settled = False
        if on:
            self.switch_count += 1

    def set_phases(self, n):
        """Select 1 or 3 phases. Returns True when in effect; False when the board has no phase
        relay (always 3) or the contactor is not open (the switch would be under load)."""
        if n not in (1, 3):
            return False
        if self.phase_pin is None:
            return n == 3
        if n == self.phases:
            return True
        if self.commanded or self.closed:
            return False
        self.phases = n
        self.phase_pin.value(1 if n == 3 else 0)
        return True

    def update(self, now_ms):
        """Read the sense line; after the actuation delay, flag an inconsistency as a fault."""
        closed = self.sense.value() == self._sense_hi
        self.closed = closed
        if not self._settled:
            if ticks_diff(now_ms, self._t_cmd) < self.actuation_ms:
                return
            self._settled = True
        if closed == self.commanded:
            self.fault = None
        elif closed:
            self.fault = WELDED
        else:
            self.fault = STUCK_OPEN

