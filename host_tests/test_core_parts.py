# The charging core's parts through their own interfaces (docs/architecture.md): the pilot state
# machine, the safety monitor, the session and the arbitration, each alone, in virtual time across
# the ticks wrap. Runs on CPython and on the MicroPython unix port.
from firmware import arbitration as A
from firmware import session as S
from firmware.charger import Inputs
from firmware.iec61851 import HIGH, LOW, PWM, duty_pm_for_da
from firmware.monitor import SELFTEST_IDLE, SELFTEST_PASSED, SELFTEST_RUNNING, SafetyMonitor
from firmware.pilot_machine import NO_EVENT, PLUGGED, UNPLUGGED, PilotMachine
from firmware.ticks import PERIOD, ticks_add, ticks_diff
from mpcompat import heap_locked

T0 = PERIOD - 2000  # every clock here crosses the wrap 2 s in


# ---- arbitration ---------------------------------------------------------------------------------
def _arb(enabled=True, standalone=False, max_da=160, lease=A.NO_TERM, fb=60, cable=A.NO_TERM, th=0, pen=0,
         cap=A.NO_TERM):
    out = [None, None]
    A.arbitrate(out, enabled, standalone, max_da, lease, fb, cable, th, pen, cap)
    return out


def test_arbitration_picks_the_smallest_term_and_names_it():
    assert _arb(enabled=False, lease=100) == [0, A.SRC_NONE]
    assert _arb(standalone=True, lease=50) == [160, A.SRC_MAX]  # a lease does not count standalone
    assert _arb(lease=100) == [100, A.SRC_CLOUD]
    assert _arb(lease=200) == [160, A.SRC_MAX]
    assert _arb(lease=160) == [160, A.SRC_CLOUD]  # a tie keeps the earlier term
    assert _arb() == [60, A.SRC_FALLBACK]
    assert _arb(fb=0) == [0, A.SRC_FALLBACK]
    assert _arb(lease=100, cable=130) == [100, A.SRC_CLOUD]
    assert _arb(lease=200, cable=130) == [130, A.SRC_CABLE]
    assert _arb(lease=200, cable=0) == [0, A.SRC_CABLE]  # a vehicle on an unreadable cable
    assert _arb(lease=160, th=1) == [80, A.SRC_THERMAL]
    assert _arb(lease=160, th=2) == [40, A.SRC_THERMAL]
    assert _arb(lease=160, th=3) == [0, A.SRC_THERMAL]
    assert _arb(lease=160, pen=120) == [120, A.SRC_OVERCURRENT]
    assert _arb(lease=100, pen=120) == [100, A.SRC_CLOUD]
    assert _arb(max_da=0, lease=160) == [0, A.SRC_MAX]
    assert _arb(standalone=True, cap=100) == [100, A.SRC_CLOUD]  # a backend's schedule (OCPP)
    assert _arb(standalone=True, cap=100, cable=80) == [80, A.SRC_CABLE]
    assert _arb(standalone=True, cap=100, th=1) == [50, A.SRC_THERMAL]  # the binding term is named


def test_arbitration_allocates_nothing():
    out = [0, A.SRC_NONE]

    def run():
        for k in range(50):
            A.arbitrate(out, True, False, 160, k * 4, 60, 130, k & 3, 0)

    heap_locked(run)
    assert out == [65, A.SRC_THERMAL]  # k = 49: the 13 A cable at thermal level 1
    A.arbitrate(out, True, False, 160, 196, 60, 130, 0, 0)
    assert out == [130, A.SRC_CABLE]


# ---- pilot machine ---------------------------------------------------------------------------------
class Clock:
    def __init__(self):
        self.now = T0

    def step(self, ms=10):
        self.now = ticks_add(self.now, ms)
        return self.now


def _sense_for(pm, clk, cp, ms):
    events = []
    for _ in range(ms // 10):
        ev = pm.sense(clk.step(), cp)
        if ev != NO_EVENT:
            events.append(ev)
    return events


def test_pilot_plug_is_debounced_50ms():
    pm = PilotMachine()
    clk = Clock()
    assert _sense_for(pm, clk, "B", 40) == [] and not pm.plugged
    assert _sense_for(pm, clk, "A", 30) == []  # a bounce restarts the debounce
    assert _sense_for(pm, clk, "B", 100) == [PLUGGED] and pm.plugged
    assert _sense_for(pm, clk, "A", 100) == [UNPLUGGED] and not pm.plugged


def test_pilot_reading_while_driving_f_is_not_valid():
    pm = PilotMachine()
    clk = Clock()
    _sense_for(pm, clk, "B", 100)
    held = clk.now
    pm.hold_f(held)
    pm.drive(held, False, 0)
    assert pm.mode == LOW and pm.duty_pm == 0
    pm.sense(clk.step(), "A")
    assert not pm.valid and pm.reading == "X" and pm.plugged  # -12 V says nothing of the vehicle
    while pm.mode == LOW:
        pm.drive(clk.step(), False, 0)
    assert ticks_diff(clk.now, held) == 300 and pm.mode == HIGH  # state F held F_HOLD_MS


def _charging_machine():
    pm = PilotMachine()
    clk = Clock()
    _sense_for(pm, clk, "B", 100)
    pm.drive(clk.now, True, 160)
    assert pm.mode == PWM and pm.offer_da == 160 and pm.duty_pm == duty_pm_for_da(160)
    closed_at = None
    for _ in range(100):
        now = clk.step()
        pm.sense(now, "C")
        pm.drive(now, True, 160)
        if pm.switch(now, PWM, True):
            closed_at = now
            break
    return pm, clk, closed_at


def test_pilot_closes_after_c_stable_and_opens_within_100ms_of_b():
    pm, clk, closed_at = _charging_machine()
    assert closed_at is not None and pm.contactor and pm.closed_since_plug
    pm.sense(clk.step(), "B")
    t = 0
    while pm.contactor:
        now = clk.step()
        pm.sense(now, "B")
        pm.drive(now, True, 160)
        pm.switch(now, PWM, True)
        t += 10
    assert t <= 100, t
    assert pm.ev_stopped  # it left C by itself while offered current


def test_pilot_closes_only_when_allowed_by_the_monitor():
    pm = PilotMachine()
    clk = Clock()
    _sense_for(pm, clk, "B", 100)
    for _ in range(200):
        now = clk.step()
        pm.sense(now, "C")
        pm.drive(now, True, 160)
        assert not pm.switch(now, PWM, False)
    assert not pm.contactor


def test_pilot_opens_6s_after_the_pwm_went_and_rests_10s():
    pm, clk, _ = _charging_machine()
    off_at = clk.now
    while pm.contactor:
        now = clk.step()
        pm.sense(now, "C")  # the vehicle ignores the pause
        pm.drive(now, False, 160)
        pm.switch(now, HIGH, True)
    assert 6000 <= ticks_diff(clk.now, off_at) <= 6020
    opened = clk.now
    while ticks_diff(clk.now, opened) < 9900:
        now = clk.step()
        pm.sense(now, "B")
        pm.drive(now, True, 160)
        assert pm.mode == HIGH  # the contactor rests MIN_OFF_MS before it may close again
    for _ in range(20):
        pm.drive(clk.step(), True, 160)
    assert pm.mode == PWM


def test_pilot_raises_the_offer_at_most_every_5s_while_charging():
    pm, clk, _ = _charging_machine()
    lowered = clk.step()
    pm.drive(lowered, True, 100)
    assert pm.offer_da == 100  # a decrease at once
    raised = None
    for _ in range(600):
        now = clk.step()
        pm.sense(now, "C")
        pm.drive(now, True, 200)
        if pm.offer_da == 200:
            raised = now
            break
    assert raised is not None and ticks_diff(raised, lowered) == 5000


def test_pilot_wakes_a_sleeping_vehicle_once():
    pm = PilotMachine()
    clk = Clock()
    _sense_for(pm, clk, "B", 100)
    modes = []
    for _ in range(4000):  # 40 s of B with PWM allowed
        now = clk.step()
        pm.sense(now, "B")
        pm.drive(now, True, 160)
        if not modes or modes[-1][0] != pm.mode:
            modes.append((pm.mode, now))
    assert [m[0] for m in modes] == [PWM, HIGH, PWM]
    assert 29990 <= ticks_diff(modes[1][1], modes[0][1]) <= 30010
    assert 2990 <= ticks_diff(modes[2][1], modes[1][1]) <= 3010


def test_pilot_cp_names():
    pm = PilotMachine()
    clk = Clock()
    _sense_for(pm, clk, "B", 100)
    assert pm.cp_name() == "B1"
    pm.drive(clk.now, True, 160)
    assert pm.cp_name() == "B2"
    pm.sense(clk.step(), "C")
    assert pm.cp_name() == "C2"
    pm.sense(clk.step(), "X")
    assert pm.cp_name() == "C2"  # an invalid reading keeps the last valid letter


# ---- safety monitor ---------------------------------------------------------------------------------
def _events():
    got = []

    def emit(typ, key, val):
        got.append((typ, val))

    return got, emit


def test_monitor_trips_on_rcd_and_retries_after_30s():
    got, emit = _events()
    sm = SafetyMonitor(emit)
    pm = PilotMachine()
    inp = Inputs()
    clk = Clock()
    inp.rcd_ac = True
    raised = clk.step()
    assert sm.check(raised, inp, pm, HIGH, 0, 60, True) is True
    assert sm.faults.names == ["rcd_ac"] and got == [("fault", "rcd_ac")]
    assert sm.check(clk.step(), inp, pm, HIGH, 0, 60, True) is False  # raised once
    inp.rcd_ac = False
    while sm.faults.n_active:
        sm.check(clk.step(), inp, pm, HIGH, 0, 60, True)
    assert ticks_diff(clk.now, raised) == 30000 and got[-1] == ("fault_cleared", "rcd_ac")


def test_monitor_selftest_handshake_and_timeout():
    got, emit = _events()
    sm = SafetyMonitor(emit)
    pm = PilotMachine()
    clk = Clock()
    _sense_for(pm, clk, "B", 100)
    inp = Inputs()
    assert not sm.start_selftest(clk.now, pm)  # no PWM, no C: nothing to test for
    pm.drive(clk.now, True, 160)
    pm.sense(clk.step(), "C")
    assert sm.start_selftest(clk.now, pm) and sm.selftest == SELFTEST_RUNNING
    assert not sm.start_selftest(clk.now, pm)  # one at a time
    inp.rcd_ac = True  # the test current trips the module on purpose
    sm.check(clk.step(), inp, pm, PWM, 160, 60, True)
    assert sm.faults.n_active == 0 and not sm.may_close(True)
    inp.rcd_ac = False
    inp.rcd_selftest = True
    sm.check(clk.step(), inp, pm, PWM, 160, 60, True)
    assert sm.selftest == SELFTEST_PASSED and sm.may_close(True) and not sm.may_close(None)
    sm.closed()
    assert sm.selftest == SELFTEST_IDLE and not sm.may_close(True)  # each close needs its own test
    assert sm.start_selftest(clk.step(), pm)
    inp.rcd_selftest = None
    started = clk.now
    while sm.selftest == SELFTEST_RUNNING:
        sm.check(clk.step(), inp, pm, PWM, 160, 60, True)
    assert 2000 <= ticks_diff(clk.now, started) <= 2010 and sm.faults.names == ["rcd_selftest"]


def test_monitor_overcurrent_after_7s_caps_the_offer():
    got, emit = _events()
    sm = SafetyMonitor(emit)
    pm, clk, _ = _charging_machine()
    inp = Inputs()
    inp.cp = "C"
    for k in range(3):
        inp.i_da[k] = 182  # (16 A + 0.5 A) * 1.1 = 18.15 A
    start = clk.now
    tripped = False
    while not tripped and ticks_diff(clk.now, start) < 8000:
        pm.sense(clk.step(), "C")
        tripped = sm.check(clk.now, inp, pm, PWM, 160, 60, True)
    assert tripped and 7000 <= ticks_diff(clk.now, start) <= 7020
    assert sm.faults.names == ["overcurrent"] and sm.penalty_da == 120
    sm.on_unplug()
    assert sm.penalty_da == 0 and sm.faults.n_active == 0  # a vehicle fault goes with the vehicle


def test_monitor_meter_and_pp_faults():
    got, emit = _events()
    sm = SafetyMonitor(emit)
    pm = PilotMachine()
    inp = Inputs()
    clk = Clock()
    inp.meter_ok = False
    start = clk.now
    while not sm.faults.n_active:
        sm.check(clk.step(), inp, pm, HIGH, 0, 60, True)
    assert 3000 <= ticks_diff(clk.now, start) <= 3010 and sm.faults.names == ["meter"]
    inp.meter_ok = True
    inp.pp_a = -1
    sm.check(clk.step(), inp, pm, HIGH, 0, 60, False)
    assert sm.faults.names == []  # tethered: no PP line to judge
    sm.check(clk.step(), inp, pm, HIGH, 0, 60, True)
    assert sm.faults.names == ["pp_invalid"]


# ---- session ---------------------------------------------------------------------------------------
def _session(auth=False, local=()):
    got = []
    s = S.Session(got.append)
    s.configure(auth, 60, list(local))
    return s, got


def _types(got):
    return [e["type"] + ("/" + e["result"] if e["type"] == "auth" else "") for e in got]


def test_session_without_auth_opens_at_plug_in():
    s, got = _session()
    assert s.classify(False, False, False, False, False) == S.IDLE
    s.on_plug(T0)
    s.tick(T0, True, 0)
    assert s.active and got == [{"type": "session_start", "auth_id": None}] and s.auth_state == S.AUTH_IDLE
    assert s.classify(False, False, True, False, True) == S.READY
    assert s.classify(False, False, False, False, True) == S.PAUSED_EVSE
    assert s.classify(False, True, True, False, False) == S.CHARGING
    assert s.classify(False, False, True, True, True) == S.PAUSED_EV
    assert s.classify(True, True, True, False, False) == S.FAULTED
    s.on_unplug()
    assert not s.active and got[-1] == {"type": "session_end", "reason": S.EV_UNPLUGGED}


def test_session_disabled_charger_does_not_open():
    s, got = _session()
    s.on_plug(T0)
    s.tick(T0, False, 0)
    assert not s.active and got == []


def test_session_waits_for_a_grant_and_times_out():
    s, got = _session(auth=True)
    s.on_plug(T0)
    s.tick(T0, True, 0)
    assert not s.active and s.auth_state == S.AUTH_PENDING
    assert s.classify(False, False, False, False, False) == S.WAITING_FOR_AUTH
    now = ticks_add(T0, 59990)
    s.tick(now, True, 0)
    assert s.auth_state == S.AUTH_PENDING
    s.tick(ticks_add(T0, 60000), True, 0)
    assert s.auth_state == S.AUTH_IDLE and _types(got) == ["auth/timeout"]
    s.authorize(ticks_add(T0, 61000), "app:1")
    s.tick(ticks_add(T0, 61010), True, 0)
    assert s.active and s.auth_state == S.AUTH_AUTHORIZED and s.auth_id == "app:1"
    assert _types(got) == ["auth/timeout", "auth/granted", "session_start"] and got[-1]["auth_id"] == "app:1"


def test_session_tags_local_and_unknown():
    s, got = _session(auth=True, local=("04A1",))
    s.on_plug(T0)
    s.present_tag(T0, "FFFF")
    assert s.auth_state == S.AUTH_DENIED and s.auth_id == "tag:FFFF"
    s.tick(T0, True, 0)
    assert not s.active
    s.present_tag(T0, "04A1")
    s.tick(T0, True, 0)
    assert s.active and s.auth_id == "tag:04A1"
    s.present_tag(T0, "FFFF")  # an unknown tag does not disturb a running session
    assert s.active and s.auth_id == "tag:04A1" and _types(got)[-1] == "auth/denied"


def test_session_stop_resume_and_restart_holds():
    s, got = _session()
    s.on_plug(T0)
    s.tick(T0, True, 0)
    s.stop()
    assert not s.may_charge() and s.classify(False, False, False, False, True) == S.FINISHED
    s.resume()
    assert s.may_charge()
    s.stop()
    s.on_unplug()
    assert got[-1] == {"type": "session_end", "reason": S.CMD_STOP}
    s.on_plug(T0)
    s.tick(T0, True, 0)
    assert s.may_charge()  # a stop lasts until the unplug
    s.end_for_restart()
    assert got[-1] == {"type": "session_end", "reason": S.RESTART} and not s.may_charge()
    s.resume()
    s.on_unplug()
    s.on_plug(T0)
    s.tick(T0, True, 0)
    assert not s.active and s.classify(False, False, False, False, True) == S.FINISHED  # for good


def test_session_deauthorize_and_latched_fault_end_it():
    s, got = _session()
    s.on_plug(T0)
    s.tick(T0, True, 0)
    s.deauthorize()
    assert _types(got)[-2:] == ["session_end", "auth/revoked"] and got[-2]["reason"] == S.DEAUTHORIZED
    s.tick(T0, True, 0)
    assert not s.active  # the next session needs a grant, even without auth_required
    s.authorize(T0, "app:2")
    s.tick(T0, True, 0)
    assert s.active
    s.tick(T0, True, 1)
    assert not s.active and got[-1] == {"type": "session_end", "reason": S.R_FAULT}
    s.tick(T0, True, 1)
    assert not s.active  # not while the fault is latched


def test_session_tick_allocates_nothing():
    s, got = _session()
    s.on_plug(T0)
    s.tick(T0, True, 0)

    def run():
        for _ in range(100):
            s.tick(T0, True, 0)
            s.classify(False, True, True, False, False)

    heap_locked(run)
    assert s.state == S.CHARGING and len(got) == 1
