# The soak machinery (tools/soak.py, tools/soak_core.py, tools/soak_live.py) at a tiny scale: each
# checker passes the firmware as it is and catches a violation when one is injected (a firmware
# timing broken on purpose, a corrupted session record, a shadow that disagrees), and the shrinker
# keeps a failing case failing while it gets shorter. `make soak` runs them at full size.
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import soak  # noqa: E402
import soak_core  # noqa: E402
import soak_live  # noqa: E402
from e2e import Msg  # noqa: E402

CPYTHON_ONLY = "drives processes and mosquitto; the core driver itself runs on MicroPython in make soak"


def test_core_soak_passes_the_firmware_and_is_deterministic():
    a = soak_core.run_many(11, 4, 120)
    assert a["violations"] == 0, a["failures"][:1]
    assert a["steps"] == 480 and a["ticks"] > 480
    assert soak_core.run_many(11, 4, 120)["ticks"] == a["ticks"]


def test_core_soak_catches_a_late_contactor_open_and_shrinks_it(monkeypatch):
    from firmware import pilot_machine

    monkeypatch.setattr(pilot_machine, "CP_OPEN_DEBOUNCE_MS", 400)  # §4 wants C->B open within 100 ms
    res = soak_core.run_many(1, 40, 200)
    assert res["violations"] > 0
    case = res["failures"][0]
    assert "after C ended" in case["violation"], case["violation"]
    small = soak.shrink(case, soak.core_fails)
    assert soak.core_fails(small) and len(small["actions"]) <= len(case["actions"])
    assert len(small["actions"]) < 40, small["actions"]
    monkeypatch.setattr(pilot_machine, "CP_OPEN_DEBOUNCE_MS", 20)
    assert not soak.core_fails(small)  # the real firmware passes the shrunk case


def test_core_soak_catches_a_corrupted_reading():
    def energy_goes_back(s):
        if s.ticks == 50:
            s.last_energy = s.r.inp.energy_wh + 1

    res = soak_core.run_many(3, 2, 50, breaker=energy_goes_back)
    assert res["violations"] == 2 and "energy decreased" in res["failures"][0]["violation"]


def _m(i, rel, d):
    import json

    return Msg(i, 0.0, rel, json.dumps(d).encode(), False)


def test_session_checker_catches_lost_duplicated_and_energy():
    env = {"v": 1, "boot": 2}
    rec = {"id": "S-2-1", "ts_start": None, "wh": 5, "meter_start_wh": 10, "meter_end_wh": 15,
           "stop_reason": "power_loss", "auth_id": None}
    good = [
        _m(0, "state", dict(env, seq=1, e_wh=10, session={"id": "S-2-1"})),
        _m(1, "session", dict(env, seq=2, **rec)),
        _m(2, "reply", dict(env, seq=3, id="a1", ok=True, result={"session_id": "S-2-1", "deleted": True})),
        _m(3, "state", dict(env, seq=4, e_wh=15, session=None)),
    ]
    r = soak_live.check_sessions(FakeClient(good))
    assert r["problems"] == [] and r["counts"]["sessions_seen"] == 1
    bad = good + [
        _m(4, "session", dict(env, seq=5, **rec)),  # re-sent after its ack deleted it
        _m(5, "event", dict(env, seq=6, type="session_started", session_id="S-2-2")),  # never delivered
        _m(6, "state", dict(env, seq=7, e_wh=14, session=None)),  # energy went back
    ]
    c = soak_live.check_sessions(FakeClient(bad))["counts"]
    assert c["sessions_duplicated"] == 1 and c["sessions_lost"] == 1 and c["energy_decreases"] == 1
    # QoS 1 redelivery (the same boot, seq and content twice, e.g. the ack's reply and a boot event
    # whose PUBACK a cut lost) is no failure; a boot counter that went back is
    boot = _m(4, "event", dict(env, seq=0, type="boot", reset_cause="power_on"))
    again = [boot] + good + [good[2], _m(5, "event", dict(boot.d))]
    r = soak_live.check_sessions(FakeClient(again))
    assert r["problems"] == [] and r["counts"]["redeliveries"] == 2, r
    reused = [boot] + good + [_m(5, "event", dict(boot.d, reset_cause="watchdog"))]
    r = soak_live.check_sessions(FakeClient(reused))
    assert r["counts"]["boot_counter_errors"] == 1, r


class FakeClient:
    def __init__(self, msgs):
        self.msgs = msgs


def test_fuzz_shadow_catches_a_wrong_apply(tmp_path):
    # a short live run against a real sim-charger and mosquitto: nothing wrong; then the same with a
    # shadow that believes max_current_a is 7 A: every get disagrees
    ok = soak_live.fuzz(0, 5, n_msgs=24)
    assert ok["fuzz_msgs"] == 24 and ok["fuzz_gets"] >= 4
    assert ok["fuzz_wrong_applies"] == ok["fuzz_missing_replies"] == ok["fuzz_crashes"] == 0, ok

    def believe_7a(shadow):
        shadow.settings["max_current_a"] = 7

    bad = soak_live.fuzz(0, 5, n_msgs=24, breaker=believe_7a)
    assert bad["fuzz_wrong_applies"] >= 2, bad
    for n in os.listdir(soak.FAIL_DIR):
        if n.startswith("fuzz-seed5"):
            os.remove(os.path.join(soak.FAIL_DIR, n))


def test_ocpp_fuzz_checkers(tmp_path):
    # a short live run against a real sim-charger in OCPP mode and a real central system: nothing
    # wrong; then a shadow that believes HeartbeatInterval is 7 s and frames that owe an answer the
    # charger never gives (a CALLRESULT to no CALL of its own): both are counted
    import soak_ocpp

    ok = soak_ocpp.ocpp_fuzz(0, 7, n_msgs=40)
    assert ok["fuzz_ocpp_msgs"] >= 40 and ok["fuzz_ocpp_config_checks"] >= 4, ok
    assert ok["fuzz_ocpp_crashes"] == ok["fuzz_ocpp_wrong_applies"] == ok["fuzz_ocpp_missing_replies"] == 0, ok

    def breaker(kind, obj):
        if kind == "shadow":
            obj["HeartbeatInterval"] = "7"
            return None
        text, exp = obj
        if exp[0] == "any":
            return '[3, "%s", {}]' % exp[1], exp
        return obj

    bad = soak_ocpp.ocpp_fuzz(0, 7, n_msgs=40, breaker=breaker)
    assert bad["fuzz_ocpp_wrong_applies"] >= 2 and bad["fuzz_ocpp_missing_replies"] >= 1, bad
    for n in os.listdir(soak.FAIL_DIR):
        if n.startswith("ocpp-seed7"):
            os.remove(os.path.join(soak.FAIL_DIR, n))
    log = tmp_path / "x.log"
    log.write_bytes(b"@bench {}\n123 rpc: error: KeyError('x',)\nTraceback (most recent call last):\nok\n")
    assert soak_ocpp._log_errors(str(log))[0] == 2
