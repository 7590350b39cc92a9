# The board-support interface (board/support.py) on the simulated board: inputs read from the plant
# through the real drivers, outputs that the plant sees, the RCD self-test handshake and the
# capabilities. Runs on CPython and on the MicroPython unix port.
from board import circuit
from board.sim.board import SimBoard
from board.sim.clock import VirtualClock
from board.sim.plant import Plant
from firmware.charger import Inputs
from firmware.ticks import PERIOD
from mpcompat import heap_locked


def _board(**kw):
    clock = VirtualClock(PERIOD - 1000)  # crosses the ticks wrap a second in
    plant = Plant(clock, s2_delay_ms=100)
    return SimBoard(clock, plant, storage_root="build/tmp/bsp", **kw), clock, plant


def _read(b, clock, ms=10):
    inp = Inputs()
    for _ in range(ms // 10):
        clock.advance(10)
        b.read(inp, clock.ticks_ms())
    return inp


def test_capabilities():
    b, _, _ = _board()
    assert b.hw_max_a == circuit.HW_MAX_A and b.phases == 3 and b.tethered_a is None and b.pp is not None
    t, _, _ = _board(tethered_a=20, hw_max_a=20, phases=1)
    assert t.tethered_a == 20 and t.hw_max_a == 20 and t.phases == 1 and t.pp is None
    for name in ("read", "read_pp", "read_temp", "pwm_on", "x1", "f", "allow_power_on", "set_phases",
                 "selftest_start"):
        assert callable(getattr(b, name)), name


def test_pilot_out_and_cp_in():
    b, clock, plant = _board()
    inp = _read(b, clock)
    assert inp.cp == "A" and inp.diode_ok is None
    plant.ev_op({"op": "plug", "cable_a": 32, "phases": 3, "max_a": 32})
    inp = _read(b, clock)
    assert inp.cp == "B"
    b.pwm_on(267)
    inp = _read(b, clock, 200)  # the vehicle closes S2 100 ms after it saw the PWM
    assert abs(plant.duty_pct - 26.7) < 0.1 and inp.cp == "C" and inp.diode_ok is True
    b.f()
    inp = _read(b, clock)
    assert inp.cp == "F" and plant.duty_pct == 0
    b.x1()
    inp = _read(b, clock, 1500)  # steady +12 V: the vehicle opens S2 after its stop delay
    assert inp.cp == "B" and plant.duty_pct == 100.0 and inp.diode_ok is None


def test_contactor_and_its_feedback():
    b, clock, plant = _board()
    b.allow_power_on(True, clock.ticks_ms())
    inp = _read(b, clock, 200)
    assert inp.contactor_closed and inp.contactor_fault is None and plant.contactor_closed
    plant.ev_op({"op": "fault", "kind": "weld", "on": True})
    b.allow_power_on(False, clock.ticks_ms())
    inp = _read(b, clock, 200)
    assert inp.contactor_closed and inp.contactor_fault == "contactor_welded"


def test_phases_move_only_while_open():
    b, clock, plant = _board()
    b.set_phases(1)
    _read(b, clock, 100)
    assert b.contactor.phases == 1 and not plant.phase_cmd
    b.set_phases(3)
    b.allow_power_on(True, clock.ticks_ms())
    _read(b, clock, 200)
    b.set_phases(1)  # under load: refused
    _read(b, clock, 100)
    assert b.contactor.phases == 3 and plant.phase_cmd


def test_rcd_lines_and_selftest_handshake():
    b, clock, plant = _board()
    inp = _read(b, clock)
    assert inp.rcd_selftest is None and not inp.rcd_ac and not inp.rcd_dc
    b.selftest_start(clock.ticks_ms())
    inp = Inputs()
    t = 0
    while inp.rcd_selftest is None and t < 1000:
        clock.advance(10)
        t += 10
        b.read(inp, clock.ticks_ms())
        assert not inp.rcd_ac and not inp.rcd_dc  # the test trip is not a fault
    assert inp.rcd_selftest is True and t < 200, t
    plant.ev_op({"op": "fault", "kind": "rcd_selftest", "on": True})  # the module no longer trips
    b.selftest_start(clock.ticks_ms())
    inp = _read(b, clock, 1000)
    assert inp.rcd_selftest is False
    plant.ev_op({"op": "fault", "kind": "rcd_ac", "on": True})
    inp = _read(b, clock)
    assert inp.rcd_ac and not inp.rcd_dc


def test_slow_inputs():
    b, clock, plant = _board()
    inp = Inputs()
    assert b.read_pp(inp) == 0 and inp.pp_a == 0
    plant.ev_op({"op": "plug", "cable_a": 20, "phases": 3, "max_a": 32})
    assert b.read_pp(inp) == 20 and inp.pp_a == 20
    t = b.read_temp(inp)
    assert t == inp.temp_dc and 230 <= t <= 270  # the plant's 25 degC ambient
    tb, _, tplant = _board(tethered_a=32)
    tplant.ev_op({"op": "plug", "cable_a": None, "phases": 3, "max_a": 32})
    assert tb.read_pp(inp) == 0  # a tethered cable has no PP line to read


def test_fast_path_allocates_nothing():
    b, clock, plant = _board(direct_pilot=True)
    plant.ev_op({"op": "plug", "cable_a": 32, "phases": 3, "max_a": 32})
    inp = Inputs()
    b.pwm_on(267)
    b.allow_power_on(True, clock.ticks_ms())
    for _ in range(300):  # 3 s: S2 closed, contactor confirmed, the vehicle's current settled
        clock.advance(10)
        b.read(inp, clock.ticks_ms())

    def run():
        for _ in range(200):
            clock.advance(10)
            now = clock.ticks_ms()
            b.read(inp, now)
            b.pwm_on(267)
            b.set_phases(3)
            b.allow_power_on(True, now)

    heap_locked(run)
    assert inp.cp == "C" and inp.contactor_closed and inp.contactor_fault is None
