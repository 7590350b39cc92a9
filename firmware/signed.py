# Signed cloud messages (contract v1.1, "Signed messages"): the HMAC-SHA256 envelope
# {"msg": "<JSON text>", "ctr": N, "mac": "<hex>"} on `limit`, `cmd` and `config`, one monotonic
# counter for the three topics, kept in flash, and the retained-config rule.
#
# HMAC is written out here over hashlib.sha256 (RFC 2104: H((K ^ opad) || H((K ^ ipad) || m)),
# block size 64) because MicroPython has no `hmac` module. The mac is compared in constant time so
# that the time to refuse a forgery says nothing about how many of its bytes were right.
import hashlib

from firmware import protocol
from firmware.units import REPLAY, UNAUTHENTICATED

BLOCK = 64
CTR_FILE = "msgctr.json"  # kept by a factory reset (contract: the counter survives it)
MAX_CTR = 2 ** 53  # JSON-safe integers only


def _xor_pad(key, pad):
    out = bytearray(BLOCK)
    for i in range(BLOCK):
        out[i] = (key[i] if i < len(key) else 0) ^ pad
    return bytes(out)


class Hmac:
    """HMAC-SHA256 with one key: the padded keys are made once, each mac costs two hashes."""

    def __init__(self, key):
        if len(key) > BLOCK:
            key = hashlib.sha256(key).digest()
        self._ipad = _xor_pad(key, 0x36)
        self._opad = _xor_pad(key, 0x5C)

    def digest(self, *parts):
        h = hashlib.sha256(self._ipad)
        for p in parts:
            h.update(p)
        inner = h.digest()
        h = hashlib.sha256(self._opad)
        h.update(inner)
        return h.digest()


def hmac_sha256(key, msg):
    return Hmac(key).digest(msg)


def equal(a, b):
    """Constant-time comparison of two byte strings of the same length (False when they differ)."""
    if len(a) != len(b):
        return False
    acc = 0
    for i in range(len(a)):
        acc |= a[i] ^ b[i]
    return acc == 0


_HEX = "0123456789abcdefABCDEF"


def unhex(s, n):
    """n bytes from a string of 2n hex digits, or None."""
    if not isinstance(s, str) or len(s) != 2 * n:
        return None
    for c in s:
        if c not in _HEX:
            return None
    import binascii

    return binascii.unhexlify(s)


def parse_key(hex_key):
    """The provisioned `cmd_key` (64 hex digits) as 32 bytes; ValueError otherwise."""
    k = unhex(hex_key.strip() if isinstance(hex_key, str) else hex_key, 32)
    if k is None:
        raise ValueError("cmd_key must be 64 hex digits")
    return k


class Refused(Exception):
    def __init__(self, code, detail):
        super().__init__(detail)
        self.code = code
        self.detail = detail


class Verifier:
    """Opens envelopes. open(topic, payload) -> the inner document's text, None for the retained
    config already applied (neither applied again nor rejected), or raises Refused
    (unauthenticated | replay). The counter is in flash before open() returns."""

    def __init__(self, store, key):
        self.store = store
        self.hmac = Hmac(key)
        rec = store.read_json(CTR_FILE, None) or {}
        ctr = rec.get("ctr", 0)
        self.ctr = ctr if isinstance(ctr, int) and ctr >= 0 else 0
        cfg = rec.get("config")
        # (ctr, mac hex) of the last document applied from `config`
        self.config = (cfg[0], cfg[1]) if isinstance(cfg, list) and len(cfg) == 2 else None
        self._opened = None  # (ctr, mac) of the config document open() just returned

    def mac(self, topic, ctr, msg):
        return self.hmac.digest(topic.encode(), b"\n", str(ctr).encode(), b"\n", msg.encode())

    def open(self, topic, payload):
        self._opened = None
        if payload is None:
            raise Refused(UNAUTHENTICATED, "payload too large for an envelope")
        try:
            doc = protocol.loads(payload)  # strict UTF-8, finite JSON (firmware/text.py)
        except protocol.ProtocolError:
            raise Refused(UNAUTHENTICATED, "not an envelope (not JSON)") from None
        if not isinstance(doc, dict):
            raise Refused(UNAUTHENTICATED, "not an envelope")
        msg = doc.get("msg")
        ctr = doc.get("ctr")
        mac_hex = doc.get("mac")
        if not isinstance(msg, str) or isinstance(ctr, bool) or not isinstance(ctr, int):
            raise Refused(UNAUTHENTICATED, "envelope needs msg (string), ctr (integer), mac")
        if ctr < 1 or ctr > MAX_CTR:
            raise Refused(UNAUTHENTICATED, "ctr must be 1..2^53")
        given = unhex(mac_hex, 32)
        if given is None:
            raise Refused(UNAUTHENTICATED, "mac must be 64 hex digits")
        try:
            want = self.mac(topic, ctr, msg)
        except UnicodeError:  # a lone surrogate in msg cannot be encoded: no mac can match it
            raise Refused(UNAUTHENTICATED, "msg is not valid text") from None
        if not equal(want, given):
            raise Refused(UNAUTHENTICATED, "bad mac")
        mac_l = mac_hex.lower()
        if topic == "config" and self.config is not None and self.config[0] == ctr and self.config[1] == mac_l:
            return None  # the retained document applied before, re-delivered
        if ctr <= self.ctr:
            raise Refused(REPLAY, "ctr %d already used (last %d)" % (ctr, self.ctr))
        self.ctr = ctr
        self._save()  # before the message takes effect or is answered
        if topic == "config":
            self._opened = (ctr, mac_l)
        return msg

    def unwrap(self, backend, topic, payload, now_ms):
        """open() for the MQTT backend (firmware/cloud.py): a refused message becomes a `rejected`
        event, never a reply (a replayed command must not even be answered); None then."""
        if topic == "config" and payload is not None and len(payload) == 0:
            return None  # the retained config deleted (an empty message): nothing to apply, nothing to sign
        try:
            return self.open(topic, payload)
        except Refused as e:
            backend.reject(topic, e.code, e.detail, now_ms)
            return None

    def config_applied(self):
        """The config document open() returned was applied: remember it (also across resets)."""
        if self._opened is not None:
            self.config = self._opened
            self._opened = None
            self._save()

    def _save(self):
        self.store.write_json(CTR_FILE, {"ctr": self.ctr,
                                         "config": list(self.config) if self.config else None})
