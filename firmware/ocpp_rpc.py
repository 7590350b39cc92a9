# OCPP-J RPC (OCPP 1.6 JSON over WebSocket, section 4): CALL [2, id, action, payload],
# CALLRESULT [3, id, payload], CALLERROR [4, id, code, description, details].
# One CALL of ours is outstanding at a time (the spec's rule), matched by its unique id, with a
# timeout; the server's CALLs are answered at once by the handler, and anything malformed gets a
# CALLERROR instead of an exception. Pure logic: `send(text)` is the transport's queue, time comes
# in as `now` ticks. Inbound text goes through firmware/protocol.loads (strict UTF-8, finite JSON).
import json

from firmware import protocol
from firmware.ticks import ticks_diff

CALL = 2
CALLRESULT = 3
CALLERROR = 4

# OCPP 1.6 error codes (1.6 spells them FormationViolation and OccurenceConstraintViolation)
NOT_IMPLEMENTED = "NotImplemented"
NOT_SUPPORTED = "NotSupported"
INTERNAL = "InternalError"
PROTOCOL = "ProtocolError"
FORMATION = "FormationViolation"
PROPERTY = "PropertyConstraintViolation"
OCCURENCE = "OccurenceConstraintViolation"
TYPE = "TypeConstraintViolation"
GENERIC = "GenericError"

# our own failure codes for a CALL that got no CALLERROR from the server
TIMEOUT = "Timeout"
DISCONNECTED = "Disconnected"

CALL_TIMEOUT_MS = 30000
MAX_ID = 36  # messageId is at most 36 characters


class CallError(Exception):
    """Raised by a handler: answered as a CALLERROR with this code."""

    def __init__(self, code, desc=""):
        super().__init__(desc)
        self.code = code
        self.desc = desc


class Rpc:
    """send(text): queue a frame. handler(action, payload, now) -> result payload (dict) or raises
    CallError. call(action, payload, cb) queues a CALL; cb(result, error) gets the CALLRESULT's
    payload and None, or None and (code, description)."""

    def __init__(self, send, handler, id_prefix="", timeout_ms=CALL_TIMEOUT_MS, log=None):
        self.send = send
        self.handler = handler
        self.prefix = id_prefix
        self.timeout_ms = timeout_ms
        self.log = log
        self._n = 0
        self._out = None  # (id, action, cb, sent_at) of the outstanding CALL
        self.stats = {"calls": 0, "results": 0, "errors": 0, "timeouts": 0, "in_calls": 0,
                      "in_errors": 0, "ignored": 0}

    @property
    def busy(self):
        return self._out is not None

    @property
    def outstanding(self):
        return None if self._out is None else self._out[1]

    def new_id(self):
        self._n += 1
        return "%s%d" % (self.prefix, self._n)

    def call(self, action, payload, cb, now):
        """Send a CALL now. The caller checks `busy` first: a second CALL while one is outstanding is
        refused (returns False)."""
        if self._out is not None:
            return False
        mid = self.new_id()
        self._out = (mid, action, cb, now)
        self.stats["calls"] += 1
        self.send(json.dumps([CALL, mid, action, payload]))
        return True

    def tick(self, now):
        o = self._out
        if o is not None and ticks_diff(now, o[3]) >= self.timeout_ms:
            self._out = None
            self.stats["timeouts"] += 1
            self._finish(o, None, (TIMEOUT, "no answer within %d ms" % self.timeout_ms))

    def reset(self):
        """The connection dropped: the outstanding CALL will not be answered."""
        o = self._out
        self._out = None
        if o is not None:
            self._finish(o, None, (DISCONNECTED, "connection lost"))

    def _finish(self, o, result, error):
        try:
            o[2](result, error)
        except Exception as e:  # noqa: BLE001  a bug in a callback must not stop the RPC layer
            self._say("rpc: callback of", o[1], "failed:", repr(e))

    def _say(self, *a):
        if self.log:
            self.log(" ".join(str(x) for x in a))

    def _error(self, mid, code, desc):
        self.stats["in_errors"] += 1
        self.send(json.dumps([CALLERROR, mid, code, desc[:255], {}]))

    def on_message(self, raw, now):
        """One text message from the server. Never raises."""
        try:
            self._on_message(raw, now)
        except Exception as e:  # noqa: BLE001
            self._say("rpc: error:", repr(e))

    def _on_message(self, raw, now):
        try:
            msg = protocol.loads(raw)
        except protocol.ProtocolError as e:
            # no id can be read: "-1" tells the server which of its messages this is about (none)
            self._error("-1", FORMATION, "message is not JSON: " + e.detail)
            return
        if not isinstance(msg, list) or len(msg) < 3 or not isinstance(msg[0], int) or isinstance(msg[0], bool):
            self._error("-1", FORMATION, "a message is an array [type, id, ...]")
            return
        mtype = msg[0]
        mid = msg[1]
        if not isinstance(mid, str) or not mid or len(mid) > MAX_ID:
            self._error("-1", FORMATION, "message id must be a string of 1..36 characters")
            return
        if mtype == CALL:
            self.stats["in_calls"] += 1
            if len(msg) != 4 or not isinstance(msg[2], str):
                self._error(mid, FORMATION, "a CALL is [2, id, action, payload]")
                return
            if not isinstance(msg[3], dict):
                self._error(mid, FORMATION, "a CALL's payload is an object")
                return
            try:
                result = self.handler(msg[2], msg[3], now)
            except CallError as e:
                self._error(mid, e.code, e.desc)
                return
            except Exception as e:  # noqa: BLE001  our bug: the server still gets an answer
                self._error(mid, INTERNAL, repr(e)[:120])
                return
            self.send(json.dumps([CALLRESULT, mid, result if result is not None else {}]))
            return
        if mtype == CALLRESULT or mtype == CALLERROR:
            o = self._out
            if o is None or o[0] != mid:
                self.stats["ignored"] += 1  # late answer to a CALL that timed out
                return
            if mtype == CALLRESULT:
                if len(msg) != 3 or not isinstance(msg[2], dict):
                    self._out = None
                    self._finish(o, None, (FORMATION, "malformed CALLRESULT"))
                    return
                self._out = None
                self.stats["results"] += 1
                self._finish(o, msg[2], None)
                return
            self._out = None
            self.stats["errors"] += 1
            code = msg[2] if isinstance(msg[2], str) else GENERIC
            desc = msg[3] if len(msg) > 3 and isinstance(msg[3], str) else ""
            self._finish(o, None, (code, desc))
            return
        self._error(mid, PROTOCOL, "unknown message type %d" % mtype)
