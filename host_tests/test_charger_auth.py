# Authentication paths, commands, leases, standalone, disabled and max 0 of the charging core.
from charger_rig import NEAR_WRAP, Rig


def _auth_rig(start=0, **cfg):
    c = {"auth_required": True, "local_auth_ids": ["04A1B2"], "auth_timeout_s": 20}
    c.update(cfg)
    return Rig(start=start, cfg=c)


def test_plug_and_charge_without_auth():
    r = Rig()
    r.charge()
    assert r.ch.auth_state == "idle" and r.ch.auth_id is None and r.ch.session_active
    assert r.types("session_start") == [{"type": "session_start", "auth_id": None}]


def test_pending_until_local_tag():
    r = _auth_rig(NEAR_WRAP)
    r.plug()
    r.run(3000)
    assert r.ch.mode == "connected_requesting" and r.ch.auth_state == "pending"
    assert r.ch.pilot_mode == "high" and not r.ch.session_active
    assert r.ch.present_tag(r.now, "04A1B2") is None
    assert r.run_until(lambda: r.ch.contactor, 3000) is not None
    assert r.ch.auth_state == "authorized" and r.ch.auth_id == "tag:04A1B2"
    assert r.types("auth")[-1] == {"type": "auth", "result": "granted", "auth_id": "tag:04A1B2"}
    assert r.types("session_start")[-1]["auth_id"] == "tag:04A1B2"


def test_unknown_tag_denied():
    r = _auth_rig()
    r.plug()
    r.run(500)
    r.ch.present_tag(r.now, "FFFF")
    r.run(3000)
    assert r.ch.auth_state == "denied" and not r.ch.session_active and not r.ch.contactor
    assert r.types("auth")[-1] == {"type": "auth", "result": "denied", "auth_id": "tag:FFFF"}
    r.ch.present_tag(r.now, "04A1B2")  # a known tag still works
    assert r.run_until(lambda: r.ch.contactor, 3000) is not None


def test_cloud_grant_before_plug_and_its_timeout():
    r = _auth_rig()
    r.run(100)
    assert r.ch.authorize(r.now, "app:42") is None
    r.run(100)
    assert r.ch.auth_state == "authorized" and r.ch.auth_id == "app:42"
    r.run(15000)
    r.plug()
    assert r.run_until(lambda: r.ch.contactor, 3000) is not None
    assert r.types("session_start")[-1]["auth_id"] == "app:42"
    # an unused grant expires after auth_timeout_s
    r = _auth_rig()
    r.ch.authorize(r.now, "app:43")
    t = r.run_until(lambda: r.ch.auth_state == "idle", 30000)
    assert t is not None and 19900 <= t <= 20100, t
    assert r.types("auth")[-1] == {"type": "auth", "result": "timeout", "auth_id": "app:43"}
    r.plug()
    r.run(3000)
    assert not r.ch.session_active and r.ch.auth_state == "pending"


def test_plug_in_waits_auth_timeout_then_late_grant_still_works():
    r = _auth_rig()
    r.plug()
    r.run(100)
    assert r.ch.auth_state == "pending"
    t = r.run_until(lambda: r.ch.auth_state != "pending", 30000)
    assert t is not None and 19800 <= t <= 20000, t
    assert r.ch.auth_state == "idle"
    assert r.types("auth")[-1] == {"type": "auth", "result": "timeout", "auth_id": None}
    r.ch.authorize(r.now, "app:1")
    assert r.run_until(lambda: r.ch.contactor, 3000) is not None


def test_deauthorize_ends_session_and_revokes():
    r = _auth_rig()
    r.plug()
    r.ch.authorize(r.now, "app:7")
    r.run(3000)
    assert r.ch.contactor
    r.ch.deauthorize(r.now)
    r.step()
    assert r.types("session_end")[-1]["reason"] == "deauthorized"
    assert r.types("auth")[-1] == {"type": "auth", "result": "revoked", "auth_id": "app:7"}
    assert r.run_until(lambda: not r.ch.contactor, 7000) is not None
    r.run(30000)
    assert not r.ch.session_active and not r.ch.contactor and r.ch.auth_state == "idle"
    # free charging: deauthorize also holds until unplug or a new grant
    r = Rig()
    r.charge()
    r.ch.deauthorize(r.now)
    r.run(30000)
    assert not r.ch.session_active and not r.ch.contactor
    r.ch.authorize(r.now, "app:9")
    assert r.run_until(lambda: r.ch.contactor, 3000) is not None
    assert r.types("session_start")[-1]["auth_id"] == "app:9"


def test_stop_is_final_until_resume_or_unplug():
    r = Rig()
    r.charge()
    r.ch.stop(r.now)
    r.run(30000)
    assert not r.ch.contactor and r.ch.mode == "connected_finished" and r.ch.session_active
    r.ch.resume(r.now)
    assert r.run_until(lambda: r.ch.contactor, 3000) is not None
    r.ch.stop(r.now)
    r.run(7000)
    r.unplug()
    r.run(200)
    assert r.types("session_end")[-1]["reason"] == "cmd_stop"
    r.plug()
    assert r.run_until(lambda: r.ch.contactor, 12000) is not None  # stop ended with the unplug
    r.unplug()
    r.run(200)
    assert r.types("session_end")[-1]["reason"] == "ev_unplugged"


def test_standalone_ignores_cloud_limits_but_honours_authorize():
    r = _auth_rig(standalone=True, max_current_a=20)
    assert r.ch.set_cloud_limit(r.now, 8, 60, 1)[0] == "not_allowed"
    r.plug()
    r.ch.authorize(r.now, "app:1")
    r.run(3000)
    assert r.ch.contactor and r.ch.offered_da == 200 and r.ch.limit_src == "max"
    assert r.ch.lease_ms_left is None


def test_fallback_before_any_lease_and_lease_ttl_expiry():
    r = Rig(start=NEAR_WRAP, cfg={"standalone": False, "fallback_current_a": 10, "max_current_a": 32})
    r.charge()
    assert r.ch.limit_src == "fallback" and r.ch.offered_da == 100 and r.ch.lease_ms_left is None
    assert r.ch.set_cloud_limit(r.now, 6, 10, 5) is None
    r.step()
    assert r.ch.limit_src == "cloud" and r.ch.offered_da == 60
    assert 9900 <= r.ch.lease_ms_left <= 10000
    t = r.run_until(lambda: r.ch.limit_src != "cloud", 20000)
    assert t is not None and 9900 <= t <= 10000, t
    assert r.ch.limit_src == "fallback" and r.ch.lease_ms_left is None
    assert r.types("limit_expired") == [{"type": "limit_expired", "fallback_a": 10.0}]
    r.run(5000)
    assert r.ch.offered_da == 100


def test_stale_seq_changes_nothing():
    r = Rig(cfg={"standalone": False})
    assert r.ch.set_cloud_limit(r.now, 10, 60, 5) is None
    res = r.ch.set_cloud_limit(r.now, 16, 60, 5)
    assert res[0] == "stale"
    assert r.ch.set_cloud_limit(r.now, 16, 60, 4)[0] == "stale"
    r.step()
    assert r.ch.limit_da == 100
    assert r.ch.set_cloud_limit(r.now, 16, 0, 6)[0] == "out_of_range"
    assert r.ch.set_cloud_limit(r.now, "x", 60, 6)[0] == "bad_request"
    assert r.ch.set_cloud_limit(r.now, [1, 2], 60, 6)[0] == "bad_request"
    assert r.ch.set_cloud_limit(r.now, 16, None, 6) is None  # default ttl 60 s
    r.step()
    assert r.ch.limit_da == 160 and 59000 <= r.ch.lease_ms_left <= 60000


def test_per_phase_limit_through_rotation():
    r = Rig(cfg={"standalone": False, "max_current_a": 32, "phase_rotation": "L2L3L1"})
    # grid L1 16, L2 20, L3 10: terminals L1<-L2 (20), L2<-L3 (10), L3<-L1 (16)
    assert r.ch.set_cloud_limit(r.now, [16, 20, 10], 60, 1) is None
    r.step()
    assert r.ch.limit_da == 100 and r.ch.limit_src == "cloud"
    # a single-phase charger offers its terminal L1's grid phase only
    r1 = Rig(phases=1, cfg={"standalone": False, "max_current_a": 32, "phase_rotation": "L2L3L1"})
    r1.ch.set_cloud_limit(r1.now, [16, 20, 10], 60, 1)
    r1.step()
    assert r1.ch.limit_da == 200 and r1.ch.phases == 1
    r3 = Rig(cfg={"standalone": False, "max_current_a": 32, "phase_rotation": "L3L1L2"})
    r3.ch.set_cloud_limit(r3.now, [25, 30, 7.5], 60, 1)
    r3.step()
    assert r3.ch.limit_da == 75


def test_fallback_phases_and_zero_fallback_pauses():
    r = Rig(cfg={"standalone": False, "fallback_current_a": 0, "fallback_phases": 1})
    r.plug()
    r.run(3000)
    assert r.ch.phases == 1 and r.ch.limit_da == 0 and r.ch.pilot_mode == "high"
    assert r.ch.mode == "connected_requesting" and not r.ch.contactor
    r.ch.set_cloud_limit(r.now, 16, 60, 1)
    assert r.run_until(lambda: r.ch.contactor, 3000) is not None
    assert r.ch.phases == 3 and r.ch.offered_da == 160
    r.run_until(lambda: r.ch.limit_src == "fallback", 61000)
    assert r.ch.pilot_mode == "high"  # 0 A fallback = pause
    assert r.run_until(lambda: not r.ch.contactor, 7000) is not None
    assert r.types("limit_expired")[-1]["fallback_a"] == 0
    r.run(100)
    assert r.ch.phases == 1  # switched only with the contactor open


def test_limit_below_min_pauses_and_resumes():
    r = Rig(cfg={"standalone": False, "fallback_current_a": 16, "min_current_a": 8})
    r.charge()
    r.ch.set_cloud_limit(r.now, 7, 60, 1)
    r.step()
    assert r.ch.pilot_mode == "high" and r.ch.offered_da == 0 and r.ch.contactor
    assert r.run_until(lambda: not r.ch.contactor, 7000) is not None
    r.ch.set_cloud_limit(r.now, 9, 60, 2)
    t = r.run_until(lambda: r.ch.contactor, 15000)
    assert t is not None and r.ch.offered_da == 90


def test_disabled_never_charges():
    r = Rig(cfg={"enabled": False})
    r.plug()
    r.run(5000)
    assert r.ch.mode == "disabled" and not r.ch.contactor and r.ch.pilot_mode == "high"
    assert not r.ch.session_active and r.ch.limit_src == "none"
    r.set(enabled=True)
    assert r.run_until(lambda: r.ch.contactor, 3000) is not None
    r.set(enabled=False)
    assert r.run_until(lambda: not r.ch.contactor, 7000) is not None
    assert r.ch.mode == "disabled" and r.ch.session_active  # the session ends at unplug


def test_max_zero_blocks_charging():
    r = Rig(cfg={"max_current_a": 0})
    r.plug()
    r.run(5000)
    assert not r.ch.contactor and r.ch.limit_da == 0 and r.ch.limit_src == "max"
    assert r.ch.pilot_mode == "high" and r.ch.offered_da == 0
    r.set(max_current_a=10)
    assert r.run_until(lambda: r.ch.contactor, 3000) is not None
    r.set(max_current_a=0)
    r.step()
    assert r.ch.offered_da == 0


def test_lease_capped_by_max_and_cable():
    r = Rig(cfg={"standalone": False, "max_current_a": 16})
    r.plug(cable_a=13)
    r.ch.set_cloud_limit(r.now, 32, 60, 1)
    r.run(1000)
    assert r.ch.limit_da == 130 and r.ch.limit_src == "cable"
    r.set(max_current_a=10)
    r.step()
    assert r.ch.limit_da == 100 and r.ch.limit_src == "max" and r.ch.offered_da == 100


def test_tag_uid_that_is_not_utf8_is_refused():
    try:
        bad = b"04\xed\xa0\x80".decode()  # MicroPython's decoder lets an encoded surrogate through
    except UnicodeError:
        bad = "04\ud800"  # CPython holds it as a lone surrogate
    r = Rig(cfg={"auth_required": True, "local_auth_ids": ["04A1"]})
    assert r.ch.present_tag(r.now, bad) == ("bad_request", "tag uid is not valid UTF-8")
    assert r.ch.present_tag(r.now, "x" * 61)[0] == "bad_request"
    r.step()
    assert r.ch.auth_state == "idle" and r.events == []  # nothing stored, nothing echoed


def test_the_phase_relay_waits_for_the_contacts_to_be_open():
    # found by `make soak` (seed 527): charging on one phase from the fallback, a CP fault opens the
    # contactor in the same tick as a lease (three phases) arrives; the core switched the phases in
    # that tick, while the contacts were still closed (their feedback said so)
    r = Rig(cfg={"standalone": False, "fallback_current_a": 16, "fallback_phases": 1})
    assert r.charge() is not None and r.ch.phases == 1
    r.run(400)
    assert r.inp.contactor_closed
    r.force_cp = "X"  # an invalid pilot level: trips, the contactor opens at once
    r.ch.set_cloud_limit(r.now, 16, 60, 1)
    seen = []
    for _ in range(30):
        before = r.ch.phases
        r.step()
        if r.ch.phases != before:
            seen.append(r.inp.contactor_closed)  # what the contacts said in the tick of the switch
    assert not r.ch.contactor and r.ch.phases == 3 and seen == [False], seen  # switched once, with the contacts open
