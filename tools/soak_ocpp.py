"""The OCPP leg of `make soak` (tools/soak.py): mutated frames and CALLs from a real OCPP 1.6J
central system (host_tests/csms.py, on the `ocpp` package) to a live tools/sim-charger in OCPP mode,
against a shadow of what docs/ocpp.md says the charger must answer and apply.

Each frame is sent raw and has a predicted answer: a CALLERROR with a given code (the RPC table of
docs/ocpp.md), a CALLRESULT (for ChangeConfiguration the status the shadow computes), any answer but
InternalError (the other actions, whose effects are not modelled), or none (a CALLRESULT or
CALLERROR for an id the charger never used, a frame over the 16 KB limit, which closes the socket).
After every batch, GetConfiguration of every key is compared with the shadow's values.

- fuzz_ocpp_msgs: frames sent;
- fuzz_ocpp_crashes: restarts, tracebacks, swallowed exceptions (`rpc: error`), InternalError answers;
- fuzz_ocpp_wrong_applies: answers of the wrong kind or code, and configuration values that differ;
- fuzz_ocpp_missing_replies: a frame owed an answer that got none within 10 s, or got two.
"""

import json
import random
import shutil
import time

import soak
from ocpp_rig import OcppRig
from soak_live import _tmp

OCPP_MSGS = 2 * 10 ** 4  # at SOAK_SCALE 1, on top of the MQTT fuzz leg's 10^5 (about 20 min)
INTERVAL = 2  # the central system's heartbeat interval (HeartbeatInterval after every accepted boot)
BATCH = 8
REPLY_S = 10.0
MAX_MESSAGE = 16384  # firmware/ws.py

# the configuration keys of docs/ocpp.md: (type, default, read-only)
# OCPP 1.6's Measurand enumeration (all 22 are valid in the MeterValues*Data keys)
MEASURANDS = ("Current.Export", "Current.Import", "Current.Offered", "Energy.Active.Export.Register",
              "Energy.Active.Import.Register", "Energy.Reactive.Export.Register", "Energy.Reactive.Import.Register",
              "Energy.Active.Export.Interval", "Energy.Active.Import.Interval", "Energy.Reactive.Export.Interval",
              "Energy.Reactive.Import.Interval", "Frequency", "Power.Active.Export", "Power.Active.Import",
              "Power.Factor", "Power.Offered", "Power.Reactive.Export", "Power.Reactive.Import", "RPM", "SoC",
              "Temperature", "Voltage")
SAMPLED = "Energy.Active.Import.Register,Power.Active.Import,Current.Import,Voltage,Current.Offered,Temperature"
KEYS = {
    "AllowOfflineTxForUnknownId": ("bool", "false", False),
    "AuthorizationCacheEnabled": ("bool", "false", True),
    "AuthorizeRemoteTxRequests": ("bool", "false", False),
    "ChargeProfileMaxStackLevel": ("int", "8", True),
    "ChargingScheduleAllowedChargingRateUnit": ("str", "Current,Power", True),
    "ChargingScheduleMaxPeriods": ("int", "24", True),
    "ClockAlignedDataInterval": ("int", "0", False),
    "ConnectionTimeOut": ("int", "60", False),
    "ConnectorPhaseRotation": ("str", "1.RST", True),
    "GetConfigurationMaxKeys": ("int", "50", True),
    "HeartbeatInterval": ("int", str(INTERVAL), False),
    "LocalAuthListEnabled": ("bool", "true", False),
    "LocalAuthListMaxLength": ("int", "100", True),
    "LocalAuthorizeOffline": ("bool", "true", False),
    "LocalPreAuthorize": ("bool", "false", False),
    "MaxChargingProfilesInstalled": ("int", "8", True),
    "MeterValueSampleInterval": ("int", "10", False),
    "MeterValuesAlignedData": ("csv", "Energy.Active.Import.Register", False),
    "MeterValuesAlignedDataMaxLength": ("int", "8", True),
    "MeterValuesSampledData": ("csv", SAMPLED, False),
    "MeterValuesSampledDataMaxLength": ("int", "8", True),
    "NumberOfConnectors": ("int", "1", True),
    "ResetRetries": ("int", "1", False),
    "StopTransactionOnEVSideDisconnect": ("bool", "true", True),
    "StopTransactionOnInvalidId": ("bool", "true", False),
    "StopTxnAlignedData": ("csv", "", False),
    "StopTxnSampledData": ("csv", "Energy.Active.Import.Register", False),
    "SendLocalListMaxLength": ("int", "100", True),
    "SupportedFeatureProfiles": ("str", "Core,SmartCharging,RemoteTrigger,LocalAuthListManagement", True),
    "TransactionMessageAttempts": ("int", "3", False),
    "TransactionMessageRetryInterval": ("int", "60", False),
    "UnlockConnectorOnEVSideDisconnect": ("bool", "true", True),
    "WebSocketPingInterval": ("int", "30", False),
}
ASCII_WS = " \t\n\r\x0b\x0c"
# actions whose effects are not modelled: any answer but InternalError, exactly one
OTHER = ("ClearCache", "DataTransfer", "UnlockConnector", "TriggerMessage", "ChangeAvailability",
         "RemoteStartTransaction", "RemoteStopTransaction", "SetChargingProfile", "ClearChargingProfile",
         "GetCompositeSchedule", "GetLocalListVersion", "SendLocalList")
NOT_SUPPORTED = ("GetDiagnostics", "ReserveNow", "CancelReservation", "UpdateFirmware")
# not a message: not JSON by RFC 8259 (MicroPython's json.loads takes some: protocol.loads must not), or no array
NOT_JSON = ("", "[", "{", "nul", "[2,", '[2, "a", "b", {}]]', "[1,2,,3]", '[2 "x" "y" {}]', '"str"', '[2,"x","y",{},]',
            '[02,"x","y",{}]', "NaN", '[2,"x","y",{"a":1e999}]', '[2,"x","y",{"a":1}', "[2,'x','y',{}]")


def shadow_status(shadow, key, value):
    """ChangeConfiguration's status by docs/ocpp.md, and the shadow updated when Accepted."""
    if key not in KEYS:
        return "NotSupported"
    typ, _, ro = KEYS[key]
    if ro:
        return "Rejected"
    v = value.strip(ASCII_WS)
    if typ == "int":
        if not v or not all("0" <= c <= "9" for c in v) or str(int(v)) != v or int(v) > 86400:
            return "Rejected"
        new = v
    elif typ == "bool":
        if v.lower() not in ("true", "false"):
            return "Rejected"
        new = v.lower()
    else:  # csv of measurands, at most 8
        items = [x.strip(ASCII_WS) for x in value.split(",") if x.strip(ASCII_WS)]
        if len(items) > 8 or any(x not in MEASURANDS for x in items):
            return "Rejected"
        new = ",".join(items)
    shadow[key] = new
    return "Accepted"


class Frames:
    """Generator of (text, expectation): expectation is ("error", id, code), ("result", id, status or
    None), ("any", id), ("none",) or ("close",)."""

    def __init__(self, rng):
        self.rng = rng
        self.n = 0

    def mid(self):
        self.n += 1
        return "f%d" % self.n

    def value(self, key):
        r = self.rng
        typ = KEYS[key][0] if key in KEYS else "int"
        pick = r.random()
        if typ == "int" and pick < 0.5:
            n = r.choice((0, 1, 5, 10, 30, 300, 86400, 86401, -1, 2 ** 31, r.randrange(0, 100000)))
            s = str(n)
            return r.choice((s, s, s, " %s " % s, "+" + s, "0" + s, s + "x", s + ".0", "1_0", "\u0665", "\t" + s))
        if typ == "bool" and pick < 0.5:
            return r.choice(("true", "false", "TRUE", "False", " true", "yes", "1", "", "tru e"))
        if typ == "csv" and pick < 0.5:
            k = r.randrange(0, 11)
            items = [r.choice(MEASURANDS + ("Bogus", "", " SoC ", "energy.active.import.register")) for _ in range(k)]
            return ",".join(items)
        return r.choice(("", "x", "0", "true", "é", "\u2028", "9" * 40, "a" * r.randrange(0, 600),
                         json.dumps(r.random())))

    def next(self, shadow):
        r = self.rng
        p = r.random()
        if p < 0.45:
            return self.change_conf(shadow)
        if p < 0.75:
            return self.other()
        return self.garbage()

    def change_conf(self, shadow):
        r = self.rng
        mid = self.mid()
        key = r.choice(list(KEYS) + ["UnknownKey", "heartbeatinterval", "", "K" * 60])
        val = self.value(key)
        q = r.random()
        if q < 0.06:
            payload, exp = {"value": val}, ("error", mid, "OccurenceConstraintViolation")
        elif q < 0.10:
            payload, exp = {"key": key}, ("error", mid, "OccurenceConstraintViolation")
        elif q < 0.16:
            payload = {"key": r.choice((5, None, True, [key], {"k": key})), "value": val}
            exp = ("error", mid, "TypeConstraintViolation")
        elif q < 0.22:
            payload = {"key": key, "value": r.choice((5, None, False, 1.5, [val]))}
            exp = ("error", mid, "TypeConstraintViolation")
        else:
            payload = {"key": key, "value": val}
            if r.random() < 0.1:
                payload["extra"] = r.choice((1, "x", None, {"a": [1]}))
            exp = ("result", mid, shadow_status(shadow, key, val))
        return json.dumps([2, mid, "ChangeConfiguration", payload]), exp

    def payload(self, action):
        r = self.rng
        good = {
            "ClearCache": {},
            "DataTransfer": {"vendorId": "soak", "messageId": "m", "data": "x"},
            "UnlockConnector": {"connectorId": 1},
            "TriggerMessage": {"requestedMessage": r.choice(("Heartbeat", "StatusNotification", "MeterValues",
                                                             "DiagnosticsStatusNotification",
                                                             "FirmwareStatusNotification")),
                               "connectorId": r.choice((0, 1, 2))},
            "ChangeAvailability": {"connectorId": r.choice((0, 1)), "type": r.choice(("Operative", "Inoperative"))},
            "RemoteStartTransaction": {"idTag": "SOAK%d" % r.randrange(100), "connectorId": 1},
            "RemoteStopTransaction": {"transactionId": r.randrange(-1, 5)},
            "SetChargingProfile": {"connectorId": r.choice((0, 1)), "csChargingProfiles": {
                "chargingProfileId": r.randrange(1, 20), "stackLevel": r.randrange(0, 10),
                "chargingProfilePurpose": r.choice(("TxDefaultProfile", "ChargePointMaxProfile", "TxProfile")),
                "chargingProfileKind": r.choice(("Absolute", "Relative", "Recurring")),
                "chargingSchedule": {"chargingRateUnit": r.choice(("A", "W")), "chargingSchedulePeriod": [
                    {"startPeriod": 0, "limit": r.choice((0, 6, 16.5, 32, 1000))}]}}},
            "ClearChargingProfile": {"id": r.randrange(0, 20)} if r.random() < 0.5 else {},
            "GetCompositeSchedule": {"connectorId": r.choice((0, 1)), "duration": r.randrange(0, 90000)},
            "GetLocalListVersion": {},
            "SendLocalList": {"listVersion": r.randrange(0, 10), "updateType": r.choice(("Full", "Differential")),
                              "localAuthorizationList": [{"idTag": "T%d" % i, "idTagInfo": {"status": "Accepted"}}
                                                         for i in range(r.randrange(0, 5))]},
        }[action]
        if r.random() < 0.5:
            return good
        return self.mutate(good)

    def mutate(self, obj):
        """One random change somewhere in a JSON value: a field dropped, retyped, enlarged or added."""
        r = self.rng
        junk = (None, True, -1, 2 ** 31, 1e308, "", "x" * r.randrange(0, 3000), [], {}, [1, "a"], {"a": {"b": []}})
        if isinstance(obj, dict) and obj:
            k = r.choice(list(obj))
            c = dict(obj)
            q = r.random()
            if q < 0.25:
                del c[k]
            elif q < 0.5:
                c[k] = r.choice(junk)
            elif q < 0.6:
                c["x" + k] = r.choice(junk)
            else:
                c[k] = self.mutate(c[k])
            return c
        if isinstance(obj, list) and obj:
            c = list(obj)
            i = r.randrange(len(c))
            c[i] = self.mutate(c[i]) if r.random() < 0.7 else r.choice(junk)
            return c
        return r.choice(junk)

    def other(self):
        r = self.rng
        mid = self.mid()
        q = r.random()
        if q < 0.1:
            action = r.choice(NOT_SUPPORTED)
            return json.dumps([2, mid, action, {}]), ("error", mid, "NotSupported")
        if q < 0.2:
            action = r.choice(("Bogus", "", "changeconfiguration", "_h_x", "__init__", "A" * 300, "Get Configuration"))
            return json.dumps([2, mid, action, {}]), ("error", mid, "NotImplemented")
        action = r.choice(OTHER)
        return json.dumps([2, mid, action, self.payload(action)]), ("any", mid)

    def garbage(self):
        r = self.rng
        mid = self.mid()
        q = r.random()
        call = [2, mid, "GetLocalListVersion", {}]
        if q < 0.13:
            text = r.choice(NOT_JSON)
            return text, ("error", "-1", "FormationViolation")
        if q < 0.15:  # nested past protocol.MAX_DEPTH (16), up to a few KB of brackets
            k = r.choice((17, 40, r.randrange(17, 3000)))
            text = '[2, "%s", "GetLocalListVersion", {"a": %s}]' % (mid, "[" * k + "]" * k)
            return text, ("error", "-1", "FormationViolation")
        if q < 0.3:
            text = json.dumps(r.choice(({}, 5, "x", None, [], [2], [2, mid], [True, mid, "x", {}], ["2", mid, "x", {}],
                                        [2.0, mid, "x", {}])))
            return text, ("error", "-1", "FormationViolation")
        if q < 0.4:
            bad = r.choice((5, None, "", "i" * 37, ["x"]))
            return json.dumps([2, bad, "GetLocalListVersion", {}]), ("error", "-1", "FormationViolation")
        if q < 0.55:
            c = r.choice(([2, mid, "GetLocalListVersion"], [2, mid, 5, {}], [2, mid, None, {}],
                          [2, mid, "GetLocalListVersion", {}, 1]))
            return json.dumps(c), ("error", mid, "FormationViolation")
        if q < 0.65:
            p = r.choice(([], "x", 5, None, [{}]))
            return json.dumps([2, mid, "GetLocalListVersion", p]), ("error", mid, "FormationViolation")
        if q < 0.75:
            t = r.choice((0, 1, 5, 99, -2))
            return json.dumps([t, mid, "x", {}]), ("error", mid, "ProtocolError")
        if q < 0.8:  # an answer to a CALL the charger never made (ids f... are ours): ignored
            return json.dumps(r.choice(([3, mid, {}], [4, mid, "GenericError", "", {}], [4, mid, 5]))), ("none",)
        if q < 0.85:  # too short to carry an id
            return json.dumps(r.choice(([3, mid], [4, mid]))), ("error", "-1", "FormationViolation")
        if q < 0.97:  # big, under the limit: a long padding field
            pad = "p" * r.randrange(1000, MAX_MESSAGE - 200)
            call[3] = {"pad": pad}
            return json.dumps(call), ("result", mid, None)
        if q < 0.985:  # the same id twice: two answers owed
            return json.dumps(call), ("dup", mid)
        call[3] = {"pad": "p" * (MAX_MESSAGE + 10)}  # over the limit: close 1009, then a reconnect
        return json.dumps(call), ("close",)


def _by_id(answers):
    got = {}
    for m in answers:
        if len(m) >= 3:  # [3, id, payload] / [4, id, code, ...]: what the checks read
            got.setdefault(m[1], []).append(m)
    return got


def _boots(csms, cid):
    return len(csms.all_calls("BootNotification", cid=cid))


def ocpp_fuzz(scale, seed, n_msgs=None, breaker=None, serial="SOAKO1"):
    """`breaker` (tests only, to show that each checker counts what it should): breaker("frame",
    (text, expectation)) returns the pair to send instead; breaker("shadow", shadow) may change the
    shadow before each configuration check."""
    n_msgs = n_msgs or max(40, int(OCPP_MSGS * scale))
    rng = random.Random(seed * 104729 + 3)
    gen = Frames(rng)
    tmp = _tmp("ocpp")
    rig = OcppRig(tmp, interval=INTERVAL)
    res = {"fuzz_ocpp_msgs": 0, "fuzz_ocpp_crashes": 0, "fuzz_ocpp_wrong_applies": 0, "fuzz_ocpp_missing_replies": 0,
           "fuzz_ocpp_config_checks": 0, "fuzz_ocpp_reconnects": 0}
    examples = []

    def note(kind, what):
        if len(examples) < 20:
            examples.append({"kind": kind, "what": what, "msgs": res["fuzz_ocpp_msgs"]})

    try:
        # from source on the 64-bit port the simulator alone takes ~480 K of the default 512 K, and
        # a 16 KB message then fails to find its buffers (a MemoryError drops the link): the
        # device's own heap is measured elsewhere (bench/README.md), not by this leg
        ch, ev = rig.charger(serial, args=("--heap", "1024K"))
        cs = rig.csms
        cs.wait_call("BootNotification", cid=serial, timeout=30)
        cs.wait_connected(serial, timeout=30)
        shadow = {k: v[1] for k, v in KEYS.items()}
        boots = _boots(cs, serial)
        held = None
        while res["fuzz_ocpp_msgs"] < n_msgs:
            since = cs.frame_mark()
            sent = []
            closed = False
            for _ in range(BATCH):
                if held is not None:
                    text, exp = held
                    held = None
                else:
                    text, exp = gen.next(shadow)
                    if breaker:
                        text, exp = breaker("frame", (text, exp))
                    if exp[0] == "close" and sent:
                        # alone in its batch: the answers still queued when the socket closes
                        # are lost with it, as OCPP-J has them (a CALL's answer is per connection)
                        held = (text, exp)
                        break
                try:
                    cs.raw(serial, text)
                    if exp[0] == "dup":
                        cs.raw(serial, text)
                except Exception as e:  # noqa: BLE001  the connection went: the wait below tells why
                    note("send", repr(e)[:200])
                    closed = True
                    break
                res["fuzz_ocpp_msgs"] += 2 if exp[0] == "dup" else 1
                sent.append(exp)
                if exp[0] == "close":
                    closed = True
                    break
            owed = {}  # id -> (expectation, count owed)
            for exp in sent:
                if exp[0] in ("none", "close"):
                    continue
                n, e0 = owed.get(exp[1], (0, exp))
                owed[exp[1]] = (n + (2 if exp[0] == "dup" else 1), e0)
            end = time.monotonic() + REPLY_S
            while time.monotonic() < end:
                got = _by_id(cs.answers(since=since, cid=serial))
                if all(len(got.get(i, ())) >= n for i, (n, _) in owed.items()):
                    break
                time.sleep(0.02)
            time.sleep(0.05)  # a second answer to the same id would come right after the first
            got = _by_id(cs.answers(since=since, cid=serial))
            for i, (n, exp) in owed.items():
                ans = got.get(i, [])
                if len(ans) != n:
                    res["fuzz_ocpp_missing_replies"] += 1
                    note("missing", {"id": i, "owed": n, "got": ans, "exp": exp})
                    continue
                for a in ans:
                    if a[0] == 4 and a[2] == "InternalError":
                        res["fuzz_ocpp_crashes"] += 1
                        note("internal", a)
                    elif exp[0] == "error" and not (a[0] == 4 and a[2] == exp[2]):
                        res["fuzz_ocpp_wrong_applies"] += 1
                        note("wrong_error", {"got": a, "exp": exp})
                    elif exp[0] in ("result", "dup") and a[0] != 3:
                        res["fuzz_ocpp_wrong_applies"] += 1
                        note("not_result", {"got": a, "exp": exp})
                    elif exp[0] == "result" and exp[2] is not None and a[2].get("status") != exp[2]:
                        res["fuzz_ocpp_wrong_applies"] += 1
                        note("status", {"got": a, "exp": exp})
            for i in got:  # answers to ids that were owed none ("-1" is counted through owed)
                if i not in owed and isinstance(i, str) and i.startswith("f"):
                    res["fuzz_ocpp_missing_replies"] += 1
                    note("unowed", got[i])
            if closed:
                # the charger closed (1009) or the send failed: it must come back (and boot again)
                t_end = time.monotonic() + 10
                while cs.connected(serial) and time.monotonic() < t_end:
                    time.sleep(0.05)
                cs.wait_connected(serial, timeout=60)
                t_end = time.monotonic() + 10
                while _boots(cs, serial) == boots and time.monotonic() < t_end:
                    time.sleep(0.05)
            nb = _boots(cs, serial)
            if nb != boots:
                if not closed:
                    res["fuzz_ocpp_reconnects"] += nb - boots
                    note("reconnect", nb - boots)
                shadow["HeartbeatInterval"] = str(INTERVAL)  # an accepted boot takes the server's interval
                boots = nb
                time.sleep(0.3)
            # the configuration as the charger has it, against the shadow
            try:
                r = json.loads(json.dumps(cs.call(serial, _get_configuration(), timeout=REPLY_S).configuration_key))
            except Exception as e:  # noqa: BLE001
                res["fuzz_ocpp_missing_replies"] += 1
                note("getconf", repr(e)[:200])
                continue
            res["fuzz_ocpp_config_checks"] += 1
            if breaker:
                breaker("shadow", shadow)
            have = {x["key"]: x.get("value") for x in r}
            for k, v in shadow.items():
                if have.get(k) != v:
                    res["fuzz_ocpp_wrong_applies"] += 1
                    note("config", {"key": k, "charger": have.get(k), "shadow": v})
                    shadow[k] = have.get(k)  # counted once, not at every later check
        n_err, lines = _log_errors(ch.log_path)
        if not ch.alive():
            n_err += 1
            lines.append("the charger is not running")
        res["fuzz_ocpp_crashes"] += n_err
        if n_err:
            note("log", lines[:10])
    finally:
        rig.close()
    failed = [k for k in ("fuzz_ocpp_crashes", "fuzz_ocpp_wrong_applies", "fuzz_ocpp_missing_replies") if res[k]]
    if failed:
        soak.write_failure("ocpp", "seed%d" % seed, {"seed": seed, "scale": scale, "n_msgs": n_msgs,
                                                     "failed": failed, "examples": examples})
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return res


def _log_errors(path):
    """Crashes the supervisor reported and exceptions the firmware caught, from the whole log (the
    frames it logs make it too long for a tail)."""
    n = 0
    lines = []
    with open(path, "rb") as f:
        for line in f:
            if b"Traceback" in line or b"rpc: error" in line or b"crashed" in line or b"restarting firmware" in line:
                n += 1
                lines.append(line[:300].decode("utf-8", "replace"))
    return n, lines


def _get_configuration():
    from ocpp.v16 import call

    return call.GetConfiguration()

