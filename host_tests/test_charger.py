# IEC 61851 state machine and contactor timing of the charging core (design.md §4), in virtual
# time with a 10 ms tick; runs on CPython and on the MicroPython unix port.
from charger_rig import NEAR_WRAP, Rig

from firmware.iec61851 import duty_pm_for_da
from firmware.ticks import ticks_diff
from mpcompat import heap_locked


def _charging(start=0, cfg=None):
    r = Rig(start=start, cfg=cfg)
    assert r.charge() is not None
    r.run(1000)
    return r


def test_duty_from_current():
    assert duty_pm_for_da(60) == 100
    assert duty_pm_for_da(160) == 267
    assert duty_pm_for_da(320) == 533
    assert duty_pm_for_da(510) == 850
    assert duty_pm_for_da(630) == 892  # 63 / 2.5 + 64 = 89.2 %
    assert duty_pm_for_da(800) == 960
    assert duty_pm_for_da(59) == 1000


def test_closes_within_3s_of_b_to_c_across_tick_wrap():
    r = Rig(start=NEAR_WRAP)
    r.wants = False
    r.plug()
    r.run(4800)
    assert r.ch.mode == "connected_requesting" and r.ch.cp_name == "B2" and r.ch.pilot_mode == "pwm"
    assert not r.ch.contactor
    r.wants = True
    t = r.run_until(lambda: r.ch.contactor, 5000)
    assert t is not None and 300 <= t <= 3000, t
    assert ticks_diff(r.now, NEAR_WRAP) > 5000 and r.now < NEAR_WRAP  # crossed the ticks wrap
    assert r.ch.mode == "connected_charging" and r.ch.cp_name == "C2"
    assert r.ch.offered_da == 160 and r.ch.duty_pm == 267 and r.ch.limit_src == "max"


def test_no_close_without_pwm_or_diode_or_stable_c():
    r = Rig()
    r.plug()
    r.diode_fault = True
    r.run(3000)
    assert not r.ch.contactor and "diode" in r.ch.faults
    r2 = Rig()
    r2.plug()
    r2.run(200)  # C for 150 ms only
    assert r2.inp.cp == "C" and not r2.ch.contactor


def test_opens_within_100ms_of_c_to_b_and_c_to_a():
    r = _charging(NEAR_WRAP)
    r.wants = False
    t = r.run_until(lambda: not r.ch.contactor, 500)
    assert t is not None and t <= 100, t
    assert r.ch.mode == "connected_finished"
    r = _charging()
    r.unplug()
    t = r.run_until(lambda: not r.ch.contactor, 500)
    assert t is not None and t <= 100, t
    r.run(100)
    assert r.ch.mode == "disconnected" and r.types("session_end")[-1]["reason"] == "ev_unplugged"


def _trip(setup, fault, name_low=True):
    r = _charging()
    setup(r)
    t = r.run_until(lambda: not r.ch.contactor, 500)
    assert t == 0, (fault, t)  # opened in the very tick that saw it
    assert fault in r.ch.faults, (fault, r.ch.faults)
    assert r.ch.mode == "fault"
    # state F (steady -12 V) for at least 300 ms
    lows = 0
    while r.ch.pilot_mode == "low":
        assert r.ch.duty_pm == 0 and r.ch.cp_name == "F" and not r.ch.contactor
        r.step()
        lows += 1
    assert lows * r.dt >= 300, lows
    return r


def test_trip_opens_at_once_on_e():
    r = _trip(lambda r: setattr(r, "force_cp", "E"), "cp_short")
    r.force_cp = None
    r.run(100)
    assert "cp_short" not in r.ch.faults


def test_trip_opens_at_once_on_unexpected_f():
    _trip(lambda r: setattr(r, "force_cp", "F"), "cp_invalid")


def test_trip_opens_at_once_on_diode_fault():
    _trip(lambda r: setattr(r, "diode_fault", True), "diode")


def test_trip_opens_at_once_on_rcd_ac_and_dc():
    r = _trip(lambda r: r.rcd(ac=True), "rcd_ac")
    r.rcd(ac=False)
    r = _trip(lambda r: r.rcd(dc=True), "rcd_dc")


def test_state_d_refused():
    r = Rig()
    r.force_cp = "D"
    r.plug()
    r.run(5000)
    assert not r.ch.contactor and "vent_required" in r.ch.faults and r.ch.cp_name == "D"
    assert r.ch.pilot_mode != "pwm"
    r = _charging()
    r.force_cp = "D"
    r.step()
    assert not r.ch.contactor and "vent_required" in r.ch.faults
    r.run(60000)
    assert "vent_required" in r.ch.faults  # until unplug
    assert r.types("session_end")[-1]["reason"] == "fault"
    r.unplug()
    r.force_cp = None
    r.run(200)
    assert r.ch.faults == [] and r.ch.mode == "disconnected"


def test_cp_invalid_after_200ms_while_closed():
    r = _charging()
    r.force_cp = "X"
    t = r.run_until(lambda: not r.ch.contactor, 1000)
    assert t is not None and 150 <= t <= 250, t
    assert "cp_invalid" in r.ch.faults
    r.force_cp = None
    r.run(500)
    assert "cp_invalid" not in r.ch.faults


def test_x_is_not_c_for_closing():
    r = Rig()
    r.force_cp = "X"
    r.plug()  # the plug itself is not seen while X
    r.run(1000)
    r.force_cp = None
    r.run(100)
    r.force_cp = "X"
    r.run(3000)
    assert not r.ch.contactor and r.ch.faults == []


def test_pwm_removed_opens_when_vehicle_goes_b():
    r = _charging()
    r.stop_ms = 1500
    r.ch.stop(r.now)
    r.step()
    assert r.ch.pilot_mode == "high" and r.ch.offered_da == 0 and r.ch.contactor  # not under load
    t = r.run_until(lambda: not r.ch.contactor, 7000)
    assert t is not None and 1400 <= t <= 1600, t
    assert r.ch.mode == "connected_finished"


def test_pwm_removed_opens_after_6s_at_the_latest():
    r = _charging()
    r.stop_ms = 60000  # the vehicle ignores the loss of PWM
    r.ch.stop(r.now)
    t = r.run_until(lambda: not r.ch.contactor, 10000)
    assert t is not None and 5900 <= t <= 6000, t
    assert r.ch.faults == []


def test_min_pause_before_reclose():
    r = _charging(NEAR_WRAP)
    r.wants = False
    r.run_until(lambda: not r.ch.contactor, 500)
    opened = r.opened_at
    r.run(100)
    r.wants = True
    t = r.run_until(lambda: r.ch.contactor, 20000)
    assert t is not None
    gap = ticks_diff(r.closed_at, opened)
    assert 10000 <= gap <= 10000 + 3000, gap


def test_wakeup_once_after_30s():
    r = Rig()
    r.sleepy = True
    r.plug()
    highs = []
    last = None
    for _ in range(45000 // r.dt):
        r.step()
        m = r.ch.pilot_mode
        if m != last:
            highs.append((m, r.now))
            last = m
        if r.ch.contactor:
            break
    # pwm from plug-in, X1 after 30 s for 3 s, then pwm again; the woken vehicle charges
    while highs[0][0] != "pwm":
        highs.pop(0)
    modes = [m for m, _ in highs]
    assert modes[:3] == ["pwm", "high", "pwm"], modes
    assert 29900 <= ticks_diff(highs[1][1], highs[0][1]) <= 30100
    assert 2900 <= ticks_diff(highs[2][1], highs[1][1]) <= 3100
    assert r.ch.contactor
    # never twice per plug-in
    r2 = Rig()
    r2.wants = False
    r2.plug()
    r2.run(100000)
    assert r2.ch.pilot_mode == "pwm"


def test_lower_limit_at_once_higher_every_5s():
    r = _charging(NEAR_WRAP, {"standalone": False, "fallback_current_a": 6, "max_current_a": 32})
    assert r.ch.limit_src == "fallback" and r.ch.offered_da == 60
    r.run(5000)
    assert r.ch.set_cloud_limit(r.now, 20, 60, 1) is None
    r.step()
    assert r.ch.offered_da == 200  # the first change after >5 s at 6 A applies at once
    assert r.ch.set_cloud_limit(r.now, 10, 60, 2) is None
    r.step()
    assert r.ch.offered_da == 100  # lower: at once
    r.ch.set_cloud_limit(r.now, 16, 60, 3)
    t = r.run_until(lambda: r.ch.offered_da == 160, 10000)
    assert t is not None and 4900 <= t <= 5000, t
    r.ch.set_cloud_limit(r.now, 8, 60, 4)
    r.step()
    assert r.ch.offered_da == 80
    r.ch.set_cloud_limit(r.now, 12, 60, 5)
    r.run(2000)
    assert r.ch.offered_da == 80
    r.run(3000)
    assert r.ch.offered_da == 120


def test_overcurrent_after_about_7s():
    r = _charging()
    r.draw_da = 183  # (16 + 0.5) * 1.1 = 18.15 A: 18.3 A is over
    t = r.run_until(lambda: not r.ch.contactor, 10000)
    assert t is not None and 6900 <= t <= 7100, t
    assert "overcurrent" in r.ch.faults
    r2 = _charging()
    r2.draw_da = 181  # within the tolerance
    r2.run(20000)
    assert r2.ch.contactor and r2.ch.faults == []
    # retry after 30 s with a penalty (3/4 of the offer) named overcurrent
    r.draw_da = None
    r.run(30500)
    assert r.ch.faults == [] and r.ch.limit_src == "overcurrent" and r.ch.limit_da == 120
    assert r.run_until(lambda: r.ch.contactor, 15000) is not None


def test_rcd_selftest_before_each_close():
    r = Rig()
    r.plug()
    n = 0
    for _ in range(200):
        r.step()
        if r.ch.selftest_req:
            n += 1
    assert n == 1 and r.ch.contactor
    r.wants = False
    r.run(500)
    r.wants = True
    r.run(15000)
    assert r.ch.contactor


def test_rcd_selftest_fail_and_timeout_block_close():
    r = Rig()
    r.selftest_result = False
    r.plug()
    r.run(3000)
    assert not r.ch.contactor and r.ch.faults == ["rcd_selftest"] and r.ch.pilot_mode == "high"
    r.selftest_result = True
    r.run(30000)
    assert r.ch.contactor and r.ch.faults == []
    r = Rig()
    r.selftest_ms = 5000
    r.plug()
    t = r.run_until(lambda: r.ch.faults == ["rcd_selftest"], 5000)
    assert t is not None and t <= 2500
    assert not r.ch.contactor


def test_rcd_retries_three_times_then_latched_until_resume():
    r = _charging()
    for i in range(3):
        r.rcd(ac=True)
        r.step()
        assert "rcd_ac" in r.ch.faults and not r.ch.contactor
        r.rcd(ac=False)
        r.run(29000)
        assert "rcd_ac" in r.ch.faults
        t = r.run_until(lambda: r.ch.contactor, 20000)
        assert t is not None, i
        assert r.ch.session_active
    r.rcd(ac=True)
    r.step()
    r.rcd(ac=False)
    r.run(120000)
    assert r.ch.faults == ["rcd_ac"] and not r.ch.contactor
    assert r.types("session_end")[-1]["reason"] == "fault"
    r.ch.resume(r.now)
    t = r.run_until(lambda: r.ch.contactor, 15000)
    assert t is not None and r.ch.faults == [] and r.ch.session_active


def test_contactor_welded_is_latched():
    r = _charging()
    r.weld = True
    r.wants = False
    r.run(200)
    assert r.ch.faults == ["contactor_welded"] and not r.ch.contactor
    r.weld = False
    r.wants = True
    r.ch.resume(r.now)
    r.run(120000)
    assert "contactor_welded" in r.ch.faults and not r.ch.contactor and r.ch.pilot_mode == "high"
    assert r.ch.mode == "fault" and r.types("session_end")[-1]["reason"] == "fault"


def test_contactor_stuck_open():
    r = Rig()
    r.stuck_open = True
    r.plug()
    r.run(1000)
    assert "contactor_stuck_open" in r.ch.faults and not r.ch.contactor
    r.stuck_open = False
    r.run(45000)
    assert r.ch.faults == [] and r.ch.contactor


def test_overtemp_bands_and_hysteresis():
    r = _charging(0, {"max_current_a": 32})
    assert r.ch.offered_da == 320
    r.inp.temp_dc = 650
    r.step()
    assert r.ch.limit_da == 160 and r.ch.limit_src == "thermal" and r.ch.offered_da == 160
    r.inp.temp_dc = 680
    r.step()
    assert r.ch.limit_da == 80 and r.ch.offered_da == 80
    r.inp.temp_dc = 660
    r.run(10000)
    assert r.ch.limit_da == 80  # no step down before 62 degC
    r.inp.temp_dc = 710
    r.step()
    assert r.ch.faults == ["overtemp"] and r.ch.pilot_mode == "high" and r.ch.limit_da == 0
    t = r.run_until(lambda: not r.ch.contactor, 7000)
    assert t is not None  # a graceful stop, not a trip
    r.inp.temp_dc = 630
    r.run(1000)
    assert r.ch.faults == ["overtemp"]
    r.inp.temp_dc = 620
    r.run(100)
    assert r.ch.faults == [] and r.ch.limit_da == 320
    assert r.run_until(lambda: r.ch.contactor, 15000) is not None


def test_temperature_sensor_fault_is_unsafe():
    r = _charging()
    r.inp.temp_dc = None
    r.step()
    assert r.ch.faults == ["overtemp"] and r.ch.offered_da == 0


def test_meter_fault_stops_gracefully():
    r = _charging()
    r.inp.meter_ok = False
    r.run(2900)
    assert r.ch.faults == [] and r.ch.contactor
    r.run(200)
    assert r.ch.faults == ["meter"] and r.ch.pilot_mode == "high"
    r.inp.meter_ok = True
    r.run(100)
    assert r.ch.faults == []


def test_cable_capacity_and_pp_invalid_and_tethered():
    r = Rig(cfg={"max_current_a": 32})
    r.plug(cable_a=20)
    r.run(1000)
    assert r.ch.limit_da == 200 and r.ch.limit_src == "cable" and r.ch.offered_da == 200
    r.cable_a = -1
    r.step()
    r.step()
    assert "pp_invalid" in r.ch.faults and r.ch.offered_da == 0
    r = Rig(tethered=13, cfg={"max_current_a": 32})
    r.plug(cable_a=0)
    r.run(1000)
    assert r.ch.limit_da == 130 and r.ch.limit_src == "cable" and r.ch.contactor


def test_f_hold_after_fault_then_pilot_readable():
    r = _trip(lambda r: r.rcd(dc=True), "rcd_dc")
    assert r.ch.pilot_mode == "high"
    r.unplug()
    r.run(200)
    assert r.ch.mode == "fault" and not r.ch.session_active  # unplug seen through X1


def test_end_for_restart():
    r = _charging()
    r.ch.end_for_restart(r.now)
    r.step()
    assert r.types("session_end")[-1]["reason"] == "restart"
    assert r.ch.pilot_mode == "high"
    assert r.run_until(lambda: not r.ch.contactor, 7000) is not None
    r.run(30000)
    assert not r.ch.contactor and not r.ch.session_active


def test_version_changes_with_reported_fields():
    r = Rig()
    r.run(100)
    v = r.ch.version
    r.run(1000)
    assert r.ch.version == v
    r.plug()
    r.run(1000)
    assert r.ch.version > v and r.ch.contactor
    v = r.ch.version
    r.run(5000)
    assert r.ch.version == v
    r.wants = False
    r.run(100)
    assert r.ch.version > v


def test_tick_allocates_nothing_while_charging():
    r = _charging(NEAR_WRAP, {"standalone": False})
    r.ch.set_cloud_limit(r.now, 16, 3600, 1)
    r.run(100)
    ch = r.ch
    inp = r.inp
    from firmware.ticks import ticks_add

    def ticks():
        now = r.now
        for _ in range(3000):
            ch.tick(now, inp)
            now = ticks_add(now, 10)

    heap_locked(ticks)
    assert ch.contactor and ch.mode == "connected_charging" and ch.offered_da == 160
    assert ch.lease_ms_left is not None and ch.lease_ms_left < 3600 * 1000 - 29000
