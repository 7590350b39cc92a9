# firmware/cloud.py with the real Charger, settings and Link queues: one reply per command with an
# id, `rejected` for the rest, state/config/session publishing. Runs on both runtimes.
import json

from cloud_rig import CloudRig, outcome, snapshot

STATE_KEYS = ("v", "boot", "seq", "up_ms", "ts", "mode", "cp", "pwm_duty", "offered_a", "limit_a",
              "limit_src", "lease_s", "contactor", "phases", "i_a", "v_v", "p_w", "e_wh", "pp_a",
              "temp_c", "session", "auth", "standalone", "enabled", "faults", "fw")


def test_start_queues_boot_state_and_reported():
    app = CloudRig(boot_cmd_id="c-9")
    app.cloud.start(0)
    assert app.link.started and "evse/T0001/cmd" in app.link.topics
    msgs = app.take()
    kinds = [(m[0], m[2]) for m in msgs]
    assert ("event", False) in kinds and ("state", True) in kinds and ("config/reported", True) in kinds
    boot = [m[1] for m in msgs if m[0] == "event"][0]
    assert boot["type"] == "boot" and boot["cmd_id"] == "c-9" and boot["fw"] == "0.1.0"
    assert boot["reset_cause"] == "soft" and boot["v"] == 1 and boot["boot"] == 7 and boot["seq"] == 1
    rep = [m[1] for m in msgs if m[0] == "config/reported"][0]
    assert rep == app.settings and "v" not in rep


def test_state_has_every_contract_field():
    app = CloudRig()
    app.cloud.publish_state(5)
    st = [m[1] for m in app.take() if m[0] == "state"][0]
    for k in STATE_KEYS:
        assert k in st, k
    assert st["mode"] == "disconnected" and st["cp"] == "A" and st["pwm_duty"] == 100
    assert st["auth"] == {"required": False, "state": "idle", "id": None}
    assert st["session"] is None and st["faults"] == [] and st["e_wh"] == 1000 and st["lease_s"] is None
    assert st["i_a"] == [0.0, 0.0, 0.0] and st["standalone"] is False and st["enabled"] is True


def test_state_on_change_interval_and_reconnect():
    app = CloudRig()
    c = app.cloud
    c.service(0)
    assert [m[0] for m in app.take()].count("state") == 1
    c.service(100)
    assert app.take() == []
    app.station.inp.contactor_closed = True
    c.service(200)
    assert [m[0] for m in app.take()] == ["state"]
    c.service(10100)
    assert app.take() == []
    c.service(10200)  # state_interval_s = 10
    assert [m[0] for m in app.take()] == ["state"]
    app.sessions.open(None, 1000, 1)
    app.sessions.close("ev_unplugged", 1005, 2)
    app.link.connect_count += 1
    c.service(10300)
    got = [m[0] for m in app.take()]
    assert "state" in got and "config/reported" in got and "session" in got


def test_sessions_resent_until_acked():
    app = CloudRig()
    c = app.cloud
    sid = app.sessions.open(None, 990, 1)
    rec = app.sessions.close("ev_unplugged", 1000, 2)
    assert rec["id"] == sid == "T0001-7-1"
    c.service(0)
    app.take()
    c.send_session(rec, 0)
    s = [m[1] for m in app.take() if m[0] == "session"][0]
    assert s["id"] == "T0001-7-1" and s["v"] == 1 and s["boot"] == 7 and s["wh"] == 10
    app.link.connected = True
    c.service(29000)
    assert "session" not in [m[0] for m in app.take()]
    c.service(30100)
    assert "session" in [m[0] for m in app.take()]
    msgs = app.deliver("cmd", json.dumps({"id": "a1", "op": "session_ack", "session_id": "T0001-7-1"}))
    assert outcome(msgs) == [["reply", True, None, "a1"]]
    r = [m[1] for m in msgs if m[0] == "reply"][0]
    assert r["result"] == {"session_id": "T0001-7-1", "deleted": True}
    c.service(70000)
    assert "session" not in [m[0] for m in app.take()]


def test_every_command_gets_one_reply():
    app = CloudRig()
    for op, extra in (("get", {}), ("authorize", {"auth_id": "app:42"}), ("deauthorize", {}),
                      ("stop", {}), ("resume", {}), ("session_ack", {"session_id": "nope"}),
                      ("set", {"settings": {"max_current_a": 10}})):
        d = {"id": "c-" + op, "op": op}
        d.update(extra)
        msgs = app.deliver("cmd", json.dumps(d))
        assert outcome(msgs) == [["reply", True, None, "c-" + op]], (op, msgs)
    assert app.settings["max_current_a"] == 10


def test_get_returns_state_and_settings():
    app = CloudRig()
    msgs = app.deliver("cmd", b'{"id":"g","op":"get"}')
    r = [m[1] for m in msgs if m[0] == "reply"][0]
    assert r["result"]["settings"] == app.settings and r["result"]["state"]["mode"] == "disconnected"


def test_authorize_reaches_the_core():
    app = CloudRig()
    app.deliver("cmd", b'{"id":"a","op":"authorize","auth_id":"app:42"}')
    ev = app.charger.pop_events()
    assert {"type": "auth", "result": "granted", "auth_id": "app:42"} in ev


def test_set_and_config_publish_reported_and_applied():
    app = CloudRig()
    msgs = app.deliver("config", b'{"max_current_a":20,"auth_required":true}')
    rels = [m[0] for m in msgs]
    assert "config/reported" in rels and "state" in rels
    assert [m[1]["type"] for m in msgs if m[0] == "event"] == ["config_applied"]
    assert [m[1] for m in msgs if m[0] == "config/reported"][0]["max_current_a"] == 20
    assert app.deliver("config", b"") == []  # retained config cleared: nothing to do


def test_bad_config_rejected_whole():
    app = CloudRig()
    before = snapshot(app)
    for p, code in ((b'{"max_current_a":20,"bogus":1}', "bad_request"), (b'{"max_current_a":99}', "out_of_range"),
                    (b"{", "bad_json"), (b"[]", "bad_request"), (None, "bad_request")):
        assert outcome(app.deliver("config", p)) == [["rejected", "config", code]], p
    msgs = app.deliver("cmd", b'{"id":"s","op":"set","settings":{"max_current_a":99}}')
    assert outcome(msgs) == [["reply", False, "out_of_range", "s"]]
    assert snapshot(app) == before


def test_cmd_errors():
    app = CloudRig()
    before = snapshot(app)
    cases = [
        (b'{"op":"get"}', ["rejected", "cmd", "bad_request"]),
        (b'{"id":7,"op":"get"}', ["rejected", "cmd", "bad_request"]),
        (json.dumps({"id": "x" * 65, "op": "get"}), ["rejected", "cmd", "bad_request"]),
        (b"not json", ["rejected", "cmd", "bad_json"]),
        (None, ["rejected", "cmd", "bad_request"]),
        (b'{"id":"u","op":"dance"}', ["reply", False, "unknown_op", "u"]),
        (b'{"id":"b","op":"authorize"}', ["reply", False, "bad_request", "b"]),
        (b'{"id":"b2","op":"set","settings":5}', ["reply", False, "bad_request", "b2"]),
    ]
    for p, want in cases:
        assert outcome(app.deliver("cmd", p)) == [want], p
    assert snapshot(app) == before


def test_limits():
    app = CloudRig(standalone=False)
    assert app.deliver("limit", b'{"a":10,"ttl_s":60,"seq":5}') == []
    assert app.charger.lease.valid and app.charger.lease.grid_da == [100, 100, 100]
    assert outcome(app.deliver("limit", b'{"a":12,"seq":5}')) == [["rejected", "limit", "out_of_range"]]
    assert outcome(app.deliver("limit", b'{"a":12,"ttl_s":0,"seq":6}')) == [["rejected", "limit", "out_of_range"]]
    assert outcome(app.deliver("limit", b'{"a":"12","seq":6}')) == [["rejected", "limit", "bad_request"]]
    assert app.charger.lease.grid_da == [100, 100, 100] and app.charger.lease.seq == 5
    assert app.deliver("limit", b'{"a":[16,16,8],"seq":6}') == []
    assert app.charger.lease.grid_da == [160, 160, 80]
    sa = CloudRig(standalone=True)
    assert outcome(sa.deliver("limit", b'{"a":10,"seq":1}')) == [["rejected", "limit", "not_allowed"]]
    assert not sa.charger.lease.valid


def test_restart_replies_first_then_busy():
    app = CloudRig()
    msgs = app.deliver("cmd", b'{"id":"r1","op":"restart"}')
    assert app.restarts == ["r1"] and app.outbox_at_restart == 1  # the reply was queued before
    assert outcome(msgs) == [["reply", True, None, "r1"]]
    assert outcome(app.deliver("cmd", b'{"id":"r2","op":"get"}')) == [["reply", False, "busy", "r2"]]


def test_foreign_topics_ignored():
    app = CloudRig()
    app.cloud.handle("evse/OTHER/cmd", b'{"id":"x","op":"get"}', 0)
    app.cloud.handle("evse/T0001/state", b"{}", 0)
    assert app.take() == []
