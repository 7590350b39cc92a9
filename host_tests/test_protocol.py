# Contract helpers (firmware/protocol.py): every parse/validation path and its error code.
import json

from firmware import protocol as P
from mpcompat import raises


def err(fn, payload):
    return raises(P.ProtocolError, fn, payload)


def test_topics():
    t = P.Topics("evse", "SIM0001")
    assert t.state == "evse/SIM0001/state" and t.online == "evse/SIM0001/online"
    assert t.config_reported == "evse/SIM0001/config/reported"
    assert t.inbound() == ["evse/SIM0001/limit", "evse/SIM0001/cmd", "evse/SIM0001/config"]
    assert t.relative("evse/SIM0001/cmd") == "cmd"
    assert t.relative("evse/OTHER/cmd") is None and t.relative(None) is None


def test_envelope_orders_messages():
    e = P.Envelope(7)
    a = e.wrap({"type": "boot", "seq": 999, "v": 5}, 100, None)
    b = json.loads(e.dumps({"type": "x"}, 200, 1763712000))
    assert a["v"] == 1 and a["boot"] == 7 and a["seq"] == 1 and a["up_ms"] == 100 and a["ts"] is None
    assert a["type"] == "boot"  # the envelope's own keys win over the fields
    assert b["seq"] == 2 and b["ts"] == 1763712000 and b["boot"] == 7


def test_bad_json_paths():
    for p in (b"", b"{", b"nan", b"NaN", b'{"a": NaN}', b"1e999", b'{"a":[1e999]}', b"\xff\xfe",
              b'{"a":1} trailing', b"[" * 5000, b'{"a":' * 40 + b"1" + b"}" * 40):
        e = err(P.parse_limit, p)
        assert e.code == "bad_json", (p[:20], e.code)


def test_raw_control_characters_in_strings_are_not_json():
    # found by `make soak` (issue 15): MicroPython's json took a raw newline or control byte inside a
    # string (`{"id":"\n-80",...}` was answered as id "\n-80") where CPython's refuses it; RFC 8259
    # wants them escaped. Both runtimes now say bad_json; whitespace between tokens and escapes stay.
    for p in (b'{"id":"\n-80","op":"get"}', b'{"id":"c-1","op":"get","x":"a\x0eb"}', b'{"a\tb":1}'):
        e = err(P.parse_cmd, p)
        assert e.code == "bad_json" and e.cmd_id is None, (p, e.code)
    assert P.parse_cmd(b'{\n "id": "c-1",\r\n\t"op": "get", "x": "a\\n\\"\\u000e"}')[:2] == ("c-1", "get")


def test_json_grammar_is_strict_on_both_runtimes():
    # found by `make soak` (issue 15): MicroPython's json.loads reads `{"id":"f-681","op":9"reboot"}`
    # as {"id": "f-681", "op": 9}, and takes missing commas and colons, trailing commas, leading zeros
    # and mismatched brackets, all of which CPython (and RFC 8259) refuse: the device answered or
    # applied payloads that are not JSON. protocol.strict_json() checks the grammar first.
    for p in (b'{"id":"f-681","op":9"reboot"}', b'{"id":"c-1" "op":"get"}', b'{"id" "c-1","op":"get"}',
              b'{"id":"c-1","op":"get",}', b'{"a":[16,],"seq":1}', b'{"a":016,"seq":1}', b'{"a":[16}',
              b'{"a":1.,"seq":1}', b'{"a":-,"seq":1}', b'{"a":"\\x"}', b'{"a":"\\u12G4"}', b'{"a":1}}', b"[1 2]"):
        e = err(P.parse_cmd, p)
        assert e.code == "bad_json" and e.cmd_id is None, (p, e.code)
    for p in (b' {"a" : [1, 2.5e-3, -0, true, null, "x\\u00e9\\n\\/"], "b": {}, "c": [[]]} ', b"[]", b'"x"',
              b"-1.5E+10", b"0"):
        assert P.strict_json(p.decode()), p
    assert P.parse_limit(b'{"a": [6, 10.5, 0e0], "ttl_s": 60, "seq": 1}') == ([6, 10.5, 0], 60, 1)


def test_too_large_payload():
    assert err(P.parse_cmd, None).code == "bad_request"
    assert err(P.parse_limit, None).code == "bad_request"


def test_non_object_json():
    for p in (b"1", b'"a"', b"[1,2,3]", b"null", b"true"):
        assert err(P.parse_limit, p).code == "bad_request"
        e = err(P.parse_cmd, p)
        assert e.code == "bad_request" and e.cmd_id is None


def test_limit_valid():
    assert P.parse_limit(b'{"a":16,"ttl_s":60,"seq":42}') == (16, 60, 42)
    assert P.parse_limit(b'{"a":16.04,"seq":1}') == (16.0, 60, 1)  # ttl default, 0.1 A resolution
    assert P.parse_limit(b'{"a":[16.0,16,10.5],"ttl_s":1,"seq":43}') == ([16, 16, 10.5], 1, 43)
    assert P.parse_limit(b'{"a":0,"ttl_s":3600,"seq":0,"extra":1}') == (0, 3600, 0)
    assert P.parse_limit('{"a":6,"ttl_s":null,"seq":5}') == (6, 60, 5)


def test_limit_errors():
    cases = [
        (b'{"ttl_s":60,"seq":1}', "bad_request"),
        (b'{"a":"16","seq":1}', "bad_request"),
        (b'{"a":true,"seq":1}', "bad_request"),
        (b'{"a":null,"seq":1}', "bad_request"),
        (b'{"a":[16,16],"seq":1}', "bad_request"),
        (b'{"a":[16,16,16,16],"seq":1}', "bad_request"),
        (b'{"a":[16,"x",16],"seq":1}', "bad_request"),
        (b'{"a":[16,false,16],"seq":1}', "bad_request"),
        (b'{"a":{"l1":16},"seq":1}', "bad_request"),
        (b'{"a":-1,"seq":1}', "out_of_range"),
        (b'{"a":1001,"seq":1}', "out_of_range"),
        (b'{"a":[16,-0.5,16],"seq":1}', "out_of_range"),
        (b'{"a":1e300,"seq":1}', "out_of_range"),
        (b'{"a":123456789012345678901234567890,"seq":1}', "out_of_range"),
        (b'{"a":16,"ttl_s":0,"seq":1}', "out_of_range"),
        (b'{"a":16,"ttl_s":3601,"seq":1}', "out_of_range"),
        (b'{"a":16,"ttl_s":-5,"seq":1}', "out_of_range"),
        (b'{"a":16,"ttl_s":"60","seq":1}', "bad_request"),
        (b'{"a":16,"ttl_s":true,"seq":1}', "bad_request"),
        (b'{"a":16,"ttl_s":60}', "bad_request"),
        (b'{"a":16,"seq":"1"}', "bad_request"),
        (b'{"a":16,"seq":1.5}', "bad_request"),
        (b'{"a":16,"seq":true}', "bad_request"),
        (b'{"a":16,"seq":-1}', "out_of_range"),
        (b'{"a":16,"seq":1e300}', "out_of_range"),
    ]
    for p, code in cases:
        assert err(P.parse_limit, p).code == code, (p, code)


def test_cmd_valid():
    assert P.parse_cmd(b'{"id":"c-1","op":"get"}') == ("c-1", "get", {})
    r = P.parse_cmd(b'{"id":"c-2","op":"authorize","auth_id":"app:42"}')
    assert r == ("c-2", "authorize", {"auth_id": "app:42"})
    assert P.parse_cmd(b'{"id":"x","op":"session_ack","session_id":"S-1-1"}')[2] == {"session_id": "S-1-1"}
    r = P.parse_cmd(b'{"id":"y","op":"set","settings":{"max_current_a":10}}')
    assert r[2] == {"settings": {"max_current_a": 10}}
    for op in ("deauthorize", "stop", "resume", "restart"):
        assert P.parse_cmd(json.dumps({"id": "i", "op": op, "junk": [1]}))[1] == op
    assert P.parse_cmd(json.dumps({"id": "a" * 64, "op": "get"}))[0] == "a" * 64


def test_cmd_without_answerable_id_is_rejected():
    for doc in ({"op": "get"}, {"id": 5, "op": "get"}, {"id": "", "op": "get"}, {"id": None, "op": "get"},
                {"id": "a" * 65, "op": "get"}, {"id": ["x"], "op": "get"}, {"id": True, "op": "get"}):
        e = err(P.parse_cmd, json.dumps(doc))
        assert e.cmd_id is None and e.code == "bad_request", doc


def test_cmd_errors_answered_on_reply():
    cases = [
        ({"id": "c", "op": "fly"}, "unknown_op"),
        ({"id": "c"}, "bad_request"),
        ({"id": "c", "op": 3}, "bad_request"),
        ({"id": "c", "op": "authorize"}, "bad_request"),
        ({"id": "c", "op": "authorize", "auth_id": ""}, "bad_request"),
        ({"id": "c", "op": "authorize", "auth_id": 42}, "bad_request"),
        ({"id": "c", "op": "authorize", "auth_id": "x" * 65}, "out_of_range"),
        ({"id": "c", "op": "session_ack"}, "bad_request"),
        ({"id": "c", "op": "session_ack", "session_id": 1}, "bad_request"),
        ({"id": "c", "op": "set"}, "bad_request"),
        ({"id": "c", "op": "set", "settings": [1]}, "bad_request"),
        ({"id": "c", "op": "set", "settings": "max_current_a=3"}, "bad_request"),
    ]
    for doc, code in cases:
        e = err(P.parse_cmd, json.dumps(doc))
        assert e.code == code and e.cmd_id == "c", (doc, e.code)


def test_config():
    assert P.parse_config(b"") is None  # retained message cleared
    assert P.parse_config(b'{"max_current_a":10}') == {"max_current_a": 10}
    assert err(P.parse_config, b"[1]").code == "bad_request"
    assert err(P.parse_config, b"{").code == "bad_json"
    assert err(P.parse_config, None).code == "bad_request"


def test_outbound_documents():
    assert P.reply_ok("c", {"x": 1}) == {"id": "c", "ok": True, "result": {"x": 1}}
    assert P.reply_ok("c") == {"id": "c", "ok": True}
    r = P.reply_error("c", "busy", "d" * 500)
    assert r["ok"] is False and r["error"] == "busy" and len(r["detail"]) == 120
    assert P.reply_error("c", "stale", "x")["error"] == "bad_request"  # only contract codes go out
    assert P.rejected("cmd", "bad_json") == {"type": "rejected", "topic": "cmd", "error": "bad_json"}


def test_numbers():
    assert P.is_number(1) and P.is_number(1.5) and not P.is_number(True) and not P.is_number("1")
    assert not P.is_number(float("nan")) and not P.is_number(float("inf")) and not P.is_number(None)
    assert P.is_int(3.0) and not P.is_int(3.5) and not P.is_int(False)


def test_envelope_written_into_parts_is_the_wrapped_message():
    # what the MQTT link publishes (firmware/link.py publish_json): the envelope written around the
    # fields into one buffer and cut into parts; the same JSON as wrap(), the envelope winning
    from firmware import mqtt_socket as M

    e1, e2 = P.Envelope(3), P.Envelope(3)
    docs = ({"type": "x", "a": [1, 2.5, None], "s": "\u00e9\u20ac"}, {}, {"seq": 9, "type": "y"},
            {"mode": "idle", "session": {"id": "S-1-1", "wh": 0}, "x": "y" * 300})
    for f in docs:
        want = e1.wrap(f, 100, None)
        p = M.dump_parts(lambda s, f=f: e2.write(s, f, 100, None))
        raw = b"".join(p.parts) if isinstance(p, M.Parts) else p
        assert json.loads(raw) == want and len(p) == len(raw), (raw, want)
        if isinstance(p, M.Parts):  # MicroPython: no part above 127 bytes
            assert max(len(x) for x in p.parts) <= 127
    d = {"k": "\u00fc", "n": 1}
    p = M.dump_parts(d)
    assert json.loads(b"".join(p.parts) if isinstance(p, M.Parts) else p) == d
