# RCD driver: trip lines and the self-test state machine (pass, no trip, stuck tripped, stuck test
# line, tripped before the test), on hand-built pins and on the simulated module.
from drvfakes import FakePin

from board.sim.board import SimBoard
from board.sim.clock import VirtualClock
from drivers.rcd import RCD
from firmware.ticks import PERIOD, ticks_add


def rig(active_high=True):
    off = 0 if active_high else 1
    ac, dc, test = FakePin(off), FakePin(off), FakePin()
    return RCD(ac, dc, test, active_high, trip_window_ms=300, clear_ms=200), ac, dc, test


def test_trip_lines():
    r, ac, dc, test = rig()
    assert test.level == 0
    r.poll(0)
    assert not r.trip_ac and not r.trip_dc and r.trip_ms is None
    dc.level = 1
    r.poll(10)
    assert r.trip_dc and not r.trip_ac and r.trip_ms == 10
    r.poll(20)
    assert r.trip_ms == 10
    dc.level = 0
    ac.level = 1
    r.poll(30)
    assert r.trip_ac and not r.trip_dc
    r2, ac2, dc2, test2 = rig(active_high=False)
    assert test2.level == 1
    r2.poll(0)
    assert not r2.trip_ac
    ac2.level = 0
    r2.poll(1)
    assert r2.trip_ac


def test_selftest_pass_measures_latency():
    r, ac, dc, test = rig()
    t0 = PERIOD - 20
    r.selftest_start(t0)
    assert test.level == 1
    assert r.selftest_poll(ticks_add(t0, 10)) is None
    dc.level = 1  # the module trips 30 ms after the test pulse
    r.poll(ticks_add(t0, 30))
    assert not r.trip_dc  # the expected test trip is not reported as a fault
    assert r.trip_latency_ms == 30 and test.level == 0  # test line released on the trip
    assert r.selftest_poll(ticks_add(t0, 40)) is None
    dc.level = 0
    assert r.selftest_poll(ticks_add(t0, 50)) is True
    assert r.selftest_poll(ticks_add(t0, 60)) is True and r.selftest_error is None


def test_selftest_fails_without_a_trip():
    r, ac, dc, test = rig()
    r.selftest_start(0)
    assert r.selftest_poll(299) is None
    assert r.selftest_poll(300) is False and r.selftest_error == "no_trip"
    assert test.level == 0


def test_selftest_fails_when_stuck_tripped():
    r, ac, dc, test = rig()
    r.selftest_start(0)
    ac.level = 1
    assert r.selftest_poll(20) is None
    assert r.selftest_poll(219) is None
    assert r.selftest_poll(220) is False and r.selftest_error == "stuck_tripped"
    r.poll(230)
    assert r.trip_ac  # after the test the stuck line is a trip again


def test_selftest_fails_when_the_test_line_is_stuck():
    r, ac, dc, test = rig()
    test.stuck = 1  # e.g. shorted to 3.3 V: the module keeps seeing a test
    r.selftest_start(0)
    dc.level = 1
    r.selftest_poll(20)
    assert r.selftest_poll(30) is False and r.selftest_error == "test_line_stuck"


def test_selftest_refused_when_already_tripped():
    r, ac, dc, test = rig()
    dc.level = 1
    r.selftest_start(0)
    assert r.selftest_poll(1) is False and r.selftest_error == "tripped_before_test"
    assert test.writes == [0]  # never pulsed


def test_against_the_simulated_module():
    clock = VirtualClock(0)
    b = SimBoard(clock)
    r = b.rcd

    def run_until_result(limit_ms=2000):
        for _ in range(limit_ms // 10):
            clock.advance(10)
            r.poll(clock.ticks_ms())
            res = r.selftest_poll(clock.ticks_ms())
            if res is not None:
                return res
        return None

    r.selftest_start(clock.ticks_ms())
    assert run_until_result() is True and 20 <= r.trip_latency_ms <= 40
    b.plant.ev_op({"op": "fault", "kind": "rcd_selftest", "on": True})
    r.selftest_start(clock.ticks_ms())
    assert run_until_result() is False and r.selftest_error == "no_trip"
    b.plant.ev_op({"op": "fault", "kind": "rcd_selftest", "on": False})
    b.plant.rcd_test_stuck = True
    r.selftest_start(clock.ticks_ms())
    assert run_until_result() is False and r.selftest_error == "test_line_stuck"
    b.plant.rcd_test_stuck = False
    b.plant.pin_write(4, 0)
    clock.advance(100)
    r.poll(clock.ticks_ms())
    b.plant.ev_op({"op": "fault", "kind": "rcd_dc", "on": True})
    r.poll(clock.ticks_ms())
    assert r.trip_dc and not r.trip_ac
    b.plant.ev_op({"op": "fault", "kind": "rcd_ac", "on": True})
    r.poll(clock.ticks_ms())
    assert r.trip_ac
