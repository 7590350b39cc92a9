# Proximity, NTC, status LED and button drivers: on the simulated board and on hand-built fakes.
# The simulated board is imported inside its tests, so the hand-fake tests need little heap.
from drvfakes import FakePin, SeqADC

from drivers.button import Button
from drivers.ntc import NTC, ohms_for_temp_c
from drivers.proximity import Proximity, amps_for_ohms
from drivers.status_led import StatusLed


def sim_board():
    import gc

    from board.sim.board import SimBoard
    from board.sim.clock import VirtualClock

    gc.collect()
    clock = VirtualClock(0)
    return clock, SimBoard(clock)


def pp_uv(ohms):
    return 3300000 * ohms // (ohms + 1000)


def test_pp_bands():
    assert amps_for_ohms(50) == -1
    assert amps_for_ohms(100) == 63 and amps_for_ohms(149) == 63
    assert amps_for_ohms(220) == 32 and amps_for_ohms(680) == 20 and amps_for_ohms(1500) == 13
    assert amps_for_ohms(2199) == 13 and amps_for_ohms(2300) == 0
    for ohms, amps in ((40, -1), (100, 63), (220, 32), (680, 20), (1500, 13), (4000, 0)):
        pp = Proximity(SeqADC([pp_uv(ohms)]), 1000, 3300)
        assert pp.read() == amps, (ohms, pp.ohms)
        assert abs(pp.ohms - ohms) <= ohms // 50 + 2
    pp = Proximity(SeqADC([3150000]), 1000, 3300)  # open: ADC saturated below the rail
    assert pp.read() == 0 and pp.ohms > 2200


def test_pp_on_the_plant():
    clock, b = sim_board()
    assert b.pp.read() == 0
    for cable in (13, 20, 32, 63):
        b.plant.ev_op({"op": "plug", "cable_a": cable, "phases": 3, "max_a": 32})
        assert b.pp.read() == cable
    b.plant.ev_op({"op": "plug", "cable_a": None, "phases": 3, "max_a": 32})
    assert b.pp.read() == 0
    from board.sim.board import SimBoard

    tb = SimBoard(clock, tethered_a=32)
    assert tb.pp is None and tb.tethered_a == 32


def ntc_uv(t_c):
    r = ohms_for_temp_c(t_c)
    return int(3300000 * 4700 / (4700 + r))


def test_ntc_temperatures_open_and_short():
    for t in (-20, 0, 25, 50, 75, 100):
        n = NTC(SeqADC([ntc_uv(t)]))
        assert abs(n.read() - t * 10) <= 5, (t, n.temp_dc)
        assert n.fault is None
    n = NTC(SeqADC([0]))
    assert n.read() is None and n.fault == "open"
    n = NTC(SeqADC([3150000]))
    assert n.read() is None and n.fault == "short"
    low_side = NTC(SeqADC([5000]), ntc_high=False)
    assert low_side.read() is None and low_side.fault == "short"
    n = NTC(SeqADC([ntc_uv(40)]))
    assert n.read() == 400 and n.fault is None  # a fault clears when the reading is back


def test_ntc_on_the_plant():
    clock, b = sim_board()
    assert abs(b.temp.read() - 250) <= 5
    b.plant.ev_op({"op": "fault", "kind": "overtemp", "on": True})
    assert abs(b.temp.read() - 750) <= 5
    b.plant.ev_op({"op": "fault", "kind": "overtemp", "on": False})
    assert abs(b.temp.read() - 250) <= 5


class FakePixels:
    """A one-pixel strip: what was written, and how often."""

    def __init__(self):
        self.buf = [None]
        self.shown = None
        self.writes = 0

    def __setitem__(self, i, v):
        self.buf[i] = v

    def write(self):
        self.shown = self.buf[0]
        self.writes += 1


def test_status_led_steady_blink_and_dark():
    np = FakePixels()
    led = StatusLed(np)
    assert np.shown == (0, 0, 0) and not led.lit  # dark from the start
    blue = (0, 0, 96)
    led.show(blue, 1000, 0, 0)  # steady
    assert np.shown is blue and led.lit
    n = np.writes
    for t in range(0, 5000, 50):
        led.update(t)
    assert np.writes == n  # unchanged: never written again
    red = (96, 0, 0)
    led.show(red, 250, 250, 100)
    seen = []
    for t in range(100, 1100, 50):
        led.update(t)
        seen.append(led.lit)
    assert seen == [True] * 5 + [False] * 5 + [True] * 5 + [False] * 5
    assert np.writes == n + 4  # one write per edge
    led.show(red, 250, 250, 2000)  # the same pattern again keeps its phase
    led.update(1150)
    assert led.lit
    led.show(red, 0, 1000, 3000)  # on_ms 0: dark
    assert np.shown == (0, 0, 0) and not led.lit


def test_button_debounce_short_and_long():
    pin = FakePin(1)  # active low, released
    b = Button(pin, debounce_ms=30, long_ms=2000)
    assert b.poll(0) is None
    pin.level = 0
    assert b.poll(10) is None
    pin.level = 1  # bounce
    assert b.poll(15) is None
    pin.level = 0
    assert b.poll(20) is None
    assert b.poll(45) is None and not b.pressed
    assert b.poll(50) is None and b.pressed
    pin.level = 1
    assert b.poll(300) is None
    assert b.poll(331) == "short"
    pin.level = 0
    b.poll(400)
    b.poll(431)
    assert b.poll(2430) is None
    assert b.poll(2431) == "long"
    assert b.poll(2500) is None
    pin.level = 1
    b.poll(2600)
    assert b.poll(2640) is None  # no short after a long


def test_button_release_between_short_and_long_is_nothing():
    pin = FakePin(1)
    b = Button(pin, debounce_ms=30, long_ms=10000, short_max_ms=2000)
    t = 0
    results = []

    def hold(ms):
        nonlocal t
        pin.level = 0
        for _ in range(ms // 50):
            t += 50
            r = b.poll(t)
            if r:
                results.append(r)
        pin.level = 1
        for _ in range(4):
            t += 50
            r = b.poll(t)
            if r:
                results.append(r)

    hold(200)
    assert results == ["short"]
    hold(1950)
    assert results == ["short", "short"]
    assert b.held_ms(t) == 0
    hold(5000)  # let go of a long press before 10 s: nothing
    assert results == ["short", "short"]
    pin.level = 0
    for _ in range(260):
        t += 50
        r = b.poll(t)
        if r:
            results.append(r)
            break
    assert results[-1] == "long" and 9950 <= b.held_ms(t) <= 10050


def test_board_attributes():
    from board import circuit as C
    from board.sim.board import SimBoard
    from board.sim.clock import VirtualClock

    clock = VirtualClock(0)
    b = SimBoard(clock, serial="SIM0042", reset_cause="watchdog", storage_root="build/tmp/x")
    for name in ("pilot", "pp", "contactor", "meter", "rcd", "temp", "rfid", "wdt", "led", "button"):
        assert getattr(b, name) is not None, name
    assert b.hw_max_a == C.HW_MAX_A and b.phases == 3 and b.tethered_a is None
    assert b.serial == "SIM0042" and b.reset_cause() == "watchdog" and b.storage_root == "build/tmp/x"
    t = b.ticks_ms()
    b.sleep_ms(25)
    assert b.ticks_ms() - t == 25
    b.wdt.feed()
    # (the tag op through the board's reader: test_drivers_rfid.py, which has the heap for the twin)
    assert b.plant.ev_op({"op": "button", "ms": 200}) is None and b.button.pin.value() == 0
    b.sleep_ms(199)
    assert b.button.pin.value() == 0
    b.sleep_ms(2)
    assert b.button.pin.value() == 1  # released after 200 ms of board time
    assert b.plant.ev_op({"op": "button", "ms": 0}) is not None
    assert b.plant.ev_op({"op": "button", "ms": "long"}) is not None
    try:
        b.reset()
        raise AssertionError("no exit")
    except SystemExit as e:
        assert e.args[0] == 75 or e.code == 75
