# OCPP Smart Charging (firmware/ocpp_smart.py) on a temporary flash: the clock conversions, profile
# validation, stacking and purposes, validity, Relative / Absolute / Recurring schedules, W -> A,
# TxProfile rules, persistence, and the composite schedule. Runs on CPython and MicroPython.
from firmware import ocpp_smart as S
from firmware.ocpp_rpc import CallError
from firmware.storage import Storage
from mpcompat import TempDir, raises

T = 1764752400  # 2025-12-03T09:00:00Z


def prof(pid, limit, purpose=S.TX_DEFAULT, level=0, unit="A", kind="Relative", periods=None, **kw):
    p = {"chargingProfileId": pid, "stackLevel": level, "chargingProfilePurpose": purpose,
         "chargingProfileKind": kind,
         "chargingSchedule": {"chargingRateUnit": unit,
                              "chargingSchedulePeriod": periods or [{"startPeriod": 0, "limit": limit}]}}
    for k in kw:
        if k in ("startSchedule", "duration"):
            p["chargingSchedule"][k] = kw[k]
        else:
            p[k] = kw[k]
    return p


def test_time_conversions():
    assert S.format_time(T) == "2025-12-03T09:00:00Z"
    assert S.parse_time("2025-12-03T09:00:00Z") == T
    assert S.parse_time("2025-12-03T09:00:00.123Z") == T
    assert S.parse_time("2025-12-03T10:00:00+01:00") == T
    assert S.parse_time("2025-12-03T08:30:00-00:30") == T
    assert S.parse_time("1970-01-01T00:00:00Z") == 0
    assert S.parse_time("2000-02-29T00:00:00Z") == 951782400
    assert S.format_time(951782400) == "2000-02-29T00:00:00Z"
    assert S.format_time(4102444800) == "2100-01-01T00:00:00Z"
    for bad in ("", "2025-12-03", "2025-13-03T09:00:00Z", "2025-12-03T09:00:00X", "abcd-12-03T09:00:00Z", 5):
        raises(ValueError, S.parse_time, bad)


def test_validation():
    S.check_profile(prof(1, 16))
    bad = [prof(1, 16, purpose="Nope"), prof(1, -1), prof("1", 16), prof(1, 16, level=-1),
           prof(1, 16, periods=[{"startPeriod": 5, "limit": 1}]),
           prof(1, 16, periods=[{"startPeriod": 0, "limit": 1}, {"startPeriod": 0, "limit": 2}]),
           prof(1, 16, kind="Recurring"), prof(1, 16, validFrom="yesterday"), prof(1, 16, unit="kW"), [1]]
    for p in bad:
        raises(CallError, S.check_profile, p)


def test_stacking_purposes_and_tx_rules():
    d = TempDir("smart").path
    ps = S.Profiles(Storage(d))
    assert ps.limit_a(T, None, False) is None
    assert ps.set(0, prof(1, 16), None) == "Accepted"
    assert ps.set(0, prof(2, 10, level=1), None) == "Accepted"
    assert ps.limit_a(T, None, False) == 10  # the higher stack level wins
    assert ps.set(1, prof(3, 8, purpose=S.TX), None) == "Rejected"  # no transaction
    assert ps.set(0, prof(3, 8, purpose=S.TX), 5) == "Rejected"  # TxProfile on connector 0
    assert ps.set(1, prof(3, 8, purpose=S.TX, transactionId=6), 5) == "Rejected"  # another transaction
    assert ps.set(1, prof(3, 12, purpose=S.TX), 5) == "Accepted"
    assert ps.limit_a(T, T, True) == 12  # the TxProfile overrides the default, even above it
    assert ps.set(1, prof(4, 20, purpose=S.CP_MAX), None) == "Rejected"  # only on connector 0
    assert ps.set(0, prof(4, 11, purpose=S.CP_MAX), None) == "Accepted"
    assert ps.limit_a(T, T, True) == 11  # the charge point max caps it
    assert ps.limit_a(T, None, False) == 10
    ps.end_transaction()
    assert ps.limit_a(T, T, True) == 10
    # persisted: a new instance on the same flash has the same profiles
    ps2 = S.Profiles(Storage(d))
    assert ps2.limit_a(T, None, False) == 10
    assert ps2.set(0, prof(5, 6, level=1), None) == "Accepted"  # same purpose + level: replaced
    assert len(ps2.items) == 3 and ps2.limit_a(T, None, False) == 6
    assert ps2.clear(pid=99) == "Unknown"
    assert ps2.clear(purpose=S.TX_DEFAULT, level=1) == "Accepted"
    assert ps2.limit_a(T, None, False) == 11 or ps2.limit_a(T, None, False) == 16
    assert ps2.clear() == "Accepted" and ps2.limit_a(T, None, False) is None


def test_validity_schedules_and_units():
    d = TempDir("smart").path
    ps = S.Profiles(Storage(d))
    ps.set(0, prof(1, 16, validFrom=S.format_time(T + 60), validTo=S.format_time(T + 120)), None)
    assert ps.limit_a(T, None, False) is None
    assert ps.limit_a(T + 60, None, False) == 16
    assert ps.limit_a(T + 120, None, False) is None
    ps.clear()
    # relative to the transaction start, in W: 6900 W on 3 phases at 230 V = 10 A, then 1 phase
    ps.set(0, prof(1, 0, unit="W", periods=[{"startPeriod": 0, "limit": 6900},
                                           {"startPeriod": 600, "limit": 2300, "numberPhases": 1}]), None)
    assert abs(ps.limit_a(T + 10, T, True) - 10) < 1e-6
    assert abs(ps.limit_a(T + 700, T, True) - 10) < 1e-6  # 2300 W on one phase
    assert abs(ps.limit_a(T + 10, T, True, volts=240.0) - 6900 / 720) < 1e-6
    ps.clear()
    # absolute with a duration
    ps.set(0, prof(1, 8, kind="Absolute", startSchedule=S.format_time(T), duration=300), None)
    assert ps.limit_a(T - 1, None, False) is None and ps.limit_a(T, None, False) == 8
    assert ps.limit_a(T + 300, None, False) is None
    ps.clear()
    # recurring daily: 6 A from 17:00 to 21:00, 16 A otherwise
    anchor = S.parse_time("2025-12-01T00:00:00Z")
    ps.set(0, prof(1, 0, kind="Recurring", recurrencyKind="Daily", startSchedule=S.format_time(anchor),
                   periods=[{"startPeriod": 0, "limit": 16}, {"startPeriod": 17 * 3600, "limit": 6},
                            {"startPeriod": 21 * 3600, "limit": 16}]), None)
    day = S.parse_time("2025-12-05T00:00:00Z")
    assert ps.limit_a(day + 18 * 3600, None, False) == 6
    assert ps.limit_a(day + 22 * 3600, None, False) == 16
    assert ps.limit_a(day + 3600, None, False) == 16


def test_composite_schedule():
    d = TempDir("smart").path
    ps = S.Profiles(Storage(d))
    assert ps.composite(T, 3600, None, False, cap_a=16.0) == [(0, 16.0)]
    ps.set(0, prof(1, 0, kind="Absolute", startSchedule=S.format_time(T),
                   periods=[{"startPeriod": 0, "limit": 10}, {"startPeriod": 600, "limit": 20},
                            {"startPeriod": 1200, "limit": 0}]), None)
    assert ps.composite(T, 3600, None, False, cap_a=16.0) == [(0, 10.0), (600, 16.0), (1200, 0.0)]
    assert ps.composite(T + 300, 600, None, False) == [(0, 10.0), (300, 20.0)]
