# The fast path allocates nothing: Pilot.sample + Contactor.update + RCD.poll on the simulated board in
# steady state, under micropython.heap_lock() (the MicroPython leg; on CPython only the behaviour runs).
from board.sim.board import SimBoard
from board.sim.clock import VirtualClock
from firmware.ticks import PERIOD
from mpcompat import heap_locked


def _steady_board():
    clock = VirtualClock(PERIOD - 500)
    b = SimBoard(clock)
    b.plant.ev_op({"op": "plug", "cable_a": 32, "phases": 3, "max_a": 32})
    b.pwm_on(267)  # 16 A
    clock.advance(1000)
    b.contactor.set(True, clock.ticks_ms())
    for _ in range(300):  # 3 s: S2 closed, contactor confirmed, vehicle drawing, no events pending
        clock.advance(10)
        b.pilot.sample()
        b.contactor.update(clock.ticks_ms())
        b.rcd.poll(clock.ticks_ms())
    return clock, b


def _ticks(clock, b, n):
    pilot = b.pilot
    con = b.contactor
    rcd = b.rcd
    for _ in range(n):
        clock.advance(10)
        now = clock.ticks_ms()
        pilot.sample()
        con.update(now)
        rcd.poll(now)


def test_fast_path_allocates_nothing():
    clock, b = _steady_board()
    heap_locked(lambda: _ticks(clock, b, 200))  # 2 s of 10 ms ticks across the ticks wrap
    assert b.pilot.state == "C" and b.pilot.diode_ok is True
    assert b.contactor.closed and b.contactor.fault is None
    assert not b.rcd.trip_ac and not b.rcd.trip_dc
