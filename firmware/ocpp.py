# The OCPP 1.6J backend: the charger (one connector, connectorId 1) towards any central system.
# It holds a Station (firmware/station.py) and a WebSocket link (firmware/ws.py), exactly like the
# MQTT backend (firmware/cloud.py), and runs in the app's slow work; it never touches a socket.
#
# What goes out, one CALL at a time (firmware/ocpp_rpc.py), in this priority:
#   BootNotification (until Accepted, retried at the server's interval), triggered messages,
#   StatusNotification (connector 0 and 1, on every change), the transaction messages of the oldest
#   session first (StartTransaction, StopTransaction), Authorize, MeterValues, Heartbeat.
# Transactions are never lost: a session is on flash before it is reported (firmware/sessions.py),
# its record stays there until the StopTransaction is answered, and the transactionId the server
# gave is kept in ocpp_tx.json; so after any outage or power cut the Start and Stop of every
# session go out in order (a power cut closes the session as power_loss -> reason PowerLoss, with
# the energy of the last checkpoint). docs/ocpp.md has the mapping and what is not supported.
from firmware import ocpp_rpc as R
from firmware.ocpp_journal import MeterJournal
from firmware.ocpp_rpc import CallError, Rpc
from firmware.ocpp_smart import TX, Profiles, check_profile, format_time, parse_time
from firmware.ticks import ticks_add, ticks_diff, ticks_ms

CONNECTOR = 1
VENDOR = "OpenEVSE-MP"
MODEL = "Mode3-ESP32"
TX_FILE = "ocpp_tx.json"
LIST_FILE = "ocpp_list.json"  # the Local Authorization List: {"v": version, "ids": {idTag: status}}
LIST_MAX = 100
CONF_FILE = "ocpp_conf.json"
ENERGY_STEP_WH = 10  # contract: the register persisted (and so reported) at least every 10 Wh
STATUS_SETTLE_MS = 1000
FREE_ID = "FREE"  # idTag of a transaction that needed no authorization (StartTransaction needs one)

MEASURANDS = ("Energy.Active.Import.Register", "Power.Active.Import", "Current.Import", "Voltage",
              "Current.Offered", "Temperature", "Power.Offered", "SoC", "Energy.Active.Import.Interval",
              "Current.Export", "Energy.Active.Export.Register", "Frequency", "Power.Factor",
              "RPM", "Power.Active.Export", "Power.Reactive.Import", "Energy.Reactive.Import.Register",
              "Energy.Reactive.Export.Register", "Energy.Active.Export.Interval", "Energy.Reactive.Import.Interval",
              "Energy.Reactive.Export.Interval", "Power.Reactive.Export")  # the 22 of 1.6's Measurand
DEFAULT_SAMPLED = ("Energy.Active.Import.Register,Power.Active.Import,Current.Import,Voltage,"
                   "Current.Offered,Temperature")

# key: (type, default, read-only). type: "int", "bool", "csv" (measurands), "str"
CONFIG = {
    "AllowOfflineTxForUnknownId": ("bool", False, False),
    "AuthorizationCacheEnabled": ("bool", False, True),
    "AuthorizeRemoteTxRequests": ("bool", False, False),
    "ChargeProfileMaxStackLevel": ("int", 8, True),
    "ChargingScheduleAllowedChargingRateUnit": ("str", "Current,Power", True),
    "ChargingScheduleMaxPeriods": ("int", 24, True),
    "ClockAlignedDataInterval": ("int", 0, False),
    "ConnectionTimeOut": ("int", 60, False),
    "ConnectorPhaseRotation": ("str", "1.RST", True),
    "GetConfigurationMaxKeys": ("int", 50, True),
    "HeartbeatInterval": ("int", 300, False),
    "LocalAuthListEnabled": ("bool", True, False),
    "LocalAuthListMaxLength": ("int", 100, True),
    "LocalAuthorizeOffline": ("bool", True, False),
    "LocalPreAuthorize": ("bool", False, False),
    "MaxChargingProfilesInstalled": ("int", 8, True),
    "MeterValueSampleInterval": ("int", 10, False),
    "MeterValuesAlignedData": ("csv", "Energy.Active.Import.Register", False),
    "MeterValuesAlignedDataMaxLength": ("int", 8, True),
    "MeterValuesSampledData": ("csv", DEFAULT_SAMPLED, False),
    "MeterValuesSampledDataMaxLength": ("int", 8, True),
    "NumberOfConnectors": ("int", 1, True),
    "ResetRetries": ("int", 1, False),
    "StopTransactionOnEVSideDisconnect": ("bool", True, True),
    "StopTransactionOnInvalidId": ("bool", True, False),
    "StopTxnAlignedData": ("csv", "", False),
    "StopTxnSampledData": ("csv", "Energy.Active.Import.Register", False),
    "SendLocalListMaxLength": ("int", 100, True),
    "SupportedFeatureProfiles": ("str", "Core,SmartCharging,RemoteTrigger,LocalAuthListManagement", True),
    "TransactionMessageAttempts": ("int", 3, False),
    "TransactionMessageRetryInterval": ("int", 60, False),
    "UnlockConnectorOnEVSideDisconnect": ("bool", True, True),
    "WebSocketPingInterval": ("int", 30, False),
}

# the CALLs a central system may send that have a handler (Ocpp._h_<action>)
ACTIONS = ("GetConfiguration", "ChangeConfiguration", "RemoteStartTransaction", "RemoteStopTransaction", "Reset",
           "ChangeAvailability", "SetChargingProfile", "ClearChargingProfile", "GetCompositeSchedule",
           "TriggerMessage", "GetLocalListVersion", "SendLocalList", "UpdateFirmware", "UnlockConnector",
           "ClearCache", "DataTransfer")

# contract stop_reason -> StopTransaction reason
REASONS = {"ev_unplugged": "EVDisconnected", "cmd_stop": "Local", "deauthorized": "DeAuthorized",
           "fault": "EmergencyStop", "power_loss": "PowerLoss", "restart": "Reboot"}

# contract fault name -> StatusNotification errorCode
ERROR_CODES = {"rcd_ac": "GroundFailure", "rcd_dc": "GroundFailure", "rcd_selftest": "GroundFailure",
               "overcurrent": "OverCurrentFailure", "overtemp": "HighTemperature",
               "contactor_welded": "PowerSwitchFailure", "contactor_stuck_open": "PowerSwitchFailure",
               "meter": "PowerMeterFailure", "diode": "EVCommunicationError",
               "cp_short": "EVCommunicationError", "cp_invalid": "EVCommunicationError",
               "vent_required": "EVCommunicationError", "pp_invalid": "ConnectorLockFailure"}

TRIGGERS = ("BootNotification", "Heartbeat", "MeterValues", "StatusNotification",
            "DiagnosticsStatusNotification", "FirmwareStatusNotification")


def id_tag(auth_id):
    """The contract's auth id -> an OCPP idTag (CiString20)."""
    if auth_id is None:
        return FREE_ID
    if auth_id.startswith("tag:"):
        auth_id = auth_id[4:]
    return auth_id[:20]


def connector_status(st):
    """(connector 1 status, errorCode, vendorErrorCode) from the station's status snapshot."""
    faults = st.get("faults") or []
    if faults:
        f = faults[0]
        return "Faulted", ERROR_CODES.get(f, "OtherError"), f
    mode = st.get("mode")
    sess = st.get("session")
    if mode == "disabled":
        return "Unavailable", "NoError", None
    if mode == "fault":
        return "Faulted", "OtherError", None
    if mode == "disconnected":
        return "Available", "NoError", None
    if mode == "connected_charging":
        return "Charging", "NoError", None
    offered = (st.get("offered_a") or 0) > 0
    if sess is None:
        return ("Finishing" if mode == "connected_finished" else "Preparing"), "NoError", None
    return ("SuspendedEV" if offered else "SuspendedEVSE"), "NoError", None


def _bool_str(v):
    return "true" if v else "false"


class Ocpp:
    def __init__(self, station, link, log=None):
        self.station = station
        self.link = link
        self.store = station.store
        self.log = log
        self.rpc = Rpc(link.send, self._handle, "%d-" % station.boot, log=log)
        self.conf = self._load_conf()
        self.profiles = Profiles(self.store)
        tx = self.store.read_json(TX_FILE, None)
        self.tx = tx if isinstance(tx, dict) else {}  # session id -> {"id": transactionId, "reason": ..}
        lst = self.store.read_json(LIST_FILE, None)
        ok = isinstance(lst, dict) and isinstance(lst.get("ids"), dict) and isinstance(lst.get("v"), int)
        self.auth_list = lst if ok else {"v": 0, "ids": {}}
        self._seen_connect = 0
        self.accepted = False
        self._boot_at = None  # next BootNotification (ticks), None = now
        self._hb_at = None
        self._status_sent = [None, None]  # [connector 0, connector 1] last (status, error) reported
        self._status_v = None
        self._settle = [None, None]  # per connector: (status, errorCode) waiting to hold STATUS_SETTLE_MS
        self._settle_at = [0, 0]
        self._remote_profile = None  # a RemoteStartTransaction's chargingProfile, for its transaction
        self._triggers = []
        self._auth_q = []  # idTags waiting for an Authorize
        self._mv_at = None
        self._aligned_at = None
        self._meter_q = []  # MeterValues CALL payloads waiting (RAM, bounded): online, not transactional
        self.journal = MeterJournal(self.store, station.boot)  # transaction samples taken offline
        self._pending = None  # closed session records not yet stopped on the server (oldest first)
        self._attempts = {}  # session id -> failed attempts of its current message
        self._retry_at = None
        self._reset = None  # "Soft" | "Hard" once a Reset was accepted
        self._reset_at = None
        self._avail = None  # ChangeAvailability scheduled for after the transaction
        self._cap = -1  # last cap given to the station
        self._cap_at = None
        self.fw = None  # firmware/ocpp_firmware.py, from start() when an update key is provisioned
        self.stats = {"boots": 0, "tx_started": 0, "tx_stopped": 0, "meter_values": 0}
        link.set_ping_interval(self.conf["WebSocketPingInterval"])

    # ---- configuration --------------------------------------------------------------------------------
    def _load_conf(self):
        stored = self.store.read_json(CONF_FILE, None)
        conf = {}
        for k in CONFIG:
            conf[k] = CONFIG[k][1]
        if isinstance(stored, dict):
            for k in stored:
                if k in CONFIG and not CONFIG[k][2] and isinstance(stored[k], type(CONFIG[k][1])):
                    conf[k] = stored[k]
        return conf

    def _save_conf(self):
        d = {}
        for k in CONFIG:
            if not CONFIG[k][2] and self.conf[k] != CONFIG[k][1]:
                d[k] = self.conf[k]
        self.store.write_json(CONF_FILE, d)

    def _conf_value(self, k):
        v = self.conf[k]
        t = CONFIG[k][0]
        if t == "bool":
            return _bool_str(v)
        if k == "SupportedFeatureProfiles" and self.fw is not None:
            return v + ",FirmwareManagement"
        return str(v)

    def _set_conf(self, k, v):
        """ChangeConfiguration: 'Accepted' | 'Rejected' | 'NotSupported' (| 'RebootRequired')."""
        if k not in CONFIG:
            return "NotSupported"
        t, _, ro = CONFIG[k]
        if ro:
            return "Rejected"
        if t == "int":
            try:
                n = int(v)
            except ValueError:
                return "Rejected"
            if n < 0 or n > 86400 or str(n) != v.strip():
                return "Rejected"
            val = n
        elif t == "bool":
            lv = v.strip().lower()
            if lv not in ("true", "false"):
                return "Rejected"
            val = lv == "true"
        elif t == "csv":
            items = [x.strip() for x in v.split(",") if x.strip()]
            if len(items) > 8:
                return "Rejected"
            for x in items:
                if x not in MEASURANDS:
                    return "Rejected"
            val = ",".join(items)
        else:
            val = v
        self.conf[k] = val
        self._save_conf()
        if k == "WebSocketPingInterval":
            self.link.set_ping_interval(val)
        elif k == "HeartbeatInterval":
            self._hb_at = None
        elif k == "MeterValueSampleInterval":
            self._mv_at = None
        return "Accepted"

    # ---- lifecycle --------------------------------------------------------------------------------------
    def start(self, now):
        self._refresh_pending()
        live = [rec["id"] for rec in self._pending]
        cur = self.station.open_session()
        if cur is not None:
            live.append(cur["id"])
        for name in list(self.journal.names):  # samples of sessions already stopped on the server
            if self.journal._sid.get(name) not in live:
                self.journal.remove(name)
        self._apply_cap(now)
        if self.station.updater is not None:  # provisioned (firmware/trust.py) after the app was built
            from firmware.ocpp_firmware import FirmwareManagement

            self.fw = FirmwareManagement(self.station, self.station.updater)
        self.link.start()

    def service(self, now):
        link = self.link
        for _ in range(8):
            m = link.get()
            if m is None:
                break
            self.rpc.on_message(m, now)
        cc = link.connect_count
        if cc != self._seen_connect:
            self._seen_connect = cc
            self.rpc.reset()
            self.accepted = False
            self._boot_at = None
            self._status_sent = [None, None]
        if not link.connected:
            self.rpc.reset()
        self.rpc.tick(now)
        self._keep_energy(now)
        if self._cap_at is None or ticks_diff(now, self._cap_at) >= 1000:
            self._apply_cap(now)
        self._sample(now)
        self._finish_reset(now)
        if self.fw is not None:
            self.fw.service(now)
        if link.connected and not self.rpc.busy:
            self._next_call(now)

    def _say(self, *a):
        if self.log:
            try:
                self.log(" ".join(str(x) for x in a))
            except Exception:  # noqa: BLE001
                pass

    # ---- backend interface: what the station hands out ---------------------------------------------------
    def emit_event(self, etype, fields=None, now_ms=None):
        if now_ms is None:  # Station.drain_events hands events over without the time
            now_ms = ticks_ms()
        if etype == "auth" and fields:
            aid = fields.get("auth_id")
            res = fields.get("result")
            if aid and aid.startswith("tag:") and (res == "denied" or res == "granted"):
                self._on_tag(aid, res == "granted", now_ms)
        elif etype == "session_ended":
            self.profiles.end_transaction()
            if self._avail is not None:
                self._apply_availability(self._avail)
                self._avail = None

    def send_session(self, rec, now_ms=None):
        self._refresh_pending()

    def _refresh_pending(self):
        self._pending = self.station.pending_sessions(8)

    # ---- helpers ------------------------------------------------------------------------------------------
    def _now_s(self, now):
        t = self.station.ts(now)
        return t

    def _time(self, now, t=None):
        if t is None:
            t = self._now_s(now)
        return format_time(t if t is not None else 0)

    def _tx_save(self):
        self.store.write_json(TX_FILE, self.tx)

    def _current_tx(self):
        """(session record, transactionId or None) of the running transaction, or (None, None)."""
        cur = self.station.open_session()
        if cur is None:
            return None, None
        e = self.tx.get(cur["id"])
        return cur, (e.get("id") if e else None)

    def _override(self, sid, reason):
        e = self.tx.get(sid) or {"id": None}
        e["reason"] = reason
        self.tx[sid] = e
        self._tx_save()

    def _keep_energy(self, now):
        st = self.station
        if st.open_session() is not None and st.live_energy_wh() - st.energy_wh_persisted >= ENERGY_STEP_WH:
            st.checkpoint(now)

    def _volts_phases(self, s):
        v = s.get("v_v")
        n = s.get("phases") or 3
        if v:
            vals = [x for x in v[:n] if x]
            if vals:
                return sum(vals) / len(vals), n
        return 230.0, n

    def _apply_cap(self, now):
        self._cap_at = now
        t = self._now_s(now)
        if t is None:
            return
        cur, txid = self._current_tx()
        tx_start = cur.get("ts_start") if cur else None
        s = self.station.status(now)
        volts, n = self._volts_phases(s)
        lim = self.profiles.limit_a(t, tx_start, cur is not None, volts, n)
        if lim != self._cap:
            self._cap = lim
            self.station.set_offer_limit(lim)

    # ---- outbound CALLs -------------------------------------------------------------------------------------
    def _call(self, action, payload, cb, now):
        self.rpc.call(action, payload, cb, now)

    def _next_call(self, now):
        if not self.accepted:
            if self._boot_at is None or ticks_diff(now, self._boot_at) >= 0:
                self._send_boot(now)
            return
        if self._triggers:
            what = self._triggers.pop(0)
            if self._send_trigger(what, now):
                return
        if self.fw is not None and self.fw.queue:
            self._call("FirmwareStatusNotification", {"status": self.fw.queue.pop(0)}, self._ignore, now)
            return
        if self._send_status(now):
            return
        if self._send_tx(now):
            return
        if self._auth_q:
            tag = self._auth_q.pop(0)
            self._call("Authorize", {"idTag": tag}, lambda r, e: self._on_authorized(tag, r, e), now)
            return
        if self._meter_q:
            payload = self._meter_q.pop(0)
            self._call("MeterValues", payload, self._ignore, now)
            self.stats["meter_values"] += 1
            return
        if self._hb_at is None or ticks_diff(now, self._hb_at) >= 0:
            self._send_heartbeat(now)

    def _ignore(self, result, error):
        pass

    def _send_boot(self, now):
        st = self.station
        p = {"chargePointVendor": VENDOR, "chargePointModel": MODEL,
             "chargePointSerialNumber": st.serial[:25], "firmwareVersion": st.fw}
        self.stats["boots"] += 1
        self._call("BootNotification", p, lambda r, e: self._on_boot(r, e, now), now)

    def _on_boot(self, r, e, now):
        if e is not None:
            self._boot_at = ticks_add(now, 30000 if e[0] != R.DISCONNECTED else 1000)
            return
        self._clock(r.get("currentTime"), now)
        iv = r.get("interval")
        iv = iv if isinstance(iv, int) and iv > 0 else 0
        if r.get("status") == "Accepted":
            self.accepted = True
            if iv:
                self.conf["HeartbeatInterval"] = iv
            self._hb_at = ticks_add(now, self.conf["HeartbeatInterval"] * 1000)
            self._status_sent = [None, None]
            self._refresh_pending()
            self._apply_cap(now)
        else:  # Pending / Rejected: try again at the server's interval
            self._boot_at = ticks_add(now, (iv or 60) * 1000)

    def _clock(self, s, now):
        if isinstance(s, str):
            try:
                self.station.set_clock(parse_time(s), now)
            except ValueError:
                pass

    def _send_heartbeat(self, now):
        self._hb_at = ticks_add(now, max(self.conf["HeartbeatInterval"], 1) * 1000)
        self._call("Heartbeat", {}, lambda r, e: self._clock(r.get("currentTime"), now) if r else None, now)

    def _statuses(self, now):
        s = self.station.status(now)
        c1 = connector_status(s)
        c0 = ("Unavailable" if s.get("mode") == "disabled" else
              ("Faulted" if c1[0] == "Faulted" else "Available"), c1[1] if c1[0] == "Faulted" else "NoError", c1[2])
        return c0, c1

    def _send_status(self, now, force=False):
        v = self.station.status_version()
        settle = self._settle
        if not force and v == self._status_v and settle[0] is None and settle[1] is None \
                and self._status_sent[0] is not None and self._status_sent[1] is not None:
            return False  # nothing reported changed: no status snapshot to build
        c0, c1 = self._statuses(now)
        waiting = False
        for conn, cur in ((0, c0), (1, c1)):
            key = (cur[0], cur[1])
            if not force and self._status_sent[conn] == key:
                settle[conn] = None
                continue
            if not force and cur[0] != "Faulted" and self._status_sent[conn] is not None:
                # a status must hold STATUS_SETTLE_MS before it is reported: an unplug passes
                # through states of a few ticks that would only be noise to the central system
                if settle[conn] != key:
                    settle[conn] = key
                    self._settle_at[conn] = now
                    waiting = True
                    continue
                if ticks_diff(now, self._settle_at[conn]) < STATUS_SETTLE_MS:
                    waiting = True
                    continue
            settle[conn] = None
            self._status_sent[conn] = key
            p = {"connectorId": conn, "status": cur[0], "errorCode": cur[1], "timestamp": self._time(now)}
            if cur[2]:
                p["vendorErrorCode"] = cur[2][:50]
            self._call("StatusNotification", p, self._ignore, now)
            return True
        if not waiting:
            self._status_v = v  # both connectors reported as they are now
        return False

    def _send_trigger(self, what, now):
        if what == "BootNotification":
            self._send_boot(now)
        elif what == "Heartbeat":
            self._send_heartbeat(now)
        elif what == "StatusNotification":
            self._status_sent = [None, None]
            return self._send_status(now)
        elif what == "MeterValues":
            self._call("MeterValues", self._meter_payload(now, "Trigger", self.conf["MeterValuesSampledData"]),
                       self._ignore, now)
        elif what == "DiagnosticsStatusNotification":
            self._call("DiagnosticsStatusNotification", {"status": "Idle"}, self._ignore, now)
        elif what == "FirmwareStatusNotification":
            st = self.fw.current() if self.fw is not None else "Idle"
            self._call("FirmwareStatusNotification", {"status": st}, self._ignore, now)
        else:
            return False
        return True

    # ---- transactions ----------------------------------------------------------------------------------------
    def _send_tx(self, now):
        if self._retry_at is not None and ticks_diff(now, self._retry_at) < 0:
            return False
        self._retry_at = None
        if self._pending is None:
            self._refresh_pending()
        for rec in self._pending:
            e = self.tx.get(rec["id"])
            if e is None or e.get("id") is None:
                self._start_tx(rec, now)
            elif not self._send_journal(rec["id"], e["id"], now):
                self._stop_tx(rec, e, now)
            return True
        cur = self.station.open_session()
        if cur is not None:
            e = self.tx.get(cur["id"])
            if e is None or e.get("id") is None:
                self._start_tx(cur, now)
                return True
            return self._send_journal(cur["id"], e["id"], now)
        return False

    def _send_journal(self, sid, txid, now):
        """The oldest offline sample of this transaction, after its Start and before its Stop."""
        if not len(self.journal):
            return False
        f = self.journal.first(sid)
        if f is None:
            return False
        name, p = f
        if not isinstance(p, dict):
            self.journal.remove(name)
            return False
        if txid >= 0:
            p["transactionId"] = txid
        self._call("MeterValues", p, lambda r, e: self._journal_done(name, e), now)
        self.stats["meter_values"] += 1
        return True

    def _journal_done(self, name, e):
        if e is None or e[0] not in (R.TIMEOUT, R.DISCONNECTED):
            self.journal.remove(name)  # answered (a CALLERROR for a sample is not retried)

    def _start_tx(self, rec, now):
        sid = rec["id"]
        p = {"connectorId": CONNECTOR, "idTag": id_tag(rec.get("auth_id")),
             "meterStart": int(rec.get("meter_start_wh") or 0), "timestamp": self._time(now, rec.get("ts_start"))}
        self._call("StartTransaction", p, lambda r, e: self._on_started(sid, r, e, now), now)

    def _on_started(self, sid, r, e, now):
        if e is not None:
            self._tx_failed(sid, e, now)
            if self._attempts.get(sid, 0) >= self.conf["TransactionMessageAttempts"] and e[0] not in \
                    (R.TIMEOUT, R.DISCONNECTED):
                # the server will not take it: carry on with a local id so that the Stop still goes out
                self._set_txid(sid, -1)
            return
        txid = r.get("transactionId")
        if not isinstance(txid, int) or isinstance(txid, bool):
            txid = -1
        self._attempts.pop(sid, None)
        self._set_txid(sid, txid)
        self.stats["tx_started"] += 1
        info = r.get("idTagInfo") or {}
        cur = self.station.open_session()
        prof = self._remote_profile
        if prof is not None and cur is not None and cur["id"] == sid:
            self._remote_profile = None
            prof["transactionId"] = txid
            if self.profiles.set(CONNECTOR, prof, txid) == "Accepted":
                self._apply_cap(now)
        if info.get("status", "Accepted") != "Accepted" and cur is not None and cur["id"] == sid \
                and cur.get("auth_id") is not None and self.conf["StopTransactionOnInvalidId"]:
            self._override(sid, "DeAuthorized")
            self.station.deauthorize(now)

    def _set_txid(self, sid, txid):
        e = self.tx.get(sid) or {}
        e["id"] = txid
        self.tx[sid] = e
        self._tx_save()

    def _tx_failed(self, sid, e, now):
        if e[0] in (R.TIMEOUT, R.DISCONNECTED):
            return  # not the server's refusal: retried as soon as the link is back
        self._attempts[sid] = self._attempts.get(sid, 0) + 1
        self._retry_at = ticks_add(now, self.conf["TransactionMessageRetryInterval"] * 1000)

    def _stop_tx(self, rec, e, now):
        sid = rec["id"]
        reason = e.get("reason") or REASONS.get(rec.get("stop_reason"), "Other")
        meter = int(rec.get("meter_end_wh") or 0)
        t = rec.get("ts_end")
        p = {"transactionId": e["id"], "meterStop": meter, "timestamp": self._time(now, t), "reason": reason}
        if rec.get("auth_id") is not None:
            p["idTag"] = id_tag(rec.get("auth_id"))
        data = self.conf["StopTxnSampledData"]
        if data:
            p["transactionData"] = [
                {"timestamp": self._time(now, rec.get("ts_start")),
                 "sampledValue": [self._sv(rec.get("meter_start_wh") or 0, "Transaction.Begin",
                                           "Energy.Active.Import.Register", "Wh")]},
                {"timestamp": self._time(now, t),
                 "sampledValue": [self._sv(meter, "Transaction.End", "Energy.Active.Import.Register", "Wh")]},
            ]
        self._call("StopTransaction", p, lambda r, err: self._on_stopped(sid, r, err, now), now)

    def _on_stopped(self, sid, r, e, now):
        if e is not None:
            self._tx_failed(sid, e, now)
            if self._attempts.get(sid, 0) < self.conf["TransactionMessageAttempts"] or e[0] in \
                    (R.TIMEOUT, R.DISCONNECTED):
                return
            self._say("ocpp: StopTransaction of", sid, "refused", self.conf["TransactionMessageAttempts"],
                      "times:", e[0], "- dropped")  # the session record is the billing record still
        self._attempts.pop(sid, None)
        self.tx.pop(sid, None)
        self._tx_save()
        self.journal.drop_session(sid)
        self.station.ack_session(sid)
        self._refresh_pending()
        self.stats["tx_stopped"] += 1

    # ---- meter values -----------------------------------------------------------------------------------------
    def _sv(self, value, context, measurand, unit, phase=None):
        d = {"value": str(value), "context": context, "measurand": measurand, "unit": unit, "location": "Outlet"}
        if phase:
            d["phase"] = phase
        return d

    def _meter_payload(self, now, context, measurands):
        s = self.station.status(now)
        ctx = "Sample." + context if context in ("Periodic", "Clock") else context
        out = []
        want = measurands.split(",") if measurands else []
        n = s.get("phases") or 3
        for m in want:
            if m == "Energy.Active.Import.Register":
                out.append(self._sv(int(s.get("e_wh") or 0), ctx, m, "Wh"))
            elif m == "Power.Active.Import" and s.get("p_w") is not None:
                out.append(self._sv(int(s["p_w"]), ctx, m, "W"))
            elif m == "Current.Import" and s.get("i_a"):
                for i in range(n):
                    out.append(self._sv(s["i_a"][i], ctx, m, "A", "L%d" % (i + 1)))
            elif m == "Voltage" and s.get("v_v"):
                for i in range(n):
                    out.append(self._sv(s["v_v"][i], ctx, m, "V", "L%d" % (i + 1)))
            elif m == "Current.Offered":
                out.append(self._sv(s.get("offered_a") or 0, ctx, m, "A"))
            elif m == "Power.Offered":
                volts, k = self._volts_phases(s)
                out.append(self._sv(int((s.get("offered_a") or 0) * volts * k), ctx, m, "W"))
            elif m == "Temperature" and s.get("temp_c") is not None:
                out.append(self._sv(s["temp_c"], ctx, m, "Celsius"))
        p = {"connectorId": CONNECTOR, "meterValue": [{"timestamp": self._time(now), "sampledValue": out}]}
        cur, txid = self._current_tx()
        if txid is not None and txid >= 0:
            p["transactionId"] = txid
        return p

    def _queue_meter(self, payload):
        self._meter_q.append(payload)
        if len(self._meter_q) > 10:
            self._meter_q.pop(0)  # a burst while offline: the oldest samples go (the register is monotonic)

    def _sample(self, now):
        cur, txid = self._current_tx()
        iv = self.conf["MeterValueSampleInterval"]
        if cur is not None and iv > 0:
            if self._mv_at is None:
                self._mv_at = ticks_add(now, iv * 1000)
            elif ticks_diff(now, self._mv_at) >= 0:
                self._mv_at = ticks_add(now, iv * 1000)
                p = self._meter_payload(now, "Periodic", self.conf["MeterValuesSampledData"])
                if self.link.connected and self.accepted and txid is not None:
                    self._queue_meter(p)
                else:  # the central system cannot take it now: on flash, delivered in order later
                    p.pop("transactionId", None)
                    self.journal.add(cur["id"], p)
        else:
            self._mv_at = None
        aiv = self.conf["ClockAlignedDataInterval"]
        t = self._now_s(now)
        if aiv > 0 and t is not None:
            slot = t // aiv
            if self._aligned_at is None:
                self._aligned_at = slot
            elif slot != self._aligned_at:
                self._aligned_at = slot
                self._queue_meter(self._meter_payload(now, "Clock", self.conf["MeterValuesAlignedData"]))

    # ---- authorization --------------------------------------------------------------------------------------
    def _on_tag(self, aid, granted, now):
        """A tag was presented: the core granted it (local_auth_ids) or refused it."""
        st = self.station
        cur = st.open_session()
        if cur is not None and cur.get("auth_id") == aid:
            # the same tag again ends its own transaction (Local); the core's new grant goes with it
            self._override(cur["id"], "Local")
            st.deauthorize(now)
            return
        if granted or not st.settings.get("auth_required"):
            return
        tag = id_tag(aid)
        online = self.link.connected and self.accepted
        listed = self.conf["LocalAuthListEnabled"] and self.auth_list["ids"].get(tag) == "Accepted"
        if listed and ((online and self.conf["LocalPreAuthorize"]) or
                       (not online and self.conf["LocalAuthorizeOffline"])):
            st.authorize(now, aid)  # the Local Authorization List answers at once (3.5)
        elif online:
            if tag not in self._auth_q:
                self._auth_q.append(tag)
        elif self.conf["AllowOfflineTxForUnknownId"]:
            st.authorize(now, aid)

    def _on_authorized(self, tag, r, e):
        if r is None:
            return
        if (r.get("idTagInfo") or {}).get("status") == "Accepted":
            self.station.authorize(ticks_ms(), "tag:" + tag)

    # ---- reset and availability -----------------------------------------------------------------------------
    def _finish_reset(self, now):
        if self._reset is None:
            return
        cur = self.station.open_session()
        waited = ticks_diff(now, self._reset_at)
        # the transaction first: its StopTransaction goes out before the restart when the link is up
        if cur is None and (not self._pending or not self.link.connected or waited >= 10000):
            kind = self._reset
            self._reset = None
            self.station.restart("ocpp-reset-" + kind.lower())

    def _apply_availability(self, typ):
        self.station.apply_settings({"enabled": typ == "Operative"})

    # ---- inbound CALLs --------------------------------------------------------------------------------------
    def _handle(self, action, p, now):
        # only a known name reaches getattr: on MicroPython getattr interns its name for good (a
        # server's made-up actions would fill the qstr pool) and fails on names over 255 bytes
        h = getattr(self, "_h_" + action, None) if action in ACTIONS else None
        if h is None:
            if action in ("GetDiagnostics", "ReserveNow", "CancelReservation"):
                raise CallError(R.NOT_SUPPORTED, action + " is not supported")
            raise CallError(R.NOT_IMPLEMENTED, "unknown action " + action[:40])
        return h(p, now)

    @staticmethod
    def _get(p, key, typ, required=True):
        if key not in p:
            if required:
                raise CallError(R.OCCURENCE, key + " is required")
            return None
        v = p[key]
        ok = isinstance(v, typ) and not (typ is int and isinstance(v, bool))
        if not ok:
            raise CallError(R.TYPE, key + " has the wrong type")
        return v

    def _h_GetConfiguration(self, p, now):
        keys = self._get(p, "key", list, False)
        known = []
        unknown = []
        for k in (keys if keys else list(CONFIG)):
            if not isinstance(k, str):
                raise CallError(R.TYPE, "key must hold strings")
            if k in CONFIG:
                known.append({"key": k, "readonly": CONFIG[k][2], "value": self._conf_value(k)})
            else:
                unknown.append(k[:50])
        out = {"configurationKey": known}
        if unknown:
            out["unknownKey"] = unknown
        return out

    def _h_ChangeConfiguration(self, p, now):
        k = self._get(p, "key", str)
        v = self._get(p, "value", str)
        return {"status": self._set_conf(k, v)}

    def _h_RemoteStartTransaction(self, p, now):
        tag = self._get(p, "idTag", str)
        c = self._get(p, "connectorId", int, False)
        if (c is not None and c != CONNECTOR) or not tag or len(tag) > 20:
            return {"status": "Rejected"}
        st = self.station
        if st.open_session() is not None or not st.settings.get("enabled", True):
            return {"status": "Rejected"}
        prof = p.get("chargingProfile")
        if prof is not None:
            if not isinstance(prof, dict) or prof.get("chargingProfilePurpose") != TX:
                return {"status": "Rejected"}
            check_profile(prof)
        if st.authorize(now, tag) is not None:
            return {"status": "Rejected"}
        self._remote_profile = prof  # installed as the TxProfile once the transaction has its id
        return {"status": "Accepted"}

    def _h_RemoteStopTransaction(self, p, now):
        txid = self._get(p, "transactionId", int)
        cur, cur_tx = self._current_tx()
        if cur is None or cur_tx != txid:
            return {"status": "Rejected"}
        self._override(cur["id"], "Remote")
        self.station.deauthorize(now)
        return {"status": "Accepted"}

    def _h_Reset(self, p, now):
        typ = self._get(p, "type", str)
        if typ not in ("Soft", "Hard"):
            raise CallError(R.PROPERTY, "type must be Soft or Hard")
        if self._reset is not None:
            return {"status": "Accepted"}
        cur = self.station.open_session()
        if cur is not None:
            self._override(cur["id"], typ + "Reset")
            self.station.deauthorize(now)
        self._reset = typ
        self._reset_at = now
        return {"status": "Accepted"}

    def _h_ChangeAvailability(self, p, now):
        c = self._get(p, "connectorId", int)
        typ = self._get(p, "type", str)
        if typ not in ("Operative", "Inoperative"):
            raise CallError(R.PROPERTY, "type must be Operative or Inoperative")
        if c not in (0, CONNECTOR):
            return {"status": "Rejected"}
        if self.station.open_session() is not None and typ == "Inoperative":
            self._avail = typ
            return {"status": "Scheduled"}
        self._avail = None
        self._apply_availability(typ)
        return {"status": "Accepted"}

    def _h_SetChargingProfile(self, p, now):
        c = self._get(p, "connectorId", int)
        prof = self._get(p, "csChargingProfiles", dict)
        cur, txid = self._current_tx()
        res = self.profiles.set(c, prof, txid if cur is not None and txid is not None else None)
        if res == "Accepted":
            self._apply_cap(now)
        return {"status": res}

    def _h_ClearChargingProfile(self, p, now):
        pid = self._get(p, "id", int, False)
        c = self._get(p, "connectorId", int, False)
        purpose = self._get(p, "chargingProfilePurpose", str, False)
        level = self._get(p, "stackLevel", int, False)
        res = self.profiles.clear(pid, c, purpose, level)
        self._apply_cap(now)
        return {"status": res}

    def _h_GetCompositeSchedule(self, p, now):
        c = self._get(p, "connectorId", int)
        dur = self._get(p, "duration", int)
        unit = self._get(p, "chargingRateUnit", str, False) or "A"
        t = self._now_s(now)
        if c not in (0, CONNECTOR) or dur < 0 or unit not in ("A", "W") or t is None:
            return {"status": "Rejected"}
        cur, _ = self._current_tx()
        s = self.station.status(now)
        volts, n = self._volts_phases(s)
        cap = min(float(self.station.settings.get("max_current_a", 16)), float(self.station.hw_max_a))
        periods = self.profiles.composite(t, dur, cur.get("ts_start") if cur else None, cur is not None,
                                          volts, n, cap)
        out = []
        for sp, lim in periods:
            v = lim if unit == "A" else int(lim * volts * n)
            out.append({"startPeriod": sp, "limit": v, "numberPhases": n})
        return {"status": "Accepted", "connectorId": c, "scheduleStart": format_time(t),
                "chargingSchedule": {"duration": dur, "chargingRateUnit": unit, "chargingSchedulePeriod": out}}

    def _h_TriggerMessage(self, p, now):
        what = self._get(p, "requestedMessage", str)
        c = self._get(p, "connectorId", int, False)
        if what not in TRIGGERS:
            return {"status": "NotImplemented"}
        if c is not None and c not in (0, CONNECTOR):
            return {"status": "Rejected"}
        self._triggers.append(what)
        return {"status": "Accepted"}

    def _h_GetLocalListVersion(self, p, now):
        return {"listVersion": self.auth_list["v"]}

    def _h_SendLocalList(self, p, now):
        v = self._get(p, "listVersion", int)
        typ = self._get(p, "updateType", str)
        entries = self._get(p, "localAuthorizationList", list, False) or []
        if typ not in ("Full", "Differential"):
            raise CallError(R.PROPERTY, "updateType must be Full or Differential")
        if not self.conf["LocalAuthListEnabled"]:
            return {"status": "NotSupported"}
        if len(entries) > LIST_MAX:
            return {"status": "Failed"}
        if typ == "Differential" and v <= self.auth_list["v"]:
            return {"status": "VersionMismatch"}
        ids = {} if typ == "Full" else dict(self.auth_list["ids"])
        for e in entries:
            if not isinstance(e, dict) or not isinstance(e.get("idTag"), str) or not e["idTag"] \
                    or len(e["idTag"]) > 20:
                raise CallError(R.TYPE, "localAuthorizationList entries need an idTag (1..20 characters)")
            info = e.get("idTagInfo")
            if info is None:
                ids.pop(e["idTag"], None)  # a differential entry without idTagInfo removes the tag
            elif isinstance(info, dict) and isinstance(info.get("status"), str):
                ids[e["idTag"]] = info["status"]
            else:
                raise CallError(R.TYPE, "idTagInfo must be an object with a status")
        if len(ids) > LIST_MAX:
            return {"status": "Failed"}
        self.auth_list = {"v": v, "ids": ids}
        self.store.write_json(LIST_FILE, self.auth_list)
        return {"status": "Accepted"}

    def _h_UpdateFirmware(self, p, now):
        if self.fw is None:
            raise CallError(R.NOT_SUPPORTED, "no update key provisioned")
        return self.fw.update_firmware(p, now)

    def _h_UnlockConnector(self, p, now):
        self._get(p, "connectorId", int)
        return {"status": "NotSupported"}  # no socket lock on this hardware

    def _h_ClearCache(self, p, now):
        return {"status": "Accepted"}  # no authorization cache is kept

    def _h_DataTransfer(self, p, now):
        self._get(p, "vendorId", str)
        return {"status": "UnknownVendorId"}
