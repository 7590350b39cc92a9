# Hypothesis fuzz of protocol parsing + cloud dispatch on every subscribed topic: whatever arrives,
# exactly one reply (command with a valid id) or one `rejected` event, or the message is taken
# (limit applied, config applied); nothing changes on rejection; no exception, not even a swallowed
# one. Writes the generated payloads with their outcomes to build/fuzz/cloud_fuzz.jsonl, which
# test_cloud_corpus.py replays on both runtimes (the MicroPython unix port included) next to the
# committed host_tests/corpus/cloud_fuzz.jsonl; REGEN_CORPUS=1 rewrites the committed one (after a
# deliberate change of an answer).
import binascii
import json
import math
import os

from cloud_rig import CloudRig, outcome, snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CPYTHON_ONLY = "hypothesis"
HERE = os.path.dirname(os.path.abspath(__file__))
FRESH = os.path.join(os.path.dirname(HERE), "build", "fuzz", "cloud_fuzz.jsonl")
CORPUS = os.path.join(HERE, "corpus", "cloud_fuzz.jsonl")
MAX_PAYLOAD = 8192  # firmware.link.MAX_PAYLOAD: larger payloads reach the cloud as None
MAX_CORPUS = 400

KEYS = ["id", "op", "a", "ttl_s", "seq", "auth_id", "session_id", "settings", "max_current_a",
        "min_current_a", "enabled", "standalone", "fallback_phases", "phase_rotation", "local_auth_ids",
        "state_interval_s", "junk"]
OPS = ["authorize", "deauthorize", "stop", "resume", "restart", "set", "session_ack", "get", "fly", ""]

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(10 ** 30), max_value=10 ** 30),
    st.integers(min_value=-5, max_value=70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0, max_value=40),
    st.text(max_size=70),
    st.sampled_from(OPS + ["c-1", "x" * 64, "x" * 65, "L2L3L1", "app:42"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)),
                      max_leaves=8)
objects = st.dictionaries(st.sampled_from(KEYS), values, max_size=6)


def _cmd(cid, op, extra):
    d = dict(extra)
    if cid is not None:
        d["id"] = cid
    if op is not None:
        d["op"] = op
    return d


def cmd_like():
    return st.builds(_cmd,
                     st.one_of(st.none(), st.just("c-1"), values), st.one_of(st.none(), st.sampled_from(OPS), values),
                     objects)


def limit_like():
    num = st.one_of(st.floats(min_value=-5, max_value=80), st.integers(-5, 2000), values)
    return st.builds(lambda a, ttl, seq, extra: dict(extra, a=a, ttl_s=ttl, seq=seq),
                     st.one_of(num, st.lists(num, min_size=2, max_size=4)), st.one_of(st.integers(-2, 4000), values),
                     st.one_of(st.integers(0, 200), values), st.dictionaries(st.sampled_from(KEYS), values, max_size=2))


def encode(doc):
    return json.dumps(doc).encode()  # NaN/Infinity come out as the non-standard tokens


payloads = st.one_of(
    objects.map(encode), cmd_like().map(encode), limit_like().map(encode), values.map(encode),
    st.binary(max_size=64), st.text(max_size=64).map(lambda s: s.encode()),
    st.sampled_from([b"", b"{", b"[" * 3000, b'{"id":"big","op":"get","pad":"' + b"x" * 10240 + b'"}',
                     b"x" * 10240, b'{"id":"c","op":"get"}', b'{"a":16,"ttl_s":60,"seq":101}']),
)

ENTRIES = []


def deliver(app, topic, payload):
    p = None if payload is not None and len(payload) > MAX_PAYLOAD else payload
    app.cloud.handle("evse/T0001/" + topic, p, 1000)
    return app.take()


def run_case(topic, payload, standalone, pre):
    app = CloudRig(standalone=standalone)
    if pre:
        assert deliver(app, "limit", b'{"a":10,"ttl_s":60,"seq":100}') == []
    before = snapshot(app)
    msgs = deliver(app, topic, payload)
    after = snapshot(app)
    assert app.cloud.stats["errors"] == 0, (topic, payload[:80] if payload else payload)
    return outcome(msgs), before != after, msgs


def check(topic, payload, standalone, pre, answers, changed, msgs):
    doc = None
    try:
        doc = json.loads(payload) if payload and len(payload) <= MAX_PAYLOAD else None
    except (ValueError, RecursionError):
        pass
    if len(answers) > 1:
        raise AssertionError("more than one answer: %r" % answers)
    if answers:
        assert not changed or answers[0][:2] == ["reply", True], (answers, payload[:80])
        if answers[0][0] == "reply":
            assert topic == "cmd" and isinstance(doc, dict) and answers[0][3] == doc.get("id")
    else:
        # taken without an answer: only a limit or config (or an empty config) can be
        assert topic in ("limit", "config"), (topic, payload[:80])
        if topic == "config" and payload:
            assert [m[1]["type"] for m in msgs if m[0] == "event"] == ["config_applied"]
    if topic == "cmd" and isinstance(doc, dict):
        cid = doc.get("id")
        valid_id = isinstance(cid, str) and 1 <= len(cid) <= 64 and all(
            not isinstance(v, float) or math.isfinite(v) for v in _leaves(doc))
        if valid_id and payload and len(payload) <= MAX_PAYLOAD:
            assert answers and answers[0][0] == "reply", (answers, payload[:80])


def _leaves(v):
    if isinstance(v, dict):
        for x in v.values():
            yield from _leaves(x)
    elif isinstance(v, list):
        for x in v:
            yield from _leaves(x)
    else:
        yield v


@settings(max_examples=400, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.sampled_from(["limit", "cmd", "config"]), payloads, st.booleans(), st.booleans())
def _fuzz(topic, payload, standalone, pre):
    pre = pre and not standalone and topic == "limit"
    answers, changed, msgs = run_case(topic, payload, standalone, pre)
    check(topic, payload, standalone, pre, answers, changed, msgs)
    if len(ENTRIES) < MAX_CORPUS:
        unit, rep = payload, 1
        if len(payload) > 1000 and payload == payload[:1] * len(payload):
            unit, rep = payload[:1], len(payload)
        ENTRIES.append({"t": topic, "h": binascii.hexlify(unit).decode(), "r": rep, "sa": standalone,
                        "pre": pre, "want": answers, "changed": changed})


def test_fuzz_dispatch_and_write_corpus():
    ENTRIES.clear()
    _fuzz()
    seen = set()
    lines = []
    for e in ENTRIES:
        line = json.dumps(e, sort_keys=True)
        if line not in seen and len(line) < 4000:
            seen.add(line)
            lines.append(line)
    os.makedirs(os.path.dirname(FRESH), exist_ok=True)
    for path in (FRESH, CORPUS) if os.getenv("REGEN_CORPUS") else (FRESH,):
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
    topics = {json.loads(x)["t"] for x in lines}
    assert topics == {"limit", "cmd", "config"} and len(lines) > 100
