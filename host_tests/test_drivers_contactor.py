# Contactor driver: sense checks after the actuation delay, weld / stuck-open faults, phase relay.
from drvfakes import FakePin

from board.sim.board import SimBoard
from board.sim.clock import VirtualClock
from drivers.contactor import Contactor
from firmware.ticks import PERIOD, ticks_add


def test_faults_only_after_the_actuation_delay_and_clear_when_consistent():
    drive, sense = FakePin(), FakePin(0)
    c = Contactor(drive, sense, 100)
    t0 = PERIOD - 50  # across the ticks wrap
    c.set(True, t0)
    assert drive.level == 1 and c.commanded and c.switch_count == 1
    c.update(ticks_add(t0, 99))
    assert c.fault is None and not c.closed
    c.update(ticks_add(t0, 100))
    assert c.fault == "contactor_stuck_open"
    sense.level = 1
    c.update(ticks_add(t0, 101))
    assert c.fault is None and c.closed
    c.set(False, ticks_add(t0, 200))
    assert drive.level == 0
    c.update(ticks_add(t0, 250))
    assert c.fault is None and c.closed  # still within the delay: the sense lags
    c.update(ticks_add(t0, 300))
    assert c.fault == "contactor_welded"
    sense.level = 0
    c.update(ticks_add(t0, 301))
    assert c.fault is None and not c.closed


def test_inverted_lines():
    drive, sense = FakePin(), FakePin(1)
    c = Contactor(drive, sense, 50, sense_active_high=False, drive_active_high=False)
    assert drive.level == 1  # off
    c.set(True, 0)
    assert drive.level == 0
    sense.level = 0
    c.update(60)
    assert c.closed and c.fault is None


def test_phase_relay_only_switches_while_open():
    drive, sense, ph = FakePin(), FakePin(0), FakePin()
    c = Contactor(drive, sense, 50, phase_pin=ph)
    assert ph.level == 1 and c.phases == 3
    assert c.set_phases(1) and ph.level == 0 and c.phases == 1
    c.set(True, 0)
    assert not c.set_phases(3) and c.phases == 1
    assert not c.set_phases(2)
    plain = Contactor(FakePin(), FakePin(0), 50)
    assert plain.set_phases(3) and not plain.set_phases(1)


def test_against_the_plant_weld_and_stuck_open():
    clock = VirtualClock(0)
    b = SimBoard(clock)
    c = b.contactor

    def run(ms):
        for _ in range(ms // 10):
            clock.advance(10)
            c.update(clock.ticks_ms())

    c.set(True, clock.ticks_ms())
    run(150)
    assert c.closed and c.fault is None and b.plant.ev_state()["contactor_out"]
    b.plant.ev_op({"op": "fault", "kind": "weld", "on": True})
    c.set(False, clock.ticks_ms())
    run(150)
    assert c.closed and c.fault == "contactor_welded"
    b.plant.ev_op({"op": "fault", "kind": "weld", "on": False})
    run(20)
    assert not c.closed and c.fault is None
    b.plant.ev_op({"op": "fault", "kind": "stuck_open", "on": True})
    c.set(True, clock.ticks_ms())
    run(150)
    assert not c.closed and c.fault == "contactor_stuck_open"
    c.set(False, clock.ticks_ms())
    run(150)
    assert c.fault is None
