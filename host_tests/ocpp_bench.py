# The OCPP backend (firmware/ocpp.py) on the real Station for the tests (not a test module): the
# charging core, settings and session log on a temporary flash, the vehicle of host_tests/charger_rig.py
# at the Inputs level in virtual time, and a scripted central system answering over a stand-in for
# firmware.ws.WsLink's queue API (the real WsLink runs against real servers in test_ws_link.py and
# test_ocpp_e2e.py). Both runtimes.
import gc
import json

from firmware.station import Station

gc.collect()
from firmware.ocpp import Ocpp  # noqa: E402

gc.collect()
from charger_rig import Rig  # noqa: E402

from firmware.ocpp_smart import format_time  # noqa: E402
from firmware.storage import Storage  # noqa: E402
from mpcompat import TempDir  # noqa: E402
from station_caps import BoardCaps  # noqa: E402

T_UNIX = 1764752400


class WsQueue:
    """firmware.ws.WsLink towards the backend: send/get/connected/connect_count/set_ping_interval."""

    def __init__(self):
        self.sent = []
        self.inbox = []
        self.connected = True
        self.connect_count = 1
        self.ping_s = None

    def start(self):
        pass

    def send(self, text):
        self.sent.append(text)
        return True

    def get(self):
        return self.inbox.pop(0) if self.inbox else None

    def set_ping_interval(self, s):
        self.ping_s = s


class Vehicle(Rig):
    """charger_rig's simulated vehicle and board on the Station's charger; the events stay for the
    Station, and the lifetime register continues from what the Station persisted (e0)."""

    e0 = 0

    def step(self):
        self._read()
        inp = self.inp
        inp.energy_wh += self.e0
        ch = self.ch
        ch.tick(self.now, inp)
        ch.drive(self.board, self.now)
        m = self.meter
        m.energy_wh = inp.energy_wh
        m.ok = True
        for k in range(3):
            m.i_da[k] = inp.i_da[k]
            m.i_a[k] = inp.i_da[k] / 10
        self.clock.advance(self.dt)


class Bench:
    def __init__(self, folder=None, settings=None, updater=None):
        """updater(store): a firmware/update.py Updater, wired in as firmware/trust.py does."""
        self.folder = folder or TempDir("ocpp").path
        self.store = Storage(self.folder)
        rec = self.store.read_json("boot.json", None) or {}
        self.boot = rec.get("boot", 0) + 1
        self.store.write_json("boot.json", {"boot": self.boot})
        caps = BoardCaps(energy_wh=5000, unix_time=None)  # the time comes from the central system
        self.restarts = []
        self.st = Station(self.store, caps, "CP1", self.boot, 0, None, settings, self.restarts.append)
        self.link = WsQueue()
        self.be = Ocpp(self.st, self.link)
        self.v = Vehicle()
        self.v.ch = self.st.charger
        self.v.inp = self.st.inp
        self.v.meter = caps.meter
        self.v.inp.energy_wh = self.st.energy_wh_persisted
        self.v.e0 = self.st.energy_wh_persisted
        self.calls = []  # (action, payload) of every CALL of the charger
        self.answers = []  # CALLRESULT / CALLERROR frames of the charger
        self.txid = 40
        self.boot_status = "Accepted"
        self.start_status = "Accepted"
        self.refuse = {}  # action -> how many more times to answer it with a CALLERROR
        if updater is not None:
            up = updater(self.store)
            up.charging = self.st.charging
            up.restart = self.st.restart
            up.healthy = lambda: self.link.connected
            self.st.updater = up
        self.be.start(self.v.now)

    def run(self, ms, answer=True):
        """Virtual time: the fast tick every 10 ms, the slow work (events, meter, backend) every 50 ms."""
        n = ms // 10
        for i in range(n):
            self.v.step()
            if i % 5 == 0:
                now = self.v.now
                self.st.meter_read(self.v.meter)
                self.st.drain_events(now, self.be)
                if self.st.updater is not None:
                    self.st.updater.service(now)  # an app hook on the device (firmware/trust.py)
                self.be.service(now)
                if answer:
                    self.serve()

    def serve(self):
        """The central system: answer every CALL of the charger."""
        while self.link.sent:
            m = json.loads(self.link.sent.pop(0))
            if m[0] != 2:
                self.answers.append(m)
                continue
            action, p = m[2], m[3]
            self.calls.append((action, p))
            if self.refuse.get(action):
                self.refuse[action] -= 1
                self.link.inbox.append(json.dumps([4, m[1], "InternalError", "not now", {}]))
                continue
            res = {}
            now = format_time(T_UNIX + self.v.now // 1000)
            if action == "BootNotification":
                res = {"status": self.boot_status, "currentTime": now, "interval": 10}
            elif action == "Heartbeat":
                res = {"currentTime": now}
            elif action == "StartTransaction":
                self.txid += 1
                res = {"transactionId": self.txid, "idTagInfo": {"status": self.start_status}}
            elif action == "Authorize":
                res = {"idTagInfo": {"status": "Accepted"}}
            self.link.inbox.append(json.dumps([3, m[1], res]))

    def server_call(self, action, payload):
        """A CALL of the central system; returns the charger's answer frame."""
        self.link.inbox.append(json.dumps([2, "cs-%d" % len(self.answers), action, payload]))
        n = len(self.answers)
        self.run(60)
        assert len(self.answers) > n, "no answer to " + action
        return self.answers[-1]

    def of(self, action):
        return [p for a, p in self.calls if a == action]
