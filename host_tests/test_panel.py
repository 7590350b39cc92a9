# The charger's local face (firmware/panel.py) on the real LED and button drivers with fake pins and
# a stand-in station: the LED code of every mode, the button's short press (stop / resume), its long
# press (factory reset when no vehicle charges, refused while one does), and no allocation in the
# slow work. Both runtimes; the same on the simulated board end to end: test_scenarios.py, test_e2e_face_ha.py.
from drvfakes import FakePin

from drivers.button import Button
from drivers.status_led import StatusLed
from firmware import panel as P
from firmware import session as S
from mpcompat import heap_locked


class Pixels:
    def __init__(self):
        self.buf = [None]
        self.shown = None

    def __setitem__(self, i, v):
        self.buf[i] = v

    def write(self):
        self.shown = self.buf[0]


class Charger:
    def __init__(self):
        self.enabled = True
        self.session = self

    state = S.IDLE


class Inp:
    contactor_closed = False


class Station:
    """What the panel uses of firmware/station.py, recording the commands."""

    updating = False  # the field-update code's flag

    def __init__(self):
        self.charger = Charger()
        self.inp = Inp()
        self.calls = []
        self.reset_result = None

    def charging(self):  # Station.charging(): the contactor closed or a session charging
        return bool(self.inp.contactor_closed) or self.charger.state == S.CHARGING

    def stop(self, now):
        self.calls.append("stop")
        self.charger.state = S.FINISHED

    def resume(self, now):
        self.calls.append("resume")
        self.charger.state = S.CHARGING

    def factory_reset(self):  # erases the owner's data, or refuses (busy)
        self.calls.append("factory_reset")
        return self.reset_result

    def restart(self, cmd_id):  # the reset that follows an erase
        self.calls.append("restart")
        return None


class Link:
    connected = True


def rig(link=None):
    st = Station()
    pin = FakePin(1)  # active low, released
    button = Button(pin, True, 30, 10000, 2000)
    px = Pixels()
    panel = P.Panel(st, StatusLed(px), button, link)
    return st, pin, px, panel


def run(panel, t, ms):
    for _ in range(ms // 50):
        t += 50
        panel.service(t)
    return t


def set_mode(st, mode, state, closed=False):
    st.charger.enabled = mode != "disabled"  # the panel reads the session state and the enabled flag
    st.charger.state = state
    st.inp.contactor_closed = closed


# (contract mode, session state, updating, link connected) -> the LED code
CASES = (
    ("disconnected", S.IDLE, False, True, "disconnected"),
    ("disconnected", S.IDLE, False, False, "offline"),
    ("connected_requesting", S.WAITING_FOR_AUTH, False, False, "waiting_for_auth"),
    ("connected_charging", S.CHARGING, False, False, "charging"),
    ("connected_requesting", S.READY, False, True, "paused"),
    ("connected_requesting", S.PAUSED_EVSE, False, True, "paused"),
    ("connected_finished", S.FINISHED, False, True, "paused"),
    ("connected_finished", S.PAUSED_EV, False, True, "finished"),
    ("fault", S.FAULTED, False, True, "fault"),
    ("fault", S.FAULTED, True, True, "fault"),
    ("disabled", S.IDLE, False, False, "disabled"),
    ("disabled", S.IDLE, True, True, "updating"),
    ("connected_charging", S.CHARGING, True, True, "updating"),
)


def test_led_code_for_every_mode():
    link = Link()
    st, pin, px, panel = rig(link)
    t = 0
    for mode, state, updating, connected, name in CASES:
        set_mode(st, mode, state, state == S.CHARGING)
        st.updating = updating
        link.connected = connected
        t = run(panel, t, 100)
        assert panel.name == name, (mode, state, updating, connected, panel.name)
        rgb, on_ms, off_ms = P.PATTERNS[panel.code]
        assert panel.led.rgb is rgb and panel.led.on_ms == on_ms and panel.led.off_ms == off_ms
    st.updating = False


def test_every_mode_has_its_own_look():
    looks = [P.PATTERNS[i] for i in range(len(P.NAMES))]
    for i in range(len(looks)):
        for j in range(i + 1, len(looks)):
            if (P.NAMES[i], P.NAMES[j]) == ("hold", "factory_reset"):
                continue
            assert looks[i] != looks[j], (P.NAMES[i], P.NAMES[j])
    assert len(P.NAMES) == len(P.PATTERNS)


def test_a_blinking_code_blinks_on_the_pixel():
    st, pin, px, panel = rig()
    set_mode(st, "fault", S.FAULTED)
    t = run(panel, 0, 50)
    seen = []
    for _ in range(20):
        t = run(panel, t, 50)
        seen.append(px.shown is P.RED)
    assert True in seen and False in seen  # 250 ms on, 250 ms off


def press(pin, panel, t, ms):
    pin.level = 0
    t = run(panel, t, ms)
    pin.level = 1
    return run(panel, t, 150)


def test_short_press_stops_and_resumes():
    st, pin, px, panel = rig()
    set_mode(st, "connected_charging", S.CHARGING, True)
    t = press(pin, panel, 0, 200)
    assert st.calls == ["stop"]
    t = press(pin, panel, t, 200)
    assert st.calls == ["stop", "resume"] and panel.presses == 2


def test_short_press_does_nothing_without_a_vehicle_or_in_a_fault():
    st, pin, px, panel = rig()
    t = press(pin, panel, 0, 200)
    set_mode(st, "fault", S.FAULTED)
    t = press(pin, panel, t, 200)
    assert st.calls == [] and panel.presses == 0


def test_long_press_while_charging_does_not_reset():
    st, pin, px, panel = rig()
    set_mode(st, "connected_charging", S.CHARGING, True)
    pin.level = 0
    t = run(panel, 0, 2500)
    assert panel.name == "hold"  # past 2 s: keep holding
    t = run(panel, t, 7700)
    assert panel.name == "refused"
    pin.level = 1
    t = run(panel, t, 1000)
    assert panel.name == "refused"
    t = run(panel, t, 1500)
    assert panel.name == "charging" and st.calls == [] and panel.resets == 0


def test_long_press_without_a_charging_vehicle_resets_after_the_confirmation():
    st, pin, px, panel = rig()
    set_mode(st, "connected_finished", S.PAUSED_EV)
    pin.level = 0
    t = run(panel, 0, 9900)
    assert panel.name == "hold" and st.calls == []
    t = run(panel, t, 300)
    assert panel.name == "factory_reset" and px.shown is P.WHITE and st.calls == []
    pin.level = 1  # letting go now does not cancel it: the LED has confirmed
    t = run(panel, t, P.CONFIRM_MS)
    assert st.calls == ["factory_reset", "restart"] and panel.resets == 1
    run(panel, t, 12000)
    assert st.calls == ["factory_reset", "restart"]  # once


def test_a_vehicle_that_starts_during_the_confirmation_stops_the_reset():
    st, pin, px, panel = rig()
    pin.level = 0
    t = run(panel, 0, 10200)
    assert panel.name == "factory_reset"
    set_mode(st, "connected_charging", S.CHARGING, True)
    pin.level = 1
    t = run(panel, t, P.CONFIRM_MS)
    assert st.calls == [] and panel.name == "refused"


def test_a_refused_reset_shows_and_a_press_let_go_early_does_nothing():
    st, pin, px, panel = rig()
    st.reset_result = ("busy", "a vehicle is charging")
    pin.level = 0
    t = run(panel, 0, 10200)
    pin.level = 1
    t = run(panel, t, P.CONFIRM_MS + 100)
    assert st.calls == ["factory_reset"] and panel.name == "refused" and panel.resets == 0
    t = run(panel, t, 3000)
    t = press(pin, panel, t, 6000)  # let go between 2 and 10 s
    assert st.calls == ["factory_reset"] and panel.name == "disconnected"


def test_slow_work_allocates_nothing():
    st, pin, px, panel = rig(Link())
    set_mode(st, "connected_charging", S.CHARGING, True)
    t = run(panel, 0, 200)
    box = [t]

    def steady():
        for _ in range(100):
            box[0] += 50
            panel.service(box[0])

    heap_locked(steady)
    set_mode(st, "fault", S.FAULTED)  # a blinking code: the pixel is written on every edge
    heap_locked(steady)
    assert panel.name == "fault"
