# The MQTT contract's pure parts (shared/contract.md, docs/mqtt.md): topic names, the envelope of
# outbound messages, and parsing/validation of inbound `limit`, `cmd` and `config` payloads with
# the contract's error codes. No I/O; runs on CPython and MicroPython. Nothing here raises on bad
# input except ProtocolError.
import json

from firmware import text
from firmware.ticks import const
from firmware.units import (  # noqa: F401  (the error codes and bounds are part of this module's API)
    BAD_JSON,
    BAD_REQUEST,
    BUSY,
    ERRORS,
    MAX_AMPS,
    MAX_ID,
    MAX_SEQ,
    NOT_ALLOWED,
    OUT_OF_RANGE,
    TTL_DEFAULT_S,
    TTL_MAX_S,
    TTL_MIN_S,
    UNKNOWN_OP,
    amps_1dp,
    is_int,
    is_number,
)

V = 1
ENVELOPE = ("v", "boot", "seq", "up_ms", "ts")
OPS = ("authorize", "deauthorize", "stop", "resume", "restart", "set", "session_ack", "get",
       "update", "factory_reset")  # the last two: contract v1.1

IN_TOPICS = ("limit", "cmd", "config")
# Home Assistant (firmware/ha.py): its controls under <p>/<id>/ (raw payloads as HA sends them: the
# switch, the number, the buttons), its birth topic and the discovery documents' topics
HA_IN_TOPICS = ("ha/enabled", "ha/max_current_a", "ha/button")
HA_STATUS = "%s/status"  # % ha_prefix: `online` when Home Assistant (re)starts
HA_CONFIG = "%s/%s/%s/%s/config"  # % (ha_prefix, component, node_id, object_id)


class ProtocolError(Exception):
    def __init__(self, code, detail, cmd_id=None):
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.cmd_id = cmd_id  # set when the error can be answered on `reply`


class Topics:
    """Full topic names for one charger: t.state == 'evse/SIM0001/state', t.config_reported, ..."""

    def __init__(self, prefix, serial):
        self.base = "%s/%s/" % (prefix, serial)
        b = self.base
        self.online = b + "online"
        self.state = b + "state"
        self.event = b + "event"
        self.session = b + "session"
        self.reply = b + "reply"
        self.config_reported = b + "config/reported"

    def inbound(self, ha=False):
        """The topics to subscribe (limit, cmd, config: built here, as the link keeps them and
        nothing else needs their full names); ha: with Home Assistant's controls (HA_IN_TOPICS)."""
        b = self.base
        t = [b + "limit", b + "cmd", b + "config"]
        if ha:
            for rel in HA_IN_TOPICS:
                t.append(self.base + rel)
        return t

    def relative(self, topic):
        """'evse/SIM0001/cmd' -> 'cmd'; None for a topic that is not ours."""
        if isinstance(topic, str) and topic.startswith(self.base):
            return topic[len(self.base):]
        return None


class Envelope:
    """Adds "v", "boot", "seq" (increasing within one boot), "up_ms" and "ts" to outbound messages."""

    def __init__(self, boot):
        self.boot = boot
        self.seq = 0

    def wrap(self, fields, up_ms, ts):
        self.seq += 1
        d = fields.copy()  # one table of the right size, not one grown key by key
        d["v"] = V  # the envelope's fields win over any of the same name
        d["boot"] = self.boot
        d["seq"] = self.seq
        d["up_ms"] = up_ms
        d["ts"] = ts
        return d

    def write(self, stream, fields, up_ms, ts):
        """json.dump() of wrap(fields, up_ms, ts) into a text stream (or MicroPython's BytesIO),
        without building the wrapped dict: the envelope first, then the fields' own object with its
        opening brace overwritten. Consumes one seq, as wrap() does."""
        for k in ENVELOPE:
            if k in fields:  # the envelope must win: the plain way
                json.dump(self.wrap(fields, up_ms, ts), stream)
                return
        self.seq += 1
        w = stream.write
        w('{"v": ')
        json.dump(V, stream)
        w(', "boot": ')
        json.dump(self.boot, stream)
        w(', "seq": ')
        json.dump(self.seq, stream)
        w(', "up_ms": ')
        json.dump(up_ms, stream)
        w(', "ts": ')
        json.dump(ts, stream)
        if not fields:
            w("}")
            return
        w(",")
        at = stream.tell()
        json.dump(fields, stream)  # '{"k": ...}'
        end = stream.tell()
        stream.seek(at)
        w(" ")  # its '{'
        stream.seek(end)

    def peek(self, fields, up_ms, ts):
        """The envelope the next message will carry, around fields (seq not consumed)."""
        d = self.wrap(fields, up_ms, ts)
        self.seq -= 1
        return d

    def dumps(self, fields, up_ms, ts):
        return json.dumps(self.wrap(fields, up_ms, ts))


MAX_DEPTH = const(16)  # arrays and objects nested in an inbound document (OCPP 1.6 needs 6)


def _reject_constant(name):
    raise ValueError("non-finite number " + name)


def _finite(obj, depth=0):
    """Walk a decoded document: no NaN/Infinity anywhere, bounded nesting."""
    if depth > MAX_DEPTH:
        return False
    if isinstance(obj, float):
        return is_number(obj)
    if isinstance(obj, dict):
        for k in obj:
            if not _finite(obj[k], depth + 1):
                return False
    elif isinstance(obj, list):
        for v in obj:
            if not _finite(v, depth + 1):
                return False
    return True


_HEX = b"0123456789abcdefABCDEF"


def _json_string(s, i):
    """End index of the JSON string that starts at s[i] ('"'), or -1 (raw control character, bad
    escape, unterminated). s is bytes: indexing a MicroPython str walks its UTF-8 from the start."""
    j = i + 1
    while True:
        k = s.find(b'"', j)
        if k < 0:
            return -1
        b = s.find(b"\\", j, k)
        if b < 0:
            return -1 if k > j and min(s[j:k]) < 32 else k + 1
        if b > j and min(s[j:b]) < 32:
            return -1
        if b + 1 >= len(s):
            return -1
        e = s[b + 1]
        if e == 117:  # u
            h = s[b + 2:b + 6]
            if len(h) != 4:
                return -1
            for ch in h:
                if ch not in _HEX:
                    return -1
            j = b + 6
        elif e in b'"\\/bfnrt':
            j = b + 2
        else:
            return -1


def _json_digits(s, i, n):
    while i < n and 48 <= s[i] <= 57:
        i += 1
    return i


def _json_scalar(s, i, n):
    """End index of the literal or number at s[i], or -1 (s is bytes; nothing here allocates)."""
    c = s[i]
    if c == 116 or c == 102 or c == 110:  # t f n
        for lit in (b"true", b"false", b"null"):
            if s[i:i + len(lit)] == lit:
                return i + len(lit)
        return -1
    if c == 45:  # -
        i += 1
        if i == n:
            return -1
        c = s[i]
    if c == 48:  # 0
        i += 1
    elif 49 <= c <= 57:
        i = _json_digits(s, i + 1, n)
    else:
        return -1
    if i < n and s[i] == 46:  # .
        j = _json_digits(s, i + 1, n)
        if j == i + 1:
            return -1
        i = j
    if i < n and (s[i] == 101 or s[i] == 69):  # e E
        i += 1
        if i < n and (s[i] == 43 or s[i] == 45):
            i += 1
        j = _json_digits(s, i, n)
        if j == i:
            return -1
        i = j
    return i


def strict_json(s):
    """True when s (bytes, or str) is one JSON text by RFC 8259's grammar. MicroPython's json.loads
    also takes missing commas and colons, trailing commas, leading zeros, mismatched brackets and
    raw control characters in strings, which CPython's refuses (found by `make soak`): both runtimes
    must read a payload the same way, so loads() checks the grammar first. Iterative (no recursion
    on deep nesting), on bytes (O(1) indexing)."""
    if isinstance(s, str):
        s = s.encode()
    n = len(s)
    stack = []
    i = 0
    want = 0  # 0 a value, 1 a value or ']', 2 a key or '}', 3 a key, 4 ':', 5 ',' or a closer or the end
    while True:
        while i < n and (s[i] == 32 or s[i] == 10 or s[i] == 13 or s[i] == 9):
            i += 1
        if i == n:
            return want == 5 and not stack
        c = s[i]
        if want == 5:
            if not stack:
                return False
            top = stack[-1]
            if c == 44:  # ,
                want = 3 if top == 123 else 0
            elif (c == 93 and top == 91) or (c == 125 and top == 123):  # ] [ } {
                stack.pop()
            else:
                return False
            i += 1
        elif want == 4:
            if c != 58:  # :
                return False
            want = 0
            i += 1
        elif want >= 2:
            if c == 125 and want == 2:
                stack.pop()
                want = 5
                i += 1
            elif c == 34:  # "
                i = _json_string(s, i)
                if i < 0:
                    return False
                want = 4
            else:
                return False
        elif c == 93 and want == 1:
            stack.pop()
            want = 5
            i += 1
        elif c == 91 or c == 123:
            if len(stack) == MAX_DEPTH:  # refused before json.loads builds it (a 6 KB frame of
                return False  # brackets cost MicroPython's parser ~100 KB: make soak's OCPP leg)
            stack.append(c)
            want = 1 if c == 91 else 2
            i += 1
        else:
            i = _json_string(s, i) if c == 34 else _json_scalar(s, i, n)
            if i < 0:
                return False
            want = 5


def loads(payload):
    """Decode a JSON payload (bytes or str). Raises ProtocolError(bad_json) for anything that is not
    strict UTF-8 (firmware/text.py), valid, finite JSON, or that holds a lone surrogate escape, and
    ProtocolError(bad_request) for a payload dropped as too large (None). Escaped surrogate pairs come
    back combined, on MicroPython too: every string returned is strict UTF-8."""
    if payload is None:
        raise ProtocolError(BAD_REQUEST, "payload too large")
    try:
        s = text.decode(payload)
    except Exception:  # noqa: BLE001  ValueError; MemoryError when the heap cannot hold the text
        raise ProtocolError(BAD_JSON, "not valid UTF-8") from None
    if not strict_json(payload if isinstance(payload, (bytes, bytearray)) else s):
        raise ProtocolError(BAD_JSON, "not valid JSON")
    try:
        try:
            obj = json.loads(s, parse_constant=_reject_constant)
        except TypeError:  # MicroPython: no keyword arguments
            obj = json.loads(s)
    except Exception:  # noqa: BLE001  ValueError, UnicodeError, RecursionError, MemoryError...
        raise ProtocolError(BAD_JSON, "not valid JSON") from None
    if not _finite(obj):
        raise ProtocolError(BAD_JSON, "non-finite number or nesting too deep")
    if "\\u" in s:  # decode() let no raw surrogate through: only an escape can bring one
        try:
            obj = text.clean(obj)
        except Exception:  # noqa: BLE001  ValueError, MemoryError
            raise ProtocolError(BAD_JSON, "lone surrogate or invalid escape in a string") from None
    return obj


def parse_object(payload):
    obj = loads(payload)
    if not isinstance(obj, dict):
        raise ProtocolError(BAD_REQUEST, "payload must be a JSON object")
    return obj


# ---- limit ---------------------------------------------------------------------------------------
def parse_limit(payload):
    """-> (a, ttl_s, seq): a is a number or a list of 3 numbers (grid phases), ttl_s an int 1..3600
    (60 when missing), seq a non-negative integer (required: it orders the leases)."""
    obj = parse_object(payload)
    if "a" not in obj:
        raise ProtocolError(BAD_REQUEST, "a is required")
    a = obj["a"]
    if isinstance(a, list):
        if len(a) != 3:
            raise ProtocolError(BAD_REQUEST, "a must be a number or a list of 3 numbers")
        for v in a:
            if not is_number(v):
                raise ProtocolError(BAD_REQUEST, "a must hold 3 numbers")
        for v in a:
            if v < 0 or v > MAX_AMPS:
                raise ProtocolError(OUT_OF_RANGE, "a must be 0..%d A" % MAX_AMPS)
        a = [amps_1dp(v) for v in a]
    elif is_number(a):
        if a < 0 or a > MAX_AMPS:
            raise ProtocolError(OUT_OF_RANGE, "a must be 0..%d A" % MAX_AMPS)
        a = amps_1dp(a)
    else:
        raise ProtocolError(BAD_REQUEST, "a must be a number or a list of 3 numbers")
    ttl = obj.get("ttl_s", TTL_DEFAULT_S)
    if ttl is None:
        ttl = TTL_DEFAULT_S
    if not is_number(ttl):
        raise ProtocolError(BAD_REQUEST, "ttl_s must be a number of seconds")
    if ttl < TTL_MIN_S or ttl > TTL_MAX_S:
        raise ProtocolError(OUT_OF_RANGE, "ttl_s must be %d..%d" % (TTL_MIN_S, TTL_MAX_S))
    seq = obj.get("seq")
    if not is_int(seq):
        raise ProtocolError(BAD_REQUEST, "seq must be an integer")
    if seq < 0 or seq > MAX_SEQ:
        raise ProtocolError(OUT_OF_RANGE, "seq must be 0..2^53")
    return a, int(ttl), int(seq)


# ---- cmd -----------------------------------------------------------------------------------------
def _string(obj, key, required=True):
    v = obj.get(key)
    if v is None and not required:
        return None
    if not isinstance(v, str) or not v:
        raise ProtocolError(BAD_REQUEST, key + " must be a non-empty string")
    if len(v) > MAX_ID:
        raise ProtocolError(OUT_OF_RANGE, "%s is at most %d characters" % (key, MAX_ID))
    return v


def command_id(obj):
    """The answerable id of a decoded command, or None (missing, not a string, empty, > 64)."""
    if not isinstance(obj, dict):
        return None
    cid = obj.get("id")
    if isinstance(cid, str) and 1 <= len(cid) <= MAX_ID:
        return cid
    return None


def parse_cmd(payload):
    """-> (cmd_id, op, args). ProtocolError.cmd_id is set when the error goes on `reply`; None means
    it goes out as a `rejected` event."""
    obj = parse_object(payload)
    cid = command_id(obj)
    if cid is None:
        raise ProtocolError(BAD_REQUEST, "id must be a string of 1..%d characters" % MAX_ID)
    try:
        op = obj.get("op")
        if not isinstance(op, str):
            raise ProtocolError(BAD_REQUEST, "op must be a string")
        if op not in OPS:
            raise ProtocolError(UNKNOWN_OP, "unknown op " + op[:32])
        args = {}
        if op == "authorize":
            args["auth_id"] = _string(obj, "auth_id")
        elif op == "session_ack":
            args["session_id"] = _string(obj, "session_id")
        elif op == "set":
            s = obj.get("settings")
            if not isinstance(s, dict):
                raise ProtocolError(BAD_REQUEST, "settings must be a JSON object")
            args["settings"] = s
        elif op == "update":
            args["url"] = obj.get("url")  # checked by the updater (firmware/fetch.py parse_url)
        return cid, op, args
    except ProtocolError as e:
        e.cmd_id = cid
        raise


# ---- config --------------------------------------------------------------------------------------
def parse_config(payload):
    """-> the partial settings document (validated all-or-nothing by the app), or None for an empty
    payload (a cleared retained message: nothing to do)."""
    if payload is not None and len(payload) == 0:
        return None
    return parse_object(payload)


# ---- outbound --------------------------------------------------------------------------------------
def reply_ok(cmd_id, result=None):
    d = {"id": cmd_id, "ok": True}
    if result is not None:
        d["result"] = result
    return d


def reply_error(cmd_id, code, detail):
    return {"id": cmd_id, "ok": False, "error": code if code in ERRORS else BAD_REQUEST,
            "detail": text.quote(detail, 120)}


def rejected(relative_topic, code, detail=None):
    d = {"type": "rejected", "topic": relative_topic, "error": code if code in ERRORS else BAD_REQUEST}
    if detail:
        d["detail"] = text.quote(detail, 120)  # printable ASCII: never echoes what was not validated
    return d
