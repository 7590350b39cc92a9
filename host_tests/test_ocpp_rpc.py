# The OCPP-J RPC layer (firmware/ocpp_rpc.py) with a list standing in for the transport's queue:
# one outstanding CALL, unique ids, CALLRESULT/CALLERROR matched by id, a timeout per call, late
# answers ignored, and every malformed or unknown CALL from the server answered by a CALLERROR
# (never an exception). Runs on CPython and MicroPython.
import json

from firmware import ocpp_rpc as R
from firmware.ticks import PERIOD, ticks_add

T0 = PERIOD - 1000  # across the ticks wrap


def handler(action, payload, now):
    if action == "Echo":
        return payload
    if action == "Boom":
        raise ValueError("bug")
    if action == "Typed":
        if not isinstance(payload.get("n"), int):
            raise R.CallError(R.TYPE, "n must be an integer")
        return {"ok": True}
    raise R.CallError(R.NOT_IMPLEMENTED, "unknown action " + action)


def make(timeout_ms=1000):
    out = []
    rpc = R.Rpc(out.append, handler, "7-", timeout_ms)
    return rpc, out


def test_one_outstanding_call_matched_by_id():
    rpc, out = make()
    got = []
    assert rpc.call("Heartbeat", {}, lambda r, e: got.append((r, e)), T0)
    assert rpc.busy and rpc.outstanding == "Heartbeat"
    assert not rpc.call("Heartbeat", {}, lambda r, e: None, T0)  # one at a time
    msg = json.loads(out[-1])
    assert msg[0] == 2 and msg[1] == "7-1" and msg[2] == "Heartbeat" and msg[3] == {}
    rpc.on_message('[3, "other", {}]', T0)  # not ours: ignored
    assert rpc.busy and rpc.stats["ignored"] == 1
    rpc.on_message('[3, "7-1", {"currentTime": "2026-12-03T09:00:00Z"}]', T0)
    assert got == [({"currentTime": "2026-12-03T09:00:00Z"}, None)] and not rpc.busy
    assert rpc.call("X", {"a": 1}, lambda r, e: got.append((r, e)), T0)
    assert json.loads(out[-1])[1] == "7-2"  # unique ids
    rpc.on_message('[4, "7-2", "NotImplemented", "no X here", {}]', T0)
    assert got[-1] == (None, ("NotImplemented", "no X here"))


def test_timeout_then_the_late_answer_is_ignored():
    rpc, out = make(1000)
    got = []
    rpc.call("Heartbeat", {}, lambda r, e: got.append((r, e)), T0)
    rpc.tick(ticks_add(T0, 999))
    assert rpc.busy
    rpc.tick(ticks_add(T0, 1000))
    assert not rpc.busy and got[0][1][0] == R.TIMEOUT
    rpc.on_message('[3, "7-1", {}]', T0)
    assert len(got) == 1 and rpc.stats["ignored"] == 1
    rpc.call("Heartbeat", {}, lambda r, e: got.append((r, e)), T0)
    rpc.reset()  # connection lost
    assert got[-1][1][0] == R.DISCONNECTED and not rpc.busy


def test_a_failing_callback_does_not_break_the_layer():
    rpc, out = make()

    def bad(r, e):
        raise KeyError("x")

    rpc.call("A", {}, bad, T0)
    rpc.on_message('[3, "7-1", {}]', T0)
    assert not rpc.busy


def _answer(rpc, out, raw):
    n = len(out)
    rpc.on_message(raw, T0)
    assert len(out) == n + 1, "no answer to %r" % raw
    return json.loads(out[-1])


def test_server_calls_are_answered():
    rpc, out = make()
    assert _answer(rpc, out, '[2, "s1", "Echo", {"a": [1, 2]}]') == [3, "s1", {"a": [1, 2]}]
    assert _answer(rpc, out, '[2, "s2", "Typed", {"n": 1}]') == [3, "s2", {"ok": True}]


def test_malformed_and_unknown_calls_get_callerrors():
    rpc, out = make()
    cases = [
        (b"not json", "-1", R.FORMATION),
        (b"\xff\xfe[2]", "-1", R.FORMATION),  # not UTF-8
        ('["2", "a", "Echo", {}]', "-1", R.FORMATION),
        ("[2]", "-1", R.FORMATION),
        ("{}", "-1", R.FORMATION),
        ('[2, 5, "Echo", {}]', "-1", R.FORMATION),
        ('[2, "%s", "Echo", {}]' % ("x" * 37), "-1", R.FORMATION),
        ('[2, "c1", "Echo"]', "c1", R.FORMATION),
        ('[2, "c2", 7, {}]', "c2", R.FORMATION),
        ('[2, "c3", "Echo", [1]]', "c3", R.FORMATION),
        ('[2, "c4", "Nope", {}]', "c4", R.NOT_IMPLEMENTED),
        ('[2, "c5", "Typed", {"n": "1"}]', "c5", R.TYPE),
        ('[2, "c6", "Boom", {}]', "c6", R.INTERNAL),
        ('[8, "c7", "Echo", {}]', "c7", R.PROTOCOL),
        ('[2, "c8", "Echo", {"x": NaN}]', "-1", R.FORMATION),
        ('[2, "c9", "Echo", {"x": "\\ud800"}]', "-1", R.FORMATION),  # a lone surrogate escape
    ]
    for raw, mid, code in cases:
        m = _answer(rpc, out, raw)
        assert m[0] == 4 and m[1] == mid and m[2] == code and isinstance(m[3], str) and m[4] == {}, (raw, m)
    # a CALLRESULT of ours with a payload that is not an object is a failed call, not a crash
    got = []
    rpc.call("A", {}, lambda r, e: got.append(e), T0)
    rpc.on_message('[3, "7-1", [1]]', T0)
    assert got[0][0] == R.FORMATION and not rpc.busy


def test_deep_nesting_is_refused_before_it_is_parsed():
    # make soak's OCPP fuzz: a 6 KB frame of nested brackets made MicroPython's JSON parser allocate
    # past the heap. protocol.strict_json refuses more than MAX_DEPTH levels before json.loads runs,
    # with the CALLERROR a non-JSON text gets; brackets inside strings are not structure.
    rpc, out = make()
    parsed = []
    real = R.protocol.json

    class Counting:  # the json module as protocol sees it, counting what reaches the parser
        dumps = real.dumps

        @staticmethod
        def loads(s, *a, **kw):
            parsed.append(s)
            return real.loads(s, *a, **kw)

    R.protocol.json = Counting
    try:
        deep = '[2, "d1", "Echo", {"a": ' + "[" * 3000 + "]" * 3000 + "}]"
        m = _answer(rpc, out, deep)
        assert m[0] == 4 and m[1] == "-1" and m[2] == R.FORMATION, m
        m = _answer(rpc, out, '[2, "d2", "Echo", {"a": ' + '{"b": ' * 25 + "1" + "}" * 25 + "}]")
        assert m[1] == "-1" and m[2] == R.FORMATION, m
        assert parsed == []  # never handed to the parser
    finally:
        R.protocol.json = real
    ok = '[2, "d3", "Echo", {"a": "%s", "b": "\\\\", "c": "\\"[[[[", "d": [%s]}]' % ("[" * 50, "[1], " * 40 + "1")
    m = _answer(rpc, out, ok)
    assert m[0] == 3 and m[1] == "d3" and len(m[2]["d"]) == 41, m
    n = R.protocol.MAX_DEPTH
    assert R.protocol.strict_json("[" * n + "]" * n) and not R.protocol.strict_json("[" * (n + 1) + "]" * (n + 1))
