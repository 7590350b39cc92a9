# The MQTT backend (firmware/cloud.py) on the real Station (charging core, settings, session log on
# a temporary flash) with a recording stand-in for the link's queue API (the real link runs against
# mosquitto in test_link.py; importing it here too would not fit the 112K heap when everything is
# compiled from source). Both runtimes.
import gc
import json

from firmware.station import Station

gc.collect()  # compiling from source on the unix port: keep the 112K heap unfragmented
from firmware.cloud import Cloud  # noqa: E402

gc.collect()
from firmware.storage import Storage  # noqa: E402
from mpcompat import TempDir  # noqa: E402
from station_caps import HW, BoardCaps  # noqa: E402, F401  (HW: for the tests)

SERIAL = "T0001"


class QueueLink:
    """firmware.link.Link's API towards the app: publish/get/connected/connect_count/topics."""

    def __init__(self):
        self.topics = []
        self._out = []
        self._in = []
        self.connected = False
        self.connect_count = 0
        self.started = False

    def add_topic(self, t):
        self.topics.append(t)

    def start(self):
        self.started = True

    def publish(self, topic, payload, retain=False, qos=1, key=None):
        if key is not None:
            self._out = [e for e in self._out if e[3] != key]
        self._out.append((topic.encode(), payload.encode(), retain, key, qos))
        return True

    def get(self):
        return self._in.pop(0) if self._in else None

    def pending(self):
        return len(self._out)


class CloudRig:
    def __init__(self, standalone=False, boot=7, boot_cmd_id=None):
        store = Storage(TempDir("cloud").path)
        store.write_json("energy.json", {"wh": 1000})
        board = BoardCaps("soft" if boot_cmd_id else "power_on")
        st = Station(store, board, SERIAL, boot, 0, boot_cmd_id, {"standalone": standalone}, self._restart)
        st.readings(0, 250, None)
        self.station = st
        self.charger = st.charger
        self.sessions = st.sessions
        self.restarts = []
        self.outbox_at_restart = None
        self.link = QueueLink()
        self.cloud = Cloud(st, self.link, "evse")

    @property
    def settings(self):
        return self.station.settings

    def _restart(self, cmd_id):
        self.restarts.append(cmd_id)
        self.outbox_at_restart = len(self.link._out)

    # ---- test helpers ----
    def take(self):
        """Everything queued on the link: list of (relative topic, decoded payload, retain)."""
        out = []
        items = self.link._out
        self.link._out = []
        for item in items:
            t, p, r = item[0], item[1], item[2]
            rel = t.decode()[len("evse/%s/" % SERIAL):]
            try:
                doc = json.loads(p)
            except ValueError:
                doc = p.decode()
            out.append((rel, doc, r))
        return out

    def deliver(self, rel, payload, now=1000):
        self.cloud.handle("evse/%s/%s" % (SERIAL, rel), payload, now)
        return self.take()


def outcome(msgs):
    """Summarise what one inbound message produced: ('reply', ok, error, id) / ('rejected', topic,
    error) / ('none',) plus the count of answers."""
    answers = []
    for rel, doc, _ in msgs:
        if rel == "reply":
            answers.append(["reply", doc["ok"], doc.get("error"), doc["id"]])
        elif rel == "event" and doc.get("type") == "rejected":
            answers.append(["rejected", doc["topic"], doc["error"]])
    return answers


def snapshot(app):
    # sorted: MicroPython dicts do not keep insertion order
    ch = app.charger
    return json.dumps([sorted(app.settings.items()), ch.lease.seq, ch.lease.valid, ch.lease.grid_da,
                       ch.auth_state, ch.session._grant_valid, ch.session._hold,
                       app.restarts, len(app.sessions.pending())])
