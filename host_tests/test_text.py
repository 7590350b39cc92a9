# Text validation (firmware/text.py) and its use in firmware/protocol.py: strict UTF-8 in, combined
# surrogate pairs, bad_json for the rest, and only strict UTF-8 out. Runs on both runtimes: the
# point is MicroPython, whose decoder and json are lax where CPython's are strict.
import json

from firmware import protocol as P
from firmware import text
from mpcompat import heap_locked, raises

INVALID = (
    b"\x80", b"\xbf", b"a\x80b",  # continuation bytes with no lead
    b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98", b"ab\xe2",  # truncated sequences
    b"\xc3\x28", b"\xe2\x28\xa1", b"\xe2\x82\x28", b"\xf0\x28\x8c\xbc", b"\xf0\x90\x28\xbc",
    b"\xf0\x90\x8c\x28", b"\xc3\xc3\xa9",  # invalid continuation bytes
    b"\xc0\x80", b"\xc0\xaf", b"\xc1\xbf", b"\xe0\x80\xaf", b"\xe0\x9f\xbf", b"\xf0\x80\x80\xaf",
    b"\xf0\x8f\xbf\xbf",  # overlong forms (C0 80 is the "modified UTF-8" NUL)
    b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xed\xa0\xb5\xed\xbf\x99",  # encoded surrogates, CESU-8 pair
    b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xf7\xbf\xbf\xbf", b"\xf8\x88\x80\x80\x80",
    b"\xfc\x84\x80\x80\x80\x80", b"\xfe", b"\xff", b"\xff\xfe",  # beyond U+10FFFF, never-valid bytes
)
VALID = (
    b"", b"a", b"a\x00b", b"\x7f", b"\xc2\x80", b"\xdf\xbf", b"\xe0\xa0\x80", b"\xed\x9f\xbf",
    b"\xee\x80\x80", b"\xef\xbf\xbf", b"\xf0\x90\x80\x80", b"\xf0\x9f\x98\x80", b"\xf4\x8f\xbf\xbf",
    b"\xc3\xa9t\xc3\xa9", b"\xf0\x9d\x9f\x99\xf0\x9d\x9f\x9e",
)
MATH_1_6 = "\U0001d7d9\U0001d7de"  # what the issue's "\ud835\udfd9\ud835\udfde" encodes


def plane_points():
    """A few code points of every Unicode plane (no surrogates): ends, middles, noncharacters."""
    out = [0x0, 0x41, 0x7F, 0x80, 0x7FF, 0x800, 0xD7FF, 0xE000, 0xFFFD, 0xFFFF]
    for p in range(1, 17):
        b = p << 16
        out += [b, b + 0x1234, b + 0xFFFD, b + 0xFFFF]
    return out


def esc(cp):
    """cp as a JSON \\u escape: a surrogate pair above the BMP."""
    if cp < 0x10000:
        return "\\u%04x" % cp
    v = cp - 0x10000
    return "\\u%04x\\u%04X" % (0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF))  # pairs in either case


def strict_out(doc):
    """What the charger would publish for doc: it must be strict UTF-8 and JSON again."""
    b = json.dumps(doc).encode()
    assert text.valid(b), b
    again = json.loads(b.decode())
    assert again == doc, (again, doc)
    return again


def test_valid_rejects_every_invalid_form():
    for b in INVALID:
        assert not text.valid(b), b
        assert not text.valid(b"ok " + b + b" ok"), b
        e = raises(ValueError, text.decode, b)
        assert "UTF-8" in str(e), b
        assert raises(ValueError, text.decode, bytearray(b)) is not None


def test_valid_accepts_utf8():
    for b in VALID:
        assert text.valid(b), b
        s = text.decode(b)
        assert s.encode() == b, b
        assert text.decode(bytearray(b)) == s


def test_every_plane_raw_and_escaped():
    for cp in plane_points():
        raw = chr(cp).encode()
        assert text.valid(raw), hex(cp)
        assert text.decode(raw) == chr(cp), hex(cp)
        assert P.loads(b'{"s":"' + raw.replace(b"\x00", b"\\u0000").replace(b"\x7f", b"\\u007f") + b'"}')[
            "s"] == chr(cp), hex(cp)
        got = P.loads('{"s":"%s"}' % esc(cp))["s"]
        assert len(got) == 1 and ord(got) == cp, (hex(cp), [hex(ord(c)) for c in got])
        assert got.encode() == raw, hex(cp)


def test_decode_str():
    s = "abc \u00e9 " + MATH_1_6
    assert text.decode(s) is s  # a str is checked, not copied into a new one
    # on CPython a surrogate is a str character; on MicroPython the literal becomes ED A0 80
    for bad in ("\ud800", "x\udc00", "\ud835\udfd9"):
        raises(ValueError, text.decode, bad)


def test_decode_allocates_only_the_text():
    b = b'{"id":"c-1","op":"authorize","auth_id":"\xc3\xa9\xf0\x9f\x98\x80"}' * 4
    assert heap_locked(lambda: text.valid(b)) is True  # the check itself allocates nothing


def test_clean_combines_escaped_pairs():
    doc = json.loads('{"auth_id":"\\ud835\\udfd9\\ud835\\udfde","n":1,"l":["a\\ud83d\\ude00b",2.5,null]}')
    out = text.clean(doc)
    assert out["auth_id"] == MATH_1_6 and len(out["auth_id"]) == 2
    assert out["auth_id"].encode() == b"\xf0\x9d\x9f\x99\xf0\x9d\x9f\x9e"
    assert out["l"] == ["a\U0001f600b", 2.5, None] and out["n"] == 1
    strict_out(out)


def test_clean_combines_keys_and_nested():
    doc = json.loads('{"k\\ud83d\\ude00":{"x":[["\\ud800\\udc00", "\\udbff\\udfff"]]},"plain":"p"}')
    out = text.clean(doc)
    assert out == {"k\U0001f600": {"x": [["\U00010000", "\U0010ffff"]]}, "plain": "p"}, out
    strict_out(out)


def test_clean_refuses_lone_surrogates():
    for j in ('"\\ud800"', '"\\udc00"', '"a\\ud800b"', '"\\ud800\\ud800"', '"\\udc00\\ud800"', '"\\ud83dx"',
              '"\\ud83d"', '"x\\ude00"', '{"\\ud800":1}', '{"a":["ok","\\udfff"]}', '[[{"a":"\\udbff"}]]',
              '"\\ud800\\u0041"'):
        raises(ValueError, text.clean, json.loads(j))


def test_clean_returns_text_as_is():
    s = "no surrogate \u00e9 \U0001f600"
    assert text.clean(s) is s
    inner = ["a", s]
    doc = {"a": s, "b": inner, "c": 3}
    out = text.clean(doc)
    assert out is doc and out["a"] is s and out["b"] is inner and inner[1] is s
    assert heap_locked(lambda: text.clean(doc)) is doc  # nothing to fix: nothing allocated


def test_clean_depth_bound():
    doc = "x"
    for _ in range(40):
        doc = [doc]
    raises(ValueError, text.clean, doc)


def test_issue_auth_id_pairs():
    cid, op, args = P.parse_cmd(b'{"id":"c-1","op":"authorize","auth_id":"\\ud835\\udfd9\\ud835\\udfde"}')
    assert (cid, op) == ("c-1", "authorize") and args["auth_id"] == MATH_1_6
    strict_out({"auth": {"id": args["auth_id"]}})
    assert strict_out(P.reply_ok(cid, {"auth": args["auth_id"]}))["result"]["auth"] == MATH_1_6


def test_issue_emoji_in_unknown_op():
    e = raises(P.ProtocolError, P.parse_cmd, b'{"id":"c-2","op":"\\ud83d\\ude00 go"}')
    assert e.code == "unknown_op" and e.cmd_id == "c-2"
    r = strict_out(P.reply_error(e.cmd_id, e.code, e.detail))
    assert r["detail"] == "unknown op \\U0001f600 go", r  # quoted: printable ASCII
    e = raises(P.ProtocolError, P.parse_cmd, b'{"id":"c-3","op":"\xf0\x9f\x98\x80"}')  # raw this time
    assert e.code == "unknown_op" and e.cmd_id == "c-3"
    assert strict_out(P.reply_error(e.cmd_id, e.code, e.detail))["detail"] == "unknown op \\U0001f600"


def test_issue_invalid_ids_are_unanswerable():
    for p in (b'{"id":"\\ud800","op":"stop"}', b'{"id":"c\\udc00","op":"stop"}', b'{"id":"\xff","op":"stop"}',
              b'{"id":"\xc0\xaf","op":"stop"}', b'{"id":"\xed\xa0\x80","op":"stop"}',
              b'{"id":"\xed\xa0\xb5\xed\xbf\x99","op":"stop"}', b'{"id":"ok","op":"stop","x":"\xe2\x82"}'):
        e = raises(P.ProtocolError, P.parse_cmd, p)
        assert e.code == "bad_json" and e.cmd_id is None, (p, e.code, e.cmd_id)
        ev = strict_out(P.rejected("cmd", e.code, e.detail))
        assert ev["error"] == "bad_json", ev
        assert ev["detail"] in ("not valid UTF-8", "lone surrogate or invalid escape in a string"), ev


def test_escaped_pair_in_id_is_answerable():
    cid, op, _ = P.parse_cmd(b'{"id":"\\ud83d\\ude00","op":"stop"}')
    assert cid == "\U0001f600" and op == "stop"
    assert strict_out(P.reply_ok(cid))["id"] == "\U0001f600"


def test_every_input_topic_refuses_invalid_text():
    for bad in (b"\\ud800", b"\xff", b"\xc0\xaf", b"\xed\xb0\x80", b"\xf4\x90\x80\x80"):
        for fn, p in ((P.parse_limit, b'{"a":6,"seq":1,"note":"' + bad + b'"}'),
                      (P.parse_config, b'{"local_auth_ids":["' + bad + b'"]}'),
                      (P.parse_config, b'{"' + bad + b'":1}'),
                      (P.parse_cmd, b'{"id":"c","op":"set","settings":{"x":"' + bad + b'"}}'),
                      (P.parse_cmd, b'{"id":"c","op":"session_ack","session_id":"' + bad + b'"}')):
            e = raises(P.ProtocolError, fn, p)
            assert e.code == "bad_json" and e.cmd_id is None, (p, e.code)


def test_nul_is_text():
    cid, op, args = P.parse_cmd(b'{"id":"c\\u0000","op":"authorize","auth_id":"a\\u0000b"}')
    assert cid == "c\x00" and args["auth_id"] == "a\x00b"
    assert strict_out(P.reply_ok(cid, args))["result"]["auth_id"] == "a\x00b"
    # a raw NUL inside a JSON string is a control character: refused or kept, never sent broken
    try:
        got = P.parse_cmd(b'{"id":"c","op":"authorize","auth_id":"a\x00b"}')
        strict_out(P.reply_ok(got[0], got[2]))
    except P.ProtocolError as e:
        assert e.code == "bad_json"


def test_quote():
    assert text.quote("a must be 0..1000 A", 120) == "a must be 0..1000 A"
    assert text.quote("caf\u00e9 \U0001f600\x00\n\\", 120) == "caf\\xe9 \\U0001f600\\x00\\x0a\\\\"
    assert text.quote(b"id \xff\xc0\xaf ok", 120) == "id \\xff\\xc0\\xaf ok"
    assert text.quote("d" * 120, 120) == "d" * 120
    assert text.quote("d" * 121, 120) == "d" * 117 + "..."
    q = text.quote("\U0001f600" * 40, 120)
    assert len(q) <= 120 and q.endswith("...") and "\\U0001f600" in q  # never half an escape
    assert q[:-3] == "\\U0001f600" * ((120 - 3) // 10)
    assert text.quote(None, 120) == "None" and text.quote(42, 120) == "42"
    assert text.quote(ValueError("x\udc00"), 120) == "x\\udc00"
    assert text.quote("", 120) == ""

    class Broken:
        def __str__(self):
            raise RuntimeError("no")

    assert text.quote(Broken(), 120) == "?"  # never raises


def test_outbound_details_are_quoted():
    for detail in ("\ud800 lone", b"\xff raw", "ok \U0001f600", "\U0010ffff" * 30):
        for d in (P.reply_error("c", "bad_request", detail), P.rejected("cmd", "bad_json", detail)):
            q = strict_out(d)["detail"]
            assert len(q) <= 120 and all(0x20 <= ord(c) < 0x7F for c in q), q
    assert P.rejected("cmd", "bad_json") == {"type": "rejected", "topic": "cmd", "error": "bad_json"}
