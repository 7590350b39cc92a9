"""Contract end to end, charging side: limits, commands, config, authorization and sessions through
the real firmware (tools/sim-charger) on a real mosquitto, as the cloud and the vehicle see it.
Chargers that do not depend on each other run at the same time (e2e.parallel) to keep the wall time
down; every wait is on a condition with a timeout.
"""

import time

import pytest
from e2e import (
    FAST,
    SETTINGS_KEYS,
    assert_ordered,
    check_envelope,
    check_session,
    check_state,
    monotonic_e_wh,
    parallel,
    retained,
)

CPYTHON_ONLY = "real broker and firmware processes"


def online(cl, since=0, timeout=15):
    """The charger is connected, and so is its vehicle link (it publishes ev/state only once it is
    connected and subscribed to sim/<id>/ev)."""
    cl.wait("online", lambda p: p == b"online", timeout, since)
    if cl.sim + "ev/state" in cl.topics:
        cl.wait("ev/state", None, timeout, since)


def charging(cl, since=0, timeout=8):
    """Wait until the vehicle really gets power (contactor output closed), return the state saying so."""
    cl.ev_state(lambda d: d["contactor_out"] is True, timeout, since)
    return cl.state(lambda d: d["contactor"] is True, 3, since)


def rejected(cl, topic, since, codes):
    d = cl.event("rejected", lambda d: d["topic"] == topic, 5, since)
    assert d["error"] in codes, d
    return d


# ---- limits ------------------------------------------------------------------------------------------
def test_limits(rig):
    lat = {}

    def main_charger():
        ch, cl = rig.charger("E2ELIM", dict(FAST, standalone=False, max_current_a=32, fallback_current_a=6,
                                            phase_rotation="L2L3L1"))
        online(cl)
        cl.plug()
        st = charging(cl)
        assert st["offered_a"] == 6.0 and st["limit_src"] == "fallback" and st["lease_s"] is None, st

        # a lease: offered, cloud, seconds left
        m = cl.mark()
        cl.limit(16, 30, 10)
        st = cl.state(lambda d: d["offered_a"] == 16.0, 8, m)  # a raise may wait for the 5 s raise interval
        assert st["limit_src"] == "cloud" and st["limit_a"] == 16.0 and 25 <= st["lease_s"] <= 30, st
        assert st["pwm_duty"] == pytest.approx(26.7, abs=0.15), st

        # a lower limit applies at once: limit publish -> PWM change seen by the vehicle
        m = cl.mark()
        t0 = cl.limit(10, 30, 11)
        ev = cl.wait("ev/state", lambda d: abs(d["duty"] - 16.7) < 0.2, 3, m)
        lat["limit_to_pwm_ms"] = (ev.t - t0) * 1000
        st = cl.state(lambda d: d["offered_a"] == 10.0, 2, m)
        assert st["limit_src"] == "cloud"
        assert lat["limit_to_pwm_ms"] < 1500, lat  # at once, not after the 5 s raise interval

        # stale seq: ignored (and said so); ttl out of range: rejected whole (its seq is not consumed)
        for doc in ({"a": 20, "ttl_s": 30, "seq": 11}, {"a": 20, "ttl_s": 30, "seq": 3},
                    {"a": 7, "ttl_s": 0, "seq": 12}, {"a": 7, "ttl_s": 3601, "seq": 12},
                    {"a": 7, "ttl_s": -5, "seq": 12}):
            k = cl.mark()
            cl.publish("limit", doc)
            rejected(cl, "limit", k, ("out_of_range",))
        r = cl.cmd("get")["result"]["state"]
        assert r["offered_a"] == 10.0 and r["limit_a"] == 10.0 and r["limit_src"] == "cloud", r
        assert not cl.all("state", m, lambda d: d["offered_a"] not in (10.0,)), "a rejected limit was applied"
        m = cl.mark()
        cl.limit(9, 30, 12)  # seq 12 still free
        cl.state(lambda d: d["offered_a"] == 9.0, 3, m)

        # per grid phase through the phase rotation (L2L3L1: terminals on grid L2, L3, L1): a 3-phase
        # charger offers the smallest of the three
        m = cl.mark()
        cl.limit([16, 8, 20], 30, 13)
        st = cl.state(lambda d: d["offered_a"] == 8.0, 3, m)
        assert st["limit_src"] == "cloud" and st["phases"] == 3, st

        # below min_current_a: pause (steady +12 V, contactor opened once the vehicle is in B)
        m = cl.mark()
        cl.limit(3, 60, 14)
        st = cl.state(lambda d: d["offered_a"] == 0.0, 3, m)
        assert st["pwm_duty"] == 100 and st["limit_a"] == 3.0 and st["cp"] in ("C1", "B1"), st
        cl.ev_state(lambda d: d["contactor_out"] is False and d["duty"] == 100.0, 8, m)
        st = cl.state(lambda d: d["contactor"] is False, 3, m)
        assert st["offered_a"] == 0.0 and st["mode"] != "connected_charging", st
        # ... and resumes when the limit allows again (after the minimum rest of 10 s)
        m = cl.mark()
        cl.limit(12, 60, 15)
        st = charging(cl, m, 16)
        assert st["offered_a"] == 12.0 and st["limit_src"] == "cloud", st

        # expiry: fallback_current_a and `limit_expired`
        m = cl.mark()
        t0 = cl.limit(8, 2, 16)
        cl.state(lambda d: d["offered_a"] == 8.0, 3, m)
        ev = cl.event("limit_expired", None, 5, m)
        assert ev["fallback_a"] == 6, ev
        check_envelope(ev)
        assert 1.5 <= time.monotonic() - t0 <= 4.0
        st = cl.state(lambda d: d["limit_src"] == "fallback", 3, m)
        assert st["offered_a"] == 6.0 and st["lease_s"] is None, st

        # standalone: limits ignored entirely
        assert cl.cmd("set", settings={"standalone": True})["ok"] is True
        m = cl.mark()
        cl.limit(7, 60, 17)
        rejected(cl, "limit", m, ("not_allowed",))
        r = cl.cmd("get")["result"]["state"]
        assert r["limit_src"] != "cloud" and r["lease_s"] is None and r["standalone"] is True, r
        assert r["offered_a"] != 7.0, r
        assert_ordered(cl)

    def one_phase_fallback():
        ch, cl = rig.charger("E2E1PH", dict(FAST, standalone=False, fallback_current_a=10, fallback_phases=1))
        online(cl)
        cl.plug()
        st = charging(cl)
        assert st["phases"] == 1 and st["offered_a"] == 10.0 and st["limit_src"] == "fallback", st
        ev = cl.ev_state(lambda d: d["draw_a"][0] > 9, 5)
        assert ev["draw_a"][1:] == [0.0, 0.0], ev  # only terminal L1 is switched
        st = cl.state(lambda d: d["i_a"] is not None and d["i_a"][0] > 9, 4)
        assert st["i_a"][1] == 0.0 and st["i_a"][2] == 0.0, st

    parallel(main_charger, one_phase_fallback)
    print("limit publish -> PWM at the vehicle: %.0f ms" % lat["limit_to_pwm_ms"])


# ---- commands ----------------------------------------------------------------------------------------
def test_commands(rig):
    def stop_resume_restart():
        sid = "E2ECMD"
        ch, cl = rig.charger(sid, FAST)
        online(cl)
        r = cl.cmd("get")
        check_envelope(r)
        assert r["ok"] is True and sorted(r["result"]["settings"]) == sorted(SETTINGS_KEYS)
        st = r["result"]["state"]
        check_state(st)  # the contract: get's state carries the envelope of the reply it is in
        env = ("v", "boot", "seq", "up_ms", "ts")
        assert [st[k] for k in env] == [r[k] for k in env], (st, r)
        cl.plug()
        charging(cl)

        m = cl.mark()
        r = cl.cmd("stop")
        assert r["ok"] is True, r
        st = cl.state(lambda d: d["mode"] == "connected_finished", 3, m)
        assert st["pwm_duty"] == 100 and st["offered_a"] == 0.0 and st["session"] is not None, st
        cl.state(lambda d: d["contactor"] is False, 8, m)
        m = cl.mark()
        r = cl.cmd("resume")
        assert r["ok"] is True, r
        cl.state(lambda d: d["mode"] != "connected_finished", 3, m)
        charging(cl, m, 16)  # after the minimum rest between an open and the next close

        # restart while charging: reply first, the session closed (restart), offline, new boot
        m = cl.mark()
        sess_id = cl.last("state").d["session"]["id"]
        r = cl.cmd("restart", cid="c-restart-1")
        assert r["ok"] is True, r
        off = cl.wait("online", lambda p: p == b"offline", 10, m)
        boot = cl.wait("event", lambda d: d["type"] == "boot", 20, m)
        on = cl.wait("online", lambda p: p == b"online", 5, off.idx)
        rep = cl.wait("reply", lambda d: d["id"] == "c-restart-1", 1, m)
        sess = cl.wait("session", lambda d: d["id"] == sess_id, 1, m)
        assert rep.idx < sess.idx < off.idx < on.idx, (rep.idx, sess.idx, off.idx, on.idx)
        assert boot.idx > off.idx
        check_session(sess.d)
        assert sess.d["stop_reason"] == "restart", sess.d
        assert boot.d["boot"] == r["boot"] + 1 and boot.d["cmd_id"] == "c-restart-1", boot.d
        assert boot.d["reset_cause"] == "soft", boot.d
        # the offline was the firmware's own: exactly one offline between the reply and the new boot
        assert len([x for x in cl.all("online", m) if x.raw == b"offline"]) == 1
        assert cl.cmd("get")["ok"] is True
        assert_ordered(cl)

    def the_others():
        ch, cl = rig.charger("E2ECMD2", FAST)
        online(cl)
        r = cl.cmd("authorize", auth_id="app:42")
        assert r["ok"] is True and r["result"]["auth_id"] == "app:42", r
        cl.plug()
        st = charging(cl)
        assert st["session"]["auth_id"] == "app:42" and st["auth"]["id"] == "app:42", st
        started = cl.event("session_started")
        m = cl.mark()
        r = cl.cmd("deauthorize")
        assert r["ok"] is True, r
        ev = cl.event("auth", lambda d: d["result"] == "revoked", 3, m)
        assert ev["auth_id"] == "app:42", ev
        sess = check_session(cl.wait("session", None, 5, m).d)
        assert sess["stop_reason"] == "deauthorized" and sess["auth_id"] == "app:42", sess
        assert sess["id"] == started["session_id"]
        cl.state(lambda d: d["pwm_duty"] == 100 and d["session"] is None, 3, m)
        r = cl.cmd("session_ack", session_id=sess["id"])
        assert r["ok"] is True and r["result"] == {"session_id": sess["id"], "deleted": True}, r
        r = cl.cmd("session_ack", session_id=sess["id"])
        assert r["ok"] is True and r["result"]["deleted"] is False, r
        m = cl.mark()
        r = cl.cmd("set", settings={"max_current_a": 13})
        assert r["ok"] is True and r["result"]["settings"]["max_current_a"] == 13, r
        assert sorted(r["result"]["settings"]) == sorted(SETTINGS_KEYS)
        cl.event("config_applied", None, 3, m)
        cl.wait("config/reported", lambda d: d["max_current_a"] == 13, 3, m)
        r = cl.cmd("dance")
        assert r["ok"] is False and r["error"] == "unknown_op", r
        m = cl.mark()
        cl.publish("cmd", {"op": "get"})
        rejected(cl, "cmd", m, ("bad_request",))
        cl.publish("cmd", {"id": "x" * 65, "op": "get"})
        time.sleep(0.3)
        assert len(cl.all("event", m, lambda d: d["type"] == "rejected" and d["topic"] == "cmd")) == 2
        assert not cl.all("reply", m)
        assert_ordered(cl)

    parallel(stop_resume_restart, the_others)


# ---- config ------------------------------------------------------------------------------------------
BAD_CONFIGS = (
    {"max_current_a": 10, "bogus": 1},
    {"max_current_a": 10, "min_current_a": 5},
    {"enabled": "yes"},
    {"max_current_a": 33},
    {"max_current_a": -1},
    {"fallback_phases": 2},
    {"phase_rotation": "L1L1L1"},
    {"local_auth_ids": ["x"] * 101},
    {"local_auth_ids": "04A1B2"},
    {"local_auth_ids": [""]},
    {"state_interval_s": 0},
    {"state_interval_s": 1.5},
    {"session_retry_s": 4},
    {"auth_timeout_s": 9},
    {"auth_timeout_s": 3601},
    {"fallback_current_a": -1},
    {"standalone": 1},
    {"auth_required": None},
    {"serial": "X"},
    {"mqtt_prefix": "other"},
)


def test_config_partial_rejected_whole_persisted(rig):
    sid = "E2ECFG"
    ch, cl = rig.charger(sid, FAST)
    online(cl)
    rep0 = cl.wait("config/reported").d
    m = cl.mark()
    cl.config({"max_current_a": 20, "auth_timeout_s": 30})
    cl.event("config_applied", None, 3, m)
    rep = cl.wait("config/reported", lambda d: d["max_current_a"] == 20, 3, m).d
    assert rep == dict(rep0, max_current_a=20, auth_timeout_s=30), rep
    st = cl.state(None, 3, m)
    assert st["limit_a"] <= 20.0

    m = cl.mark()
    for doc in BAD_CONFIGS:
        k = cl.mark()
        cl.config(doc, retain=False)
        rejected(cl, "config", k, ("bad_request", "out_of_range"))
    r = cl.cmd("get")["result"]["settings"]
    assert r == rep, r  # nothing of any rejected document was applied
    assert not cl.all("event", m, lambda d: d["type"] == "config_applied")
    assert not cl.all("config/reported", m)

    # set: the same checks, answered on reply
    for doc in BAD_CONFIGS[:4]:
        r = cl.cmd("set", settings=doc)
        assert r["ok"] is False and r["error"] in ("bad_request", "out_of_range"), (doc, r)
    m = cl.mark()
    r = cl.cmd("set", settings={"max_current_a": 12, "local_auth_ids": ["AA11"], "enabled": False})
    assert r["ok"] is True, r
    want = dict(rep, max_current_a=12, local_auth_ids=["AA11"], enabled=False)
    assert r["result"]["settings"] == want
    cl.event("config_applied", None, 3, m)
    assert cl.wait("config/reported", lambda d: d["max_current_a"] == 12, 3, m).d == want
    st = cl.state(lambda d: d["enabled"] is False, 3, m)
    assert st["mode"] == "disabled", st

    # the cloud clears its retained document (ignored), then a power cut: the settings persist
    m = cl.mark()
    cl.config(b"")
    time.sleep(0.3)
    assert not cl.all("event", m), cl.all("event", m)
    assert retained(rig.broker.port, "evse/%s/config" % sid, 0.5) is None
    ch.sigkill()
    m = cl.mark()
    ch.start()
    online(cl, m)
    assert cl.wait("config/reported", None, 5, m).d == want
    assert cl.cmd("get")["result"]["settings"] == want
    st = cl.state(None, 3, m)
    assert st["enabled"] is False and st["mode"] == "disabled", st


# ---- authorization -----------------------------------------------------------------------------------
def test_auth(rig):
    AUTH = dict(FAST, auth_required=True, auth_timeout_s=10, local_auth_ids=["04A1B2"])

    def cloud_grant_and_tags():
        ch, cl = rig.charger("E2EAUTH", AUTH)
        online(cl)
        m = cl.mark()
        cl.plug()
        st = cl.state(lambda d: d["auth"]["state"] == "pending", 3, m)
        assert st["mode"] == "connected_requesting" and st["auth"]["required"] is True, st
        assert st["session"] is None and st["offered_a"] == 0.0, st
        time.sleep(1.5)
        assert cl.last("state").d["contactor"] is False
        r = cl.cmd("authorize", auth_id="app:42")
        assert r["ok"] is True, r
        ev = cl.event("auth", lambda d: d["result"] == "granted", 3, m)
        assert ev["auth_id"] == "app:42", ev
        cl.event("session_started", None, 3, m)
        st = charging(cl, m)
        assert st["auth"] == {"required": True, "state": "authorized", "id": "app:42"}, st
        assert st["session"]["auth_id"] == "app:42", st
        m = cl.mark()
        cl.ev("unplug")
        sess = check_session(cl.wait("session", None, 5, m).d)
        assert sess["auth_id"] == "app:42" and sess["stop_reason"] == "ev_unplugged", sess

        # RFID: an unknown tag is denied, a local one grants "tag:<uid>"
        m = cl.mark()
        cl.plug()
        cl.state(lambda d: d["auth"]["state"] == "pending", 3, m)
        cl.ev("tag", id="DEADBEEF")
        ev = cl.event("auth", lambda d: d["result"] == "denied", 3, m)
        st = cl.state(lambda d: d["auth"]["state"] == "denied", 3, m)
        assert st["contactor"] is False and st["session"] is None, st
        time.sleep(1.0)
        assert cl.last("state").d["contactor"] is False
        m = cl.mark()
        cl.ev("tag", id="04A1B2")
        ev = cl.event("auth", lambda d: d["result"] == "granted", 3, m)
        assert ev["auth_id"] == "tag:04A1B2", ev
        st = charging(cl, m, 14)  # the contactor rests 10 s between an open and the next close
        assert st["auth"]["id"] == "tag:04A1B2" and st["session"]["auth_id"] == "tag:04A1B2", st
        m = cl.mark()
        cl.ev("unplug")
        sess = check_session(cl.wait("session", None, 5, m).d)
        assert sess["auth_id"] == "tag:04A1B2", sess
        assert_ordered(cl)

    def grant_times_out():
        ch, cl = rig.charger("E2EAUTO", AUTH)
        online(cl)
        m = cl.mark()
        t0 = time.monotonic()
        assert cl.cmd("authorize", auth_id="app:late")["ok"] is True
        cl.state(lambda d: d["auth"]["state"] == "authorized", 3, m)
        ev = cl.event("auth", lambda d: d["result"] == "timeout", 14, m)
        assert ev["auth_id"] == "app:late", ev
        assert 9.0 <= time.monotonic() - t0 <= 12.5
        cl.state(lambda d: d["auth"]["state"] == "idle" and d["auth"]["id"] is None, 3, m)
        # a plug-in now waits for a grant, no charging
        m = cl.mark()
        cl.plug()
        cl.state(lambda d: d["auth"]["state"] == "pending", 3, m)

    def plug_in_times_out():
        ch, cl = rig.charger("E2EAUPL", AUTH)
        online(cl)
        m = cl.mark()
        cl.plug()
        cl.state(lambda d: d["auth"]["state"] == "pending", 3, m)
        ev = cl.event("auth", lambda d: d["result"] == "timeout", 14, m)
        assert ev["auth_id"] is None, ev
        st = cl.state(lambda d: d["auth"]["state"] == "idle", 3, m)
        assert st["contactor"] is False and st["session"] is None, st
        # a later grant still starts the session without re-plugging
        m = cl.mark()
        assert cl.cmd("authorize", auth_id="app:7")["ok"] is True
        st = charging(cl, m)
        assert st["session"]["auth_id"] == "app:7", st

    parallel(cloud_grant_and_tags, grant_times_out, plug_in_times_out)


# ---- sessions ----------------------------------------------------------------------------------------
def ack_once_then_never(cl, sid, quiet_s):
    """Acknowledge session sid once; afterwards no record with that id may be published (no message
    with a (boot, seq) after the ack's reply carries it), and a second ack deletes nothing."""
    r = cl.cmd("session_ack", session_id=sid)
    assert r["ok"] is True and r["result"] == {"session_id": sid, "deleted": True}, r
    after = (r["boot"], r["seq"])
    time.sleep(quiet_s)
    late = [m.d for m in cl.all("session", 0, lambda d: d["id"] == sid) if (m.d["boot"], m.d["seq"]) > after]
    assert not late, late
    r = cl.cmd("session_ack", session_id=sid)
    assert r["ok"] is True and r["result"]["deleted"] is False, r


def test_sessions(rig):
    def plug_charge_unplug_retry_ack():
        ch, cl = rig.charger("E2ESES", FAST)
        online(cl)
        cl.plug()
        started = cl.event("session_started", None, 5)
        st = charging(cl)
        assert st["session"]["id"] == started["session_id"] and st["session"]["auth_id"] is None, st
        assert isinstance(st["session"]["ts"], int)
        e0 = st["e_wh"]
        cl.state(lambda d: d["session"] and d["session"]["wh"] >= 3, 6)
        m = cl.mark()
        cl.ev("unplug")
        ended = cl.event("session_ended", None, 3, m)
        assert ended["session_id"] == started["session_id"]
        first = cl.wait("session", None, 3, m)
        sess = check_session(first.d)
        assert sess["id"] == started["session_id"] and sess["stop_reason"] == "ev_unplugged", sess
        assert sess["wh"] > 0 and sess["auth_id"] is None and sess["meter_start_wh"] == e0, sess
        assert isinstance(sess["ts_start"], int) and isinstance(sess["ts_end"], int), sess
        st = cl.state(lambda d: d["session"] is None, 3, m)
        assert st["e_wh"] >= sess["meter_end_wh"], st
        # re-sent every session_retry_s (5 s) with the same id and a fresh (boot, seq)
        again = cl.wait("session", lambda d: d["id"] == sess["id"], 8, first.idx + 1)
        assert 4.0 <= again.t - first.t <= 7.0, again.t - first.t
        assert again.d["seq"] > sess["seq"]
        assert {k: again.d[k] for k in sess if k not in ("seq", "up_ms", "ts")} == \
            {k: sess[k] for k in sess if k not in ("seq", "up_ms", "ts")}
        ack_once_then_never(cl, sess["id"], 6.0)
        monotonic_e_wh(cl)
        assert_ordered(cl)

    def power_cut_mid_charge():
        ch, cl = rig.charger("E2EPWR", FAST)
        online(cl)
        cl.plug()
        started = cl.event("session_started", None, 5)
        st = charging(cl)
        e0 = st["e_wh"]
        # wait for a flash checkpoint (the persisted e_wh moves; at most every 15 s while charging)
        st = cl.state(lambda d: d["e_wh"] > e0, 20)
        e1 = st["e_wh"]
        live = st["session"]["wh"]
        m = cl.mark()
        ch.sigkill()
        cl.wait("online", lambda p: p == b"offline", 5, m)
        ch.start()
        boot = cl.event("boot", None, 15, m)
        assert boot["boot"] == 2 and boot["reset_cause"] == "power_on", boot
        sess = check_session(cl.wait("session", None, 5, m).d)
        assert sess["id"] == started["session_id"] and sess["stop_reason"] == "power_loss", sess
        assert sess["meter_start_wh"] == e0 and sess["meter_end_wh"] >= e1 and sess["wh"] > 0, (sess, e0, e1)
        assert sess["wh"] <= live + 3 * 12, (sess, live)  # never more than was really measured
        st = cl.state(None, 3, m)
        assert st["e_wh"] >= sess["meter_end_wh"] and st["session"] is None, st
        ack_once_then_never(cl, sess["id"], 6.0)
        monotonic_e_wh(cl)
        assert_ordered(cl)

    def broker_outage():
        # the cloud broker goes down; the vehicle (on its own broker) unplugs meanwhile
        cloud_broker = rig.new_broker()
        ev_broker = rig.new_broker()
        sid = "E2EOUT"
        ch, cl = rig.charger(sid, FAST, port=cloud_broker.port, ev_port=ev_broker.port, cloud_port=cloud_broker.port)
        car = rig.client(sid, port=ev_broker.port, topics=["sim/%s/ev/state" % sid])
        cl.wait("online", lambda p: p == b"online", 15)
        car.ev_state(None, 10)
        car.plug()
        started = cl.event("session_started", None, 5)
        car.ev_state(lambda d: d["contactor_out"] is True, 8)
        cl.state(lambda d: d["session"] and d["session"]["wh"] >= 3, 8)
        cloud_broker.stop()
        m = car.mark()
        car.ev("unplug")
        car.ev_state(lambda d: d["plugged"] is False and d["contactor_out"] is False, 3, m)
        time.sleep(1.5)  # the session closes while the cloud is unreachable
        m = cl.mark()
        cloud_broker.start()
        cl.wait("online", lambda p: p == b"online", 20, m)
        sess = check_session(cl.wait("session", lambda d: d["id"] == started["session_id"], 12, m).d)
        assert sess["stop_reason"] == "ev_unplugged" and sess["wh"] > 0, sess
        ack_once_then_never(cl, sess["id"], 6.0)
        monotonic_e_wh(cl)
        assert_ordered(cl)

    parallel(plug_charge_unplug_retry_ack, power_cut_mid_charge, broker_outage)


# ---- final stop, faults --------------------------------------------------------------------------
def test_final_stop_and_faults(rig):
    def final_stop_then_unplug():
        ch, cl = rig.charger("E2ESTOP", FAST)
        online(cl)
        cl.plug()
        charging(cl)
        m = cl.mark()
        assert cl.cmd("stop")["ok"] is True
        cl.state(lambda d: d["contactor"] is False, 8, m)
        cl.ev("unplug")
        sess = check_session(cl.wait("session", None, 5, m).d)
        assert sess["stop_reason"] == "cmd_stop", sess

    def rcd_trip():
        ch, cl = rig.charger("E2ERCD", FAST)
        online(cl)
        cl.plug()
        charging(cl)
        m = cl.mark()
        cl.ev("fault", kind="rcd_ac", on=True)
        ev = cl.event("fault", None, 3, m)
        assert ev["fault"] == "rcd_ac", ev
        cl.ev_state(lambda d: d["contactor_out"] is False, 1, m)
        st = cl.state(lambda d: "rcd_ac" in d["faults"] and d["contactor"] is False, 3, m)
        assert st["mode"] == "fault" and st["offered_a"] == 0.0, st

    def vent_required():
        ch, cl = rig.charger("E2EVENT", FAST)
        online(cl)
        cl.ev("fault", kind="vent", on=True)
        m = cl.mark()
        cl.plug()
        ev = cl.event("fault", lambda d: d["fault"] == "vent_required", 8, m)
        st = cl.state(lambda d: "vent_required" in d["faults"], 3, m)
        assert st["mode"] == "fault" and st["contactor"] is False, st
        time.sleep(1.0)
        assert not cl.all("ev/state", m, lambda d: d["contactor_out"]), "closed for a vehicle in state D"
        _ = ev

    parallel(final_stop_then_unplug, rcd_trip, vent_required)
