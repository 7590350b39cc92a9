# Residual-current monitor (e.g. a 6 mA DC / 30 mA AC RDC-DD module) with fault outputs and a test
# input.
#
# fault_ac, fault_dc: machine.Pin (IN) fault lines of the module; test: machine.Pin (OUT) test input.
# active_high: level of an asserted fault line and of an asserted test line.
# The module should open the contactor in hardware; the firmware also reacts to the fault lines and
# self-tests the module before each close:
#   selftest_start(now) drives the test line; selftest_poll(now) -> None while running,
#   True when a trip was seen within `trip_window_ms` and the lines cleared within `clear_ms` after the
#   test line was released, False otherwise (`selftest_error` says why).
#
# Fast path: poll() and selftest_poll() allocate nothing.
from drivers.ticks import const, ticks_diff

TYPE_CHECKING = False  # mypy treats this name as true: tools/typecheck.py checks machine calls
if TYPE_CHECKING:
    from machine import Pin  # noqa: F401  (used in type comments)

ERR_TRIPPED_BEFORE = "tripped_before_test"
ERR_NO_TRIP = "no_trip"
ERR_STUCK = "stuck_tripped"
ERR_TEST_LINE = "test_line_stuck"

_IDLE = const(0)
_PULSE = const(1)
_RELEASE = const(2)
_DONE = const(3)


class RCD:
    def __init__(self, fault_ac, fault_dc, test, active_high=True, trip_window_ms=500, clear_ms=500):
        self.fault_ac = fault_ac  # type: Pin
        self.fault_dc = fault_dc  # type: Pin
        self.test = test  # type: Pin
        self._on = 1 if active_high else 0
        self.trip_window_ms = trip_window_ms
        self.clear_ms = clear_ms
        self.trip_ac = False
        self.trip_dc = False
        self.raw_ac = False
        self.raw_dc = False
        self.trip_ms = None  # ticks when a trip (outside a self-test) was first seen
        self.trip_latency_ms = None  # self-test: test line asserted -> fault line seen
        self.selftest_result = None
        self.selftest_error = None
        self._test = _IDLE
        self._t0 = 0
        test.value(1 - self._on)

    def poll(self, now_ms):
        """Read the fault lines. While a self-test runs, trip_ac/trip_dc stay False (the trip is the
        expected test response; the contactor is open during a test); raw_ac/raw_dc show the lines."""
        on = self._on
        ac = self.fault_ac.value() == on
        dc = self.fault_dc.value() == on
        self.raw_ac = ac
        self.raw_dc = dc
        if self._test == _PULSE or self._test == _RELEASE:
            self.selftest_poll(now_ms)
            if self._test != _DONE:
                self.trip_ac = False
                self.trip_dc = False
                return
        self.trip_ac = ac
        self.trip_dc = dc
        if ac or dc:
            if self.trip_ms is None:
                self.trip_ms = now_ms
        else:
            self.trip_ms = None

    def selftest_start(self, now_ms):
        self._test = _IDLE
        self.poll(now_ms)
        self.trip_latency_ms = None
        self.selftest_error = None
        self.selftest_result = None
        if self.raw_ac or self.raw_dc:
            self._finish(False, ERR_TRIPPED_BEFORE)
            return
        self.test.value(self._on)
        self._test = _PULSE
        self._t0 = now_ms

    def selftest_poll(self, now_ms):
        phase = self._test
        if phase == _PULSE:
            on = self._on
            tripped = self.fault_ac.value() == on or self.fault_dc.value() == on
            dt = ticks_diff(now_ms, self._t0)
            if tripped:
                self.trip_latency_ms = dt
                self.test.value(1 - on)
                self._test = _RELEASE
                self._t0 = now_ms
            elif dt >= self.trip_window_ms:
                self.test.value(1 - on)
                self._finish(False, ERR_NO_TRIP)
        elif phase == _RELEASE:
            on = self._on
            if self.test.value() == on:  # output readback: the test line does not follow
                self._finish(False, ERR_TEST_LINE)
            elif self.fault_ac.value() != on and self.fault_dc.value() != on:
                self._finish(True, None)
            elif ticks_diff(now_ms, self._t0) >= self.clear_ms:
                self._finish(False, ERR_STUCK)
        return self.selftest_result

    def _finish(self, ok, err):
        self._test = _DONE
        self.selftest_result = ok
        self.selftest_error = err
