"""Signed messages of contract v1.1 for the reference cloud: the HMAC-SHA256 envelope around every
`limit`, `cmd` and `config` to a charger that has a command key.

Keys file (JSON): {"SERIAL": "<64 hex digits>", ...}, the `cmd_key` of each provisioned board.
The counter is time-based (microseconds since 2020, and always one more than the last one sent by this
process), so a restarted cloud or the one-shot `tools/cloud cmd` never reuses a counter and needs no
store of its own. Two senders for one charger must not race within the network delay: a message that
arrives after one with a higher counter is refused as a replay.
"""

import hashlib
import hmac
import json
import threading
import time

EPOCH = 1577836800  # 2020-01-01


def load_keys(path):
    if not path:
        return {}
    with open(path) as f:
        keys = json.load(f)
    if not isinstance(keys, dict):
        raise ValueError("%s: a JSON object {serial: hex key} is expected" % path)
    out = {}
    for serial, k in keys.items():
        b = bytes.fromhex(k)
        if len(b) != 32:
            raise ValueError("%s: the key of %s must be 64 hex digits" % (path, serial))
        out[serial] = b
    return out


class Signer:
    def __init__(self, keys):
        self.keys = keys
        self._last = 0
        self._lock = threading.Lock()

    def counter(self):
        with self._lock:
            self._last = max(self._last + 1, int((time.time() - EPOCH) * 1000000))
            return self._last

    def wrap(self, serial, topic, text):
        """The payload to publish on <p>/<serial>/<topic>: the envelope when serial has a key."""
        key = self.keys.get(serial)
        if key is None:
            return text
        ctr = self.counter()
        mac = hmac.new(key, ("%s\n%d\n%s" % (topic, ctr, text)).encode(), hashlib.sha256).hexdigest()
        return json.dumps({"msg": text, "ctr": ctr, "mac": mac})
