# Generated text in every string field of limit/cmd/config, through the parsers and the outbound
# builders (firmware/protocol.py, firmware/text.py): what would be published is strict UTF-8 JSON
# with no surrogate in it, and nothing invalid is accepted. The oracle is CPython's strict codec and
# json. The same cases then run under MicroPython, whose decoder and json are the lax ones.
import json
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import build_mpy, run_micropython
from firmware import protocol as P
from firmware import text

CPYTHON_ONLY = "hypothesis; drives the MicroPython leg through a subprocess"

# ---- the pieces a string field is made of ---------------------------------------------------------


def _is_surrogate(cp):
    return 0xD800 <= cp <= 0xDFFF


def _raw_utf8(cp):
    """UTF-8 form of any cp up to 0x1FFFFF, surrogates included (CESU-style): for invalid input."""
    if cp < 0x80:
        return bytes([cp])
    if cp < 0x800:
        return bytes([0xC0 | cp >> 6, 0x80 | cp & 63])
    if cp < 0x10000:
        return bytes([0xE0 | cp >> 12, 0x80 | cp >> 6 & 63, 0x80 | cp & 63])
    return bytes([0xF0 | cp >> 18, 0x80 | cp >> 12 & 63, 0x80 | cp >> 6 & 63, 0x80 | cp & 63])


def _escape(cp, upper):
    h = "%04X" if upper else "%04x"
    if cp < 0x10000:
        return ("\\u" + h % cp).encode()
    v = cp - 0x10000
    return ("\\u" + h + "\\u" + h).encode() % (0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF))


def _json_raw(cp):
    """cp as it may stand raw in a JSON string: quote, backslash and controls escaped."""
    return json.dumps(chr(cp), ensure_ascii=False)[1:-1].encode()


planes = st.integers(0, 16).flatmap(lambda p: st.integers(p << 16, (p << 16) + 0xFFFF)).filter(
    lambda cp: not _is_surrogate(cp))
raw_char = planes.map(_json_raw)
escaped_char = st.tuples(planes, st.booleans()).map(lambda t: _escape(*t))
lone_escape = st.tuples(st.integers(0xD800, 0xDFFF), st.booleans()).map(
    lambda t: ("\\u%04X" if t[1] else "\\u%04x").encode() % t[0])
nul = st.sampled_from([b"\\u0000", b"\x00"])
overlong = st.one_of(
    st.integers(0, 0x7F).map(lambda cp: bytes([0xC0 | cp >> 6, 0x80 | cp & 63])),
    st.integers(0, 0x7FF).map(lambda cp: bytes([0xE0, 0x80 | cp >> 6, 0x80 | cp & 63])),
    st.integers(0, 0xFFFF).map(lambda cp: bytes([0xF0, 0x80 | cp >> 12, 0x80 | cp >> 6 & 63, 0x80 | cp & 63])),
)
raw_surrogate = st.integers(0xD800, 0xDFFF).map(_raw_utf8)
beyond = st.integers(0x110000, 0x1FFFFF).map(_raw_utf8)
bad_cont = st.tuples(planes.filter(lambda cp: cp >= 0x80), st.data()).map(
    lambda t: _break_continuation(_json_raw(t[0]), t[1]))
truncated = st.tuples(planes.filter(lambda cp: cp >= 0x80), st.integers(1, 3)).map(
    lambda t: _json_raw(t[0])[:-min(t[1], len(_json_raw(t[0])) - 1)])
stray = st.one_of(st.integers(0x80, 0xBF), st.integers(0xF5, 0xFF)).map(lambda b: bytes([b]))
ascii_text = st.text(alphabet="abc-_:0Z ", min_size=1, max_size=6).map(str.encode)


def _break_continuation(seq, data):
    i = data.draw(st.integers(1, len(seq) - 1))
    b = data.draw(st.one_of(st.integers(0x20, 0x7E).filter(lambda x: x not in (0x22, 0x5C)), st.integers(0xC0, 0xFF)))
    return seq[:i] + bytes([b]) + seq[i + 1:]


piece = st.one_of(ascii_text, raw_char, escaped_char, lone_escape, nul, overlong, raw_surrogate, beyond,
                  bad_cont, truncated, stray)
fragment = st.lists(piece, min_size=1, max_size=8).map(b"".join)

# ---- the fields they go into ----------------------------------------------------------------------
# (parser, template): F is replaced by the fragment, inside the quotes of a JSON string.
TEMPLATES = (
    ("limit", b'{"a":6,"seq":1,"note":"F"}'),
    ("limit", b'{"a":"F","seq":1}'),
    ("limit", b'{"F":2,"a":6,"seq":1}'),
    ("cmd", b'{"id":"F","op":"stop"}'),
    ("cmd", b'{"id":"c-1","op":"F"}'),
    ("cmd", b'{"id":"c-1","op":"authorize","auth_id":"F"}'),
    ("cmd", b'{"id":"c-1","op":"session_ack","session_id":"F"}'),
    ("cmd", b'{"id":"c-1","op":"set","settings":{"F":"F"}}'),
    ("cmd", b'{"id":"c-1","op":"get","extra":["F"]}'),
    ("config", b'{"F":1}'),
    ("config", b'{"local_auth_ids":["F","ok"]}'),
    ("config", b'{"phase_rotation":"F","max_current_a":16}'),
)
PARSERS = {"limit": P.parse_limit, "cmd": P.parse_cmd, "config": P.parse_config}


def oracle(payload):
    """The document a strict peer reads from payload, or None when it holds invalid text."""
    try:
        s = payload.decode("utf-8")  # strict: no overlong, no surrogates, nothing past U+10FFFF
        doc = json.loads(s)
    except ValueError:
        return None
    if not all_text_strict(doc):
        return None  # a lone \ud800 escape: CPython's json keeps it as a surrogate
    return doc


def all_text_strict(obj):
    if isinstance(obj, str):
        try:
            obj.encode("utf-8")  # errors="strict"
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(obj, dict):
        return all(all_text_strict(k) and all_text_strict(v) for k, v in obj.items())
    if isinstance(obj, list):
        return all(all_text_strict(v) for v in obj)
    return True


def outbound(kind, payload):
    """What the charger would publish for payload: the reply or rejected event, as in firmware/cloud.py,
    plus the parsed value echoed back (as a `get` reply or `state` would)."""
    try:
        r = PARSERS[kind](payload)
    except P.ProtocolError as e:
        if e.cmd_id is not None:
            return "error", e, P.reply_error(e.cmd_id, e.code, e.detail)
        return "error", e, P.rejected(kind, e.code, e.detail)
    if kind == "cmd":
        return "ok", r, P.reply_ok(r[0], {"op": r[1], "args": r[2]})
    return "ok", r, P.reply_ok("c-0", {"parsed": r})


def strict_message(raw):
    """raw (what the broker would carry) decodes as strict UTF-8 and parses as JSON without surrogates."""
    s = raw.decode("utf-8")  # errors="strict"
    doc = json.loads(s)
    assert all_text_strict(doc), raw
    return doc


def check_case(kind, template, frag):
    payload = template.replace(b"F", frag)
    expect = oracle(payload)
    verdict, r, msg = outbound(kind, payload)
    env = P.Envelope(1)
    sent = env.dumps(msg, 5, None).encode("utf-8")  # the charger's publish: must not raise
    strict_message(sent)
    strict_message(json.dumps(msg, ensure_ascii=False).encode("utf-8"))  # as MicroPython writes it
    if expect is None:
        assert verdict == "error" and r.code == "bad_json" and r.cmd_id is None, (payload, verdict, r)
        assert msg["detail"] in ("not valid UTF-8", "not valid JSON",
                                 "lone surrogate or invalid escape in a string"), msg
    elif verdict == "ok":
        assert all_text_strict(r), r
    else:
        assert r.code != "bad_json", (payload, r.detail)
    return payload, expect, verdict, msg


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frag=fragment)
def test_every_string_field(frag):
    for kind, template in TEMPLATES:
        check_case(kind, template, frag)


@settings(max_examples=400, deadline=None)
@given(b=st.one_of(st.binary(max_size=12), fragment))
def test_valid_agrees_with_cpython_codec(b):
    try:
        b.decode("utf-8")
        strict = True
    except UnicodeDecodeError:
        strict = False
    assert text.valid(b) is strict, b
    if strict:
        assert text.decode(b) == b.decode("utf-8")


@settings(max_examples=200, deadline=None)
@given(frag=fragment)
def test_accepted_text_is_what_a_strict_peer_reads(frag):
    payload = b'{"id":"c-1","op":"authorize","auth_id":"' + frag + b'"}'
    expect = oracle(payload)
    try:
        _, _, args = P.parse_cmd(payload)
    except P.ProtocolError as e:
        assert expect is None or not (1 <= len(expect["auth_id"]) <= P.MAX_ID), (payload, e.code)
        return
    assert expect is not None and args["auth_id"] == expect["auth_id"], (payload, args)


MP_SCRIPT = r"""
import sys, json, binascii
from firmware import protocol as P

PARSERS = {"limit": P.parse_limit, "cmd": P.parse_cmd, "config": P.parse_config}


def outbound(kind, payload):
    try:
        r = PARSERS[kind](payload)
    except P.ProtocolError as e:
        if e.cmd_id is not None:
            return P.reply_error(e.cmd_id, e.code, e.detail)
        return P.rejected(kind, e.code, e.detail)
    if kind == "cmd":
        return P.reply_ok(r[0], {"op": r[1], "args": r[2]})
    return P.reply_ok("c-0", {"parsed": r})


env = P.Envelope(1)
out = open(sys.argv[2], "w")
with open(sys.argv[1]) as f:
    for line in f:
        kind, hexp = line.split()
        payload = binascii.unhexlify(hexp)
        try:
            raw = env.dumps(outbound(kind, payload), 5, None).encode()
            out.write("ok " + binascii.hexlify(raw).decode() + "\n")
        except Exception as e:
            out.write("raised " + binascii.hexlify(repr(e).encode()).decode() + "\n")
out.close()
"""


def test_same_cases_under_micropython(tmp_path):
    """Hypothesis draws the cases; one micropython process parses them all and answers each with
    the message it would publish; every one must be strict UTF-8 JSON and agree with CPython."""
    cases = []

    @settings(max_examples=250, deadline=None, database=None)
    @given(frag=fragment)
    def collect(frag):
        for kind, template in TEMPLATES:
            cases.append((kind, template.replace(b"F", frag)))

    collect()
    # the issue's own cases, whatever hypothesis drew
    for p in (b'{"id":"c-1","op":"authorize","auth_id":"\\ud835\\udfd9\\ud835\\udfde"}',
              b'{"id":"c-2","op":"\\ud83d\\ude00"}', b'{"id":"\\ud800","op":"stop"}', b'{"id":"\xff","op":"stop"}',
              b'{"id":"\xed\xa0\xb5\xed\xbf\x99","op":"stop"}', b'{"id":"\xc0\xaf","op":"stop"}'):
        cases.append(("cmd", p))
    src = tmp_path / "cases.txt"
    src.write_text("".join("%s %s\n" % (k, p.hex()) for k, p in cases))
    script = tmp_path / "mp_text_cases.py"
    script.write_text(MP_SCRIPT)
    res = tmp_path / "out.txt"
    build_mpy()  # the micropython leg loads the compiled firmware: compile what is checked out now
    proc = run_micropython([str(script), str(src), str(res)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = res.read_text().splitlines()
    assert len(lines) == len(cases), (len(lines), len(cases))
    accepted = refused = 0
    for (kind, payload), line in zip(cases, lines, strict=True):
        status, hexv = line.split()
        assert status == "ok", (payload, bytes.fromhex(hexv).decode(errors="replace"))
        raw = bytes.fromhex(hexv)
        try:
            mp = strict_message(raw)
        except (UnicodeDecodeError, ValueError, AssertionError) as e:
            raise AssertionError("MicroPython published %r for %r: %s" % (raw, payload, e)) from None
        cpy = json.loads(json.dumps(outbound(kind, payload)[2]))  # tuples come back as lists
        for k in ("v", "boot", "seq", "up_ms", "ts"):
            mp.pop(k)
        if oracle(payload) is None:
            refused += 1
            assert mp.get("error") == "bad_json" and mp.get("type") == "rejected", (payload, mp)
        else:
            accepted += 1
            # MicroPython's json takes raw control characters that CPython's refuses; apart from
            # that both runtimes must read the same document and answer the same
            if not any(c < 0x20 for c in payload):
                assert mp == cpy, (payload, mp, cpy)
    assert accepted > 100 and refused > 100, (accepted, refused)  # both sides of the check ran
    assert os.path.getsize(res) > 0
