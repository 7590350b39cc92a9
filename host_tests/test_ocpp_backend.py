# The OCPP backend (firmware/ocpp.py) on the real Station (charging core, settings, session log on a
# temporary flash) with the vehicle of host_tests/charger_rig.py at the Inputs level, in virtual
# time, and a scripted central system answering over a stand-in for firmware.ws.WsLink's queue API
# (the real WsLink runs against real servers in test_ws_link.py and test_ocpp_e2e.py). Runs on
# CPython and on the MicroPython unix port (heap: MP_HEAP below).
import gc
import json

from firmware.station import Station

gc.collect()
from firmware.ocpp import Ocpp  # noqa: E402

gc.collect()
from charger_rig import Rig  # noqa: E402

from firmware.ocpp_smart import format_time  # noqa: E402
from firmware.storage import Storage  # noqa: E402
from firmware.ticks import ticks_add  # noqa: E402
from mpcompat import TempDir  # noqa: E402

# The Station (53 KB on the 64-bit unix port) and the OCPP modules it imports (ocpp 29 KB, smart 10 KB,
# rpc 6 KB, measured after gc.collect()), a second Station and backend for the power-cut case, and
# this module plus charger_rig compiled from source do not fit 112K on the 64-bit port, whose objects
# are about twice the ESP32's; 192K is the smallest that passes (160K does not).
MP_HEAP = "192K"

T_UNIX = 1764752400


class Meter:
    def __init__(self):
        self.v_v = [230.0, 230.0, 230.0]
        self.i_a = [0.0, 0.0, 0.0]
        self.p_w = 0
        self.energy_wh = 5000
        self.ok = True
        self.i_da = [0, 0, 0]


class Caps:
    hw_max_a = 32
    phases = 3
    tethered_a = None

    def __init__(self):
        self.meter = Meter()


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
    """charger_rig's vehicle on the Station's charger; the events stay for the Station."""

    def step(self):
        self._vehicle()
        self.ch.tick(self.now, self.inp)
        if self.ch.selftest_req:
            self.inp.rcd_selftest = None
            self._st_due = self.now
        m = self.meter
        m.energy_wh = self.inp.energy_wh
        m.ok = True
        for k in range(3):
            m.i_da[k] = self.inp.i_da[k]
            m.i_a[k] = self.inp.i_da[k] / 10
        self.now = ticks_add(self.now, self.dt)


class Bench:
    def __init__(self, folder=None, settings=None):
        self.folder = folder or TempDir("ocpp").path
        self.store = Storage(self.folder)
        rec = self.store.read_json("boot.json", None) or {}
        self.boot = rec.get("boot", 0) + 1
        self.store.write_json("boot.json", {"boot": self.boot})
        caps = Caps()
        self.st = Station(self.store, "CP1", self.boot, caps, settings)
        self.restarts = []
        self.st.on_restart = self.restarts.append
        self.link = WsQueue()
        self.be = Ocpp(self.st, self.link)
        self.v = Vehicle()
        self.v.ch = self.st.charger
        self.v.inp = self.st.inp
        self.v.meter = caps.meter
        self.v.inp.energy_wh = self.st.energy_wh_persisted
        self.calls = []  # (action, payload) of every CALL of the charger
        self.answers = []  # CALLRESULT / CALLERROR frames of the charger
        self.txid = 40
        self.boot_status = "Accepted"
        self.start_status = "Accepted"
        self.refuse = {}  # action -> how many more times to answer it with a CALLERROR
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


def test_boot_status_and_clock():
    b = Bench()
    b.boot_status = "Pending"
    b.run(200)
    assert len(b.of("BootNotification")) == 1 and not b.of("StatusNotification")
    b.boot_status = "Accepted"
    b.run(10100)  # retried at the server's interval
    assert len(b.of("BootNotification")) == 2
    st = b.of("StatusNotification")
    assert [(p["connectorId"], p["status"]) for p in st] == [(0, "Available"), (1, "Available")], st
    t = b.st.ts(b.v.now)
    assert abs(t - (T_UNIX + b.v.now // 1000)) <= 2, t  # the clock from currentTime


def test_transaction_profile_pause_and_stop():
    b = Bench()
    b.run(300)
    b.v.plug()
    b.run(3000)
    start = b.of("StartTransaction")
    assert len(start) == 1 and start[0]["meterStart"] == 0 and start[0]["idTag"] == "FREE", start
    assert b.st.charger.contactor
    st1 = [p["status"] for p in b.of("StatusNotification") if p["connectorId"] == 1]
    assert st1[-1] == "Charging", st1
    # TxDefaultProfile 10 A on connector 0 -> the core's limit
    prof = {"chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10}]}}
    a = b.server_call("SetChargingProfile", {"connectorId": 0, "csChargingProfiles": prof})
    assert a[2] == {"status": "Accepted"}, a
    b.run(200)
    assert b.st.charger.limit_da == 100 and b.st.charger.offered_da == 100 and b.st.charger.limit_src == "cloud"
    prof["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] = 0
    b.server_call("SetChargingProfile", {"connectorId": 0, "csChargingProfiles": prof})
    b.run(8000)
    assert not b.st.charger.contactor and b.st.charger.offered_da == 0  # paused
    st1 = [p["status"] for p in b.of("StatusNotification") if p["connectorId"] == 1]
    assert "SuspendedEVSE" in st1, st1
    b.server_call("ClearChargingProfile", {})
    b.run(3000)
    assert b.st.charger.contactor and b.st.charger.offered_da == 160
    b.v.unplug()
    b.run(500)
    stop = b.of("StopTransaction")
    assert len(stop) == 1 and stop[0]["reason"] == "EVDisconnected" and stop[0]["transactionId"] == 41, stop
    assert stop[0]["meterStop"] >= 0 and stop[0]["meterStop"] <= b.st.energy_wh_persisted
    assert b.st.pending_sessions(8) == []  # acknowledged: the record is deleted


def test_offline_stop_then_power_cut_recovery():
    b = Bench()
    b.run(300)
    b.v.plug()
    b.run(3000)
    assert b.of("StartTransaction")
    b.link.connected = False  # the central system is gone
    b.v.unplug()
    b.run(2000, answer=False)
    assert not b.of("StopTransaction") and len(b.st.pending_sessions(8)) == 1
    b.link.sent = []  # whatever was queued went down with the connection
    b.link.connected = True
    b.link.connect_count += 1
    b.run(500)
    stop = b.of("StopTransaction")
    assert len(stop) == 1 and stop[0]["transactionId"] == 41, (stop, b.calls[-6:])
    assert b.of("BootNotification")[-1] and len(b.of("BootNotification")) == 2  # a new boot per connection
    # a second session, cut by power loss with the Start delivered
    b.v.plug()
    b.run(4000)
    assert len(b.of("StartTransaction")) == 2
    b.st.checkpoint(b.v.now)
    cut = Bench(b.folder)  # the same flash after a power cut
    cut.run(600)
    stop = cut.of("StopTransaction")
    assert len(stop) == 1 and stop[0]["reason"] == "PowerLoss" and stop[0]["transactionId"] == 42, cut.calls
    assert stop[0]["meterStop"] >= 0
    assert cut.of("BootNotification") and cut.calls[0][0] == "BootNotification"


def test_reset_stops_the_transaction_first():
    b = Bench()
    b.run(300)
    b.v.plug()
    b.run(3000)
    a = b.server_call("Reset", {"type": "Hard"})
    assert a[2] == {"status": "Accepted"}
    b.run(1000)
    stop = b.of("StopTransaction")
    assert stop and stop[0]["reason"] == "HardReset", stop
    assert b.restarts == ["ocpp-reset-hard"]


def test_configuration_persists_and_is_checked():
    b = Bench()
    b.run(300)
    a = b.server_call("ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "15"})
    assert a[2] == {"status": "Accepted"}
    a = b.server_call("ChangeConfiguration", {"key": "WebSocketPingInterval", "value": "12"})
    assert a[2] == {"status": "Accepted"} and b.link.ping_s == 12
    for k, v, want in (("MeterValuesSampledData", "Voltage,Bogus", "Rejected"), ("NumberOfConnectors", "2", "Rejected"),
                       ("Nope", "1", "NotSupported"), ("HeartbeatInterval", "-5", "Rejected"),
                       ("StopTransactionOnInvalidId", "maybe", "Rejected")):
        assert b.server_call("ChangeConfiguration", {"key": k, "value": v})[2] == {"status": want}, k
    again = Bench(b.folder)
    again.run(300)
    a = again.server_call("GetConfiguration", {"key": ["MeterValueSampleInterval", "WebSocketPingInterval", "X"]})
    vals = {}
    for k in a[2]["configurationKey"]:
        vals[k["key"]] = k["value"]
    assert vals == {"MeterValueSampleInterval": "15", "WebSocketPingInterval": "12"} and a[2]["unknownKey"] == ["X"]
    a = again.server_call("DataTransfer", {"vendorId": "acme"})
    assert a[2] == {"status": "UnknownVendorId"}
    n = len(again.of("Heartbeat"))
    a = again.server_call("TriggerMessage", {"requestedMessage": "Heartbeat"})
    assert a[2] == {"status": "Accepted"}
    again.run(300)
    assert len(again.of("Heartbeat")) == n + 1
    a = again.server_call("ChangeAvailability", {"connectorId": 0, "type": "Inoperative"})
    assert a[2] == {"status": "Accepted"} and again.st.settings["enabled"] is False
    again.run(300)
    assert [p["status"] for p in again.of("StatusNotification")][-2:] == ["Unavailable", "Unavailable"]


def test_local_authorization_list():
    b = Bench(settings={"auth_required": True})
    b.run(300)
    assert b.server_call("GetLocalListVersion", {})[2] == {"listVersion": 0}
    full = {"listVersion": 3, "updateType": "Full",
            "localAuthorizationList": [{"idTag": "AA11", "idTagInfo": {"status": "Accepted"}},
                                       {"idTag": "BB22", "idTagInfo": {"status": "Blocked"}}]}
    assert b.server_call("SendLocalList", full)[2] == {"status": "Accepted"}
    diff = {"listVersion": 3, "updateType": "Differential", "localAuthorizationList": []}
    assert b.server_call("SendLocalList", diff)[2] == {"status": "VersionMismatch"}
    diff = {"listVersion": 4, "updateType": "Differential",
            "localAuthorizationList": [{"idTag": "BB22"}, {"idTag": "CC33", "idTagInfo": {"status": "Accepted"}}]}
    assert b.server_call("SendLocalList", diff)[2] == {"status": "Accepted"}
    assert b.server_call("GetLocalListVersion", {})[2] == {"listVersion": 4}
    a = b.server_call("SendLocalList", {"listVersion": 5, "updateType": "Full", "localAuthorizationList": [{"x": 1}]})
    assert a[0] == 4 and a[2] == "TypeConstraintViolation", a
    # offline, a listed tag charges at once (LocalAuthorizeOffline); an unlisted one does not
    b.link.connected = False
    b.v.plug()
    b.run(200, answer=False)
    b.st.charger.present_tag(b.v.now, "ZZ99")
    b.run(500, answer=False)
    assert b.st.open_session() is None
    b.st.charger.present_tag(b.v.now, "CC33")
    b.run(3000, answer=False)
    assert b.st.open_session() is not None and b.st.open_session()["auth_id"] == "tag:CC33"
    assert not b.of("Authorize")
    # the list survives a reboot
    again = Bench(b.folder, {"auth_required": True})
    again.run(300)
    assert again.server_call("GetLocalListVersion", {})[2] == {"listVersion": 4}


def test_a_session_begun_offline_is_reported_at_reconnect_in_order():
    b = Bench()
    b.run(300)
    b.link.connected = False
    b.v.plug()
    b.run(3000, answer=False)
    b.v.unplug()
    b.run(300, answer=False)
    b.v.plug()
    b.run(3000, answer=False)  # a second one, still running
    assert not b.of("StartTransaction")
    b.link.sent = []
    b.link.connected = True
    b.link.connect_count += 1
    b.run(1000)
    tx = [(a, p.get("transactionId")) for a, p in b.calls if a in ("StartTransaction", "StopTransaction")]
    assert tx == [("StartTransaction", None), ("StopTransaction", 41), ("StartTransaction", None)], tx


def test_a_fault_is_reported_with_its_error_code():
    b = Bench()
    b.run(300)
    b.v.plug()
    b.run(3000)
    b.v.force_cp = "E"  # CP shorted
    b.run(1000)
    st = [p for p in b.of("StatusNotification") if p["status"] == "Faulted"]
    assert st and st[-1]["errorCode"] == "EVCommunicationError" and st[-1]["vendorErrorCode"] == "cp_short", st
    assert {p["connectorId"] for p in st} == {0, 1}


def test_remote_start_with_a_tx_profile():
    b = Bench(settings={"auth_required": True})
    b.run(300)
    prof = {"chargingProfileId": 7, "stackLevel": 0, "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 8}]}}
    a = b.server_call("RemoteStartTransaction", {"idTag": "APP1", "chargingProfile": prof})
    assert a[2] == {"status": "Accepted"}, a
    b.v.plug()
    b.run(3000)
    assert b.of("StartTransaction")[0]["idTag"] == "APP1"
    assert b.st.charger.limit_da == 80 and b.st.charger.offered_da == 80


def test_tag_again_stops_local_and_an_invalid_id_deauthorizes():
    b = Bench(settings={"auth_required": True, "local_auth_ids": ["04A1B2"]})
    b.run(300)
    b.v.plug()
    b.run(200)
    b.st.charger.present_tag(b.v.now, "04A1B2")
    b.run(3000)
    assert b.of("StartTransaction")[0]["idTag"] == "04A1B2" and b.st.charger.contactor
    b.st.charger.present_tag(b.v.now, "04A1B2")  # the same tag again ends its transaction
    b.run(8000)
    stop = b.of("StopTransaction")
    assert stop and stop[0]["reason"] == "Local" and stop[0]["idTag"] == "04A1B2", stop
    # the central system refuses the id in its StartTransaction answer: StopTransactionOnInvalidId
    b.v.unplug()
    b.run(300)
    b.start_status = "Invalid"
    b.v.plug()
    b.run(200)
    b.st.charger.present_tag(b.v.now, "04A1B2")
    b.run(8000)
    stop = b.of("StopTransaction")
    assert len(stop) == 2 and stop[1]["reason"] == "DeAuthorized", stop
    assert not b.st.charger.contactor


def test_availability_is_scheduled_during_a_transaction():
    b = Bench()
    b.run(300)
    b.v.plug()
    b.run(3000)
    a = b.server_call("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})
    assert a[2] == {"status": "Scheduled"} and b.st.settings["enabled"] is True
    b.v.unplug()
    b.run(500)
    assert b.st.settings["enabled"] is False and b.of("StopTransaction")
    b.v.plug()
    b.run(2000)
    assert len(b.of("StartTransaction")) == 1  # unavailable: no new transaction
    assert b.server_call("ChangeAvailability", {"connectorId": 0, "type": "Operative"})[2] == {"status": "Accepted"}
    b.run(2000)
    assert len(b.of("StartTransaction")) == 2


def test_clock_aligned_meter_values():
    b = Bench()
    b.run(300)
    assert b.server_call("ChangeConfiguration", {"key": "ClockAlignedDataInterval", "value": "2"})[2] == \
        {"status": "Accepted"}
    b.run(5000)
    mv = b.of("MeterValues")
    assert len(mv) >= 2, mv
    sv = mv[-1]["meterValue"][0]["sampledValue"]
    assert sv[0]["context"] == "Sample.Clock" and sv[0]["measurand"] == "Energy.Active.Import.Register", sv
    assert "transactionId" not in mv[-1]


def test_transaction_message_attempts():
    b = Bench()
    b.run(300)
    assert b.server_call("ChangeConfiguration", {"key": "TransactionMessageRetryInterval", "value": "1"})[2] == \
        {"status": "Accepted"}
    b.refuse = {"StartTransaction": 1, "StopTransaction": 5}
    b.v.plug()
    b.run(3000)
    starts = b.of("StartTransaction")
    assert len(starts) == 2, starts  # refused once, retried after TransactionMessageRetryInterval
    b.v.unplug()
    b.run(6000)
    stops = b.of("StopTransaction")
    assert len(stops) == 3, stops  # TransactionMessageAttempts (3), then given up
    assert b.st.pending_sessions(8) == []
