"""OCPP 1.6J end to end: the real firmware as its own process (`tools/sim-charger --ocpp`, the
MicroPython unix port on the simulated board) against a real central system (the PyPI `ocpp`
package with schema validation of every message both ways, host_tests/csms.py), the vehicle over a
real mosquitto (`sim/<id>/ev`). Observed only through OCPP and the vehicle's view.

- boot, StatusNotification of connectors 0 and 1, heartbeat at the server's interval, the clock,
  the path /PATH/ID and the `ocpp1.6` subprotocol, HTTP Basic auth (right and wrong password), SIGTERM;
- a whole transaction: StartTransaction (meterStart), status sequence, MeterValues with the
  contract's measurands every MeterValueSampleInterval, the register never decreasing, StopTransaction
  EVDisconnected with transactionData;
- RemoteStart / RemoteStop (reason Remote), an RFID tag -> Authorize -> StartTransaction;
- evcc's sequence: GetConfiguration, ChangeConfiguration of MeterValuesSampledData etc.,
  SetChargingProfile TxDefaultProfile in A and in W ending at the PWM duty the vehicle sees, limit 0
  pauses, GetCompositeSchedule, ClearChargingProfile, TxProfile without a transaction rejected;
- a power cut mid-transaction -> after boot a StopTransaction PowerLoss with the checkpoint's meter;
- Reset during a transaction -> StopTransaction SoftReset, then a new boot;
- the central system down during a transaction: the Stop arrives after it comes back, in order;
- malformed CALLs answered by CALLERRORs, the charger carries on;
- the contactor opens within 100 ms of the vehicle stopping while the central system is dead.
"""

import time

import pytest
from e2e import wait_until
from ocpp.v16 import call
from ocpp_rig import OcppRig, loop_gaps

CPYTHON_ONLY = "real central system, broker and firmware processes"

EVCC_MEASURANDS = ("Power.Active.Import,Energy.Active.Import.Register,Current.Import,Voltage,Current.Offered,"
                   "Power.Offered,SoC")


@pytest.fixture
def orig(tmp_path):
    r = OcppRig(tmp_path, interval=2)
    yield r
    r.close()


def _boot(rig, sid, settings=None, **kw):
    ch, ev = rig.charger(sid, settings, **kw)
    cs = rig.csms
    cs.wait_call("BootNotification", cid=sid, timeout=20)
    cs.wait_connected(sid)
    cs.wait_call("StatusNotification", lambda p: p["connector_id"] == 1, cid=sid)
    ev.ev_state(None, 20, what="the vehicle link up")  # vehicle ops sent before it would be lost
    return ch, ev


def _charge(ev):
    ev.plug(cable_a=32, phases=3, max_a=32)
    ev.ev("charge", on=True)


def _tx_values(cs, sid, since=0):
    out = []
    for c in cs.all_calls("MeterValues", since, sid):
        for mv in c[3]["meter_value"]:
            for sv in mv["sampled_value"]:
                out.append((c[3].get("transaction_id"), sv))
    return out


def test_boot_status_heartbeat_and_sigterm(orig):
    cs = orig.csms
    ch, ev = _boot(orig, "OCBOOT")
    boot = cs.wait_call("BootNotification", cid="OCBOOT")
    assert boot["charge_point_serial_number"] == "OCBOOT" and boot["firmware_version"], boot
    assert cs.paths[0] == "/ocpp/OCBOOT", cs.paths
    assert cs.handshake_headers[0].get("sec-websocket-protocol") == "ocpp1.6", cs.handshake_headers[0]
    st = {c[3]["connector_id"]: c[3] for c in cs.all_calls("StatusNotification", cid="OCBOOT")}
    assert st[0]["status"] == "Available" and st[1]["status"] == "Available", st
    assert st[1]["error_code"] == "NoError"
    # the charger's timestamps follow the central system's clock within a few seconds
    ts = st[1]["timestamp"]
    t = time.mktime(time.strptime(ts, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert abs(t - time.time()) < 5, ts
    m = cs.mark()
    cs.wait_call("Heartbeat", cid="OCBOOT", since=m, timeout=6)  # interval 2 s from the BootNotification
    assert ch.sigterm() == 0


def test_basic_auth_right_and_wrong_password(tmp_path):
    rig = OcppRig(tmp_path, password="s3cret")
    try:
        _boot(rig, "OCAUTH1", password="s3cret")
        auth = rig.csms.handshake_headers[0].get("authorization", "")
        assert auth.startswith("Basic "), rig.csms.handshake_headers[0]
        rig.charger("OCAUTH2", password="wrong")
        time.sleep(4)
        assert not rig.csms.all_calls(cid="OCAUTH2"), "a wrong password got through"
    finally:
        rig.close()


def test_wss_with_the_provisioned_ca(tmp_path):
    import ssl

    from broker import Certs

    certs = Certs(str(tmp_path / "certs"))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs.cert, certs.key)
    rig = OcppRig(tmp_path, ssl=ctx, password="pw2")
    try:
        url = "wss://127.0.0.1:%d/ocpp" % rig.csms.port
        _boot(rig, "OCTLS", url=url, tls_ca=certs.ca, password="pw2")  # security profile 2
        rig.charger("OCTLSBAD", url=url, tls_ca=certs.other_ca, password="pw2")
        time.sleep(4)
        assert not rig.csms.all_calls(cid="OCTLSBAD"), "connected with a CA that did not sign the server"
    finally:
        rig.close()


def test_transaction_with_meter_values(orig):
    cs = orig.csms
    sid = "OCTX"
    ch, ev = _boot(orig, sid)
    r = cs.call(sid, call.ChangeConfiguration(key="MeterValueSampleInterval", value="2"))
    assert r.status == "Accepted"
    _charge(ev)
    start = cs.wait_call("StartTransaction", cid=sid)
    assert start["connector_id"] == 1 and start["meter_start"] >= 0 and start["id_tag"], start
    cs.wait_call("StatusNotification", lambda p: p["status"] == "Charging" and p["connector_id"] == 1, cid=sid)
    time.sleep(7)
    vals = _tx_values(cs, sid)
    txid = cs.all_calls("StartTransaction", cid=sid)[0]
    assert vals, "no MeterValues"
    measurands = {sv.get("measurand") for _, sv in vals}
    assert {"Energy.Active.Import.Register", "Power.Active.Import", "Current.Import", "Voltage",
            "Current.Offered", "Temperature"} <= measurands, measurands
    for m in ("Current.Import", "Voltage"):
        phases = {sv.get("phase") for _, sv in vals if sv.get("measurand") == m}
        assert phases == {"L1", "L2", "L3"}, (m, phases)
    units = {sv.get("measurand"): sv.get("unit") for _, sv in vals}
    assert units["Energy.Active.Import.Register"] == "Wh" and units["Power.Active.Import"] == "W", units
    assert all(t is not None for t, _ in vals), "transaction MeterValues without transactionId"
    energy = [int(sv["value"]) for _, sv in vals if sv.get("measurand") == "Energy.Active.Import.Register"]
    assert energy == sorted(energy) and energy[-1] > start["meter_start"], energy
    offered = [float(sv["value"]) for _, sv in vals if sv.get("measurand") == "Current.Offered"]
    assert offered[-1] == 16.0, offered
    ev.ev("unplug")
    stop = cs.wait_call("StopTransaction", cid=sid)
    assert stop["reason"] == "EVDisconnected", stop
    assert stop["meter_stop"] >= energy[-1] and stop["transaction_id"] == 101, (stop, txid)
    assert stop.get("transaction_data"), stop
    cs.wait_call("StatusNotification", lambda p: p["status"] == "Available" and p["connector_id"] == 1,
                 cid=sid, since=cs.mark() - 3)
    # the status sequence of the whole session on connector 1, repeats folded
    seq = []
    for c in cs.all_calls("StatusNotification", cid=sid):
        if c[3]["connector_id"] == 1 and (not seq or seq[-1] != c[3]["status"]):
            seq.append(c[3]["status"])
    assert seq[0] == "Available" and seq[-1] == "Available" and "Charging" in seq, seq
    assert set(seq) <= {"Available", "Preparing", "SuspendedEV", "Charging", "Finishing"}, seq


def test_remote_start_stop_and_rfid(orig):
    cs = orig.csms
    sid = "OCREM"
    ch, ev = _boot(orig, sid, {"auth_required": True})
    _charge(ev)
    cs.wait_call("StatusNotification", lambda p: p["status"] == "Preparing", cid=sid)
    r = cs.call(sid, call.RemoteStartTransaction(id_tag="R1", connector_id=1))
    assert r.status == "Accepted"
    start = cs.wait_call("StartTransaction", cid=sid)
    assert start["id_tag"] == "R1", start
    cs.wait_call("StatusNotification", lambda p: p["status"] == "Charging", cid=sid)
    assert cs.call(sid, call.RemoteStartTransaction(id_tag="R2")).status == "Rejected"  # one already runs
    assert cs.call(sid, call.RemoteStopTransaction(transaction_id=999)).status == "Rejected"
    m = cs.mark()
    assert cs.call(sid, call.RemoteStopTransaction(transaction_id=101)).status == "Accepted"
    stop = cs.wait_call("StopTransaction", cid=sid, since=m)
    assert stop["reason"] == "Remote" and stop["transaction_id"] == 101, stop
    # an RFID tag the central system accepts
    ev.ev("unplug")
    cs.accepted_tags.add("04A1B2")
    _charge(ev)
    m = cs.mark()
    ev.ev("tag", id="04A1B2")
    assert cs.wait_call("Authorize", cid=sid, since=m)["id_tag"] == "04A1B2"
    start = cs.wait_call("StartTransaction", cid=sid, since=m)
    assert start["id_tag"] == "04A1B2", start


def _duty(ev, want, timeout=12.0, since=0):
    return ev.ev_state(lambda d: abs(d["duty"] - want) < 0.3, timeout, since, "duty %s" % want)


def _profile(pid, limit, unit="A", purpose="TxDefaultProfile", level=0, **extra):
    p = {"chargingProfileId": pid, "stackLevel": level, "chargingProfilePurpose": purpose,
         "chargingProfileKind": "Relative",
         "chargingSchedule": {"chargingRateUnit": unit, "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}]}}
    p.update(extra)
    return p


def test_evcc_sequence_charging_profiles_to_the_pwm(orig):
    cs = orig.csms
    sid = "OCEVCC"
    ch, ev = _boot(orig, sid)
    conf = cs.call(sid, call.GetConfiguration())
    keys = {k["key"]: k for k in conf.configuration_key}
    for k in ("MeterValuesSampledData", "MeterValueSampleInterval", "WebSocketPingInterval", "HeartbeatInterval",
              "NumberOfConnectors", "SupportedFeatureProfiles"):
        assert k in keys, k
    assert keys["NumberOfConnectors"]["readonly"] is True and keys["NumberOfConnectors"]["value"] == "1"
    assert "SmartCharging" in keys["SupportedFeatureProfiles"]["value"]
    r = cs.call(sid, call.GetConfiguration(key=["HeartbeatInterval", "NoSuchKey"]))
    assert r.unknown_key == ["NoSuchKey"] and len(r.configuration_key) == 1
    for k, v in (("MeterValuesSampledData", EVCC_MEASURANDS), ("MeterValueSampleInterval", "5"),
                 ("WebSocketPingInterval", "10")):
        assert cs.call(sid, call.ChangeConfiguration(key=k, value=v)).status == "Accepted", k
    assert cs.call(sid, call.ChangeConfiguration(key="NumberOfConnectors", value="2")).status == "Rejected"
    assert cs.call(sid, call.ChangeConfiguration(key="Bogus", value="2")).status == "NotSupported"
    assert cs.call(sid, call.ChangeConfiguration(key="MeterValueSampleInterval", value="x")).status == "Rejected"
    # a TxProfile needs a running transaction
    r = cs.call(sid, call.SetChargingProfile(connector_id=1, cs_charging_profiles=_profile(9, 8, purpose="TxProfile")))
    assert r.status == "Rejected"
    _charge(ev)
    cs.wait_call("StatusNotification", lambda p: p["status"] == "Charging", cid=sid)
    _duty(ev, 26.7)  # 16 A
    t0 = time.monotonic()
    r = cs.call(sid, call.SetChargingProfile(connector_id=0, cs_charging_profiles=_profile(1, 10)))
    assert r.status == "Accepted"
    d = _duty(ev, 16.7)  # 10 A
    took = time.monotonic() - t0
    print("SetChargingProfile -> PWM 10 A: %.3f s" % took)
    assert took < 3, took
    # in W: 4140 W on 3 phases at ~230 V is 6 A
    assert cs.call(sid, call.SetChargingProfile(connector_id=0, cs_charging_profiles=_profile(1, 4140, "W"))).status \
        == "Accepted"
    _duty(ev, 10.0)
    comp = cs.call(sid, call.GetCompositeSchedule(connector_id=1, duration=3600, charging_rate_unit="A"))
    assert comp.status == "Accepted", comp
    per = comp.charging_schedule["charging_schedule_period"]
    assert per[0]["start_period"] == 0 and abs(float(per[0]["limit"]) - 6.0) < 0.2, per
    # limit 0 pauses: no PWM (steady +12 V), contactor open; a higher stack level wins
    assert cs.call(sid, call.SetChargingProfile(connector_id=0, cs_charging_profiles=_profile(2, 0, level=1))).status \
        == "Accepted"
    d = ev.ev_state(lambda d: d["duty"] in (0, 100) and not d["contactor_out"], 15, what="paused")
    assert d["contactor_out"] is False
    cs.wait_call("StatusNotification", lambda p: p["status"] == "SuspendedEVSE", cid=sid)
    # clearing the pause gives the 6 A of the lower level back
    assert cs.call(sid, call.ClearChargingProfile(id=2)).status == "Accepted"
    _duty(ev, 10.0, 20)
    # a TxProfile for the running transaction overrides the default
    r = cs.call(sid, call.SetChargingProfile(connector_id=1, cs_charging_profiles=_profile(3, 13, purpose="TxProfile")))
    assert r.status == "Accepted"
    _duty(ev, 21.7, 20)
    assert cs.call(sid, call.ClearChargingProfile()).status == "Accepted"
    _duty(ev, 26.7, 20)
    # meter values carry what evcc asked for that we have
    m = cs.mark()
    cs.wait_call("MeterValues", lambda p: p.get("transaction_id") is not None, cid=sid, since=m, timeout=12)
    ms = {sv.get("measurand") for _, sv in _tx_values(cs, sid, m)}
    assert {"Power.Offered", "Current.Offered", "Power.Active.Import"} <= ms, ms


def test_power_cut_mid_transaction_gives_powerloss_stop(orig):
    cs = orig.csms
    sid = "OCCUT"
    ch, ev = _boot(orig, sid)
    _charge(ev)
    start = cs.wait_call("StartTransaction", cid=sid)
    cs.wait_call("StatusNotification", lambda p: p["status"] == "Charging", cid=sid)
    time.sleep(6)
    ch.sigkill()
    m = cs.mark()
    ch.start()
    cs.wait_call("BootNotification", cid=sid, since=m, timeout=20)
    stop = cs.wait_call("StopTransaction", cid=sid, since=m, timeout=20)
    assert stop["reason"] == "PowerLoss" and stop["transaction_id"] == 101, stop
    assert stop["meter_stop"] > start["meter_start"], (start, stop)


def test_reset_during_transaction(orig):
    cs = orig.csms
    sid = "OCRST"
    ch, ev = _boot(orig, sid)
    _charge(ev)
    cs.wait_call("StartTransaction", cid=sid)
    cs.wait_call("StatusNotification", lambda p: p["status"] == "Charging", cid=sid)
    m = cs.mark()
    assert cs.call(sid, call.Reset(type="Soft")).status == "Accepted"
    stop = cs.wait_call("StopTransaction", cid=sid, since=m)
    assert stop["reason"] == "SoftReset", stop
    cs.wait_call("BootNotification", cid=sid, since=m, timeout=30)
    assert ch.alive()  # restarted in place


def test_central_system_down_during_transaction(orig):
    cs = orig.csms
    sid = "OCDOWN"
    ch, ev = _boot(orig, sid)
    _charge(ev)
    cs.wait_call("StartTransaction", cid=sid)
    cs.wait_call("StatusNotification", lambda p: p["status"] == "Charging", cid=sid)
    n = len(loop_gaps(ch))
    cs.stop()
    time.sleep(1)
    # the vehicle stops while the central system is dead: the contactor opens at once all the same
    ev.ev("charge", on=False)
    d = ev.ev_state(lambda d: d["s2"] is False and not d["contactor_out"] and d.get("contactor_ms") is not None, 10)
    dt = d["contactor_ms"] - d["s2_ms"]
    print("contactor opened %d ms after S2 with the central system down" % dt)
    assert 0 <= dt <= 100, d
    ev.ev("unplug")
    time.sleep(3)
    gaps = loop_gaps(ch)[n:]
    print("fast-loop gap per second with the central system down: max %d ms over %d s" % (max(gaps), len(gaps)))
    assert gaps and max(gaps) < 60, gaps  # 10 ms period; the rest is this shared host's scheduling
    m = cs.mark()
    cs.start()
    cs.wait_call("BootNotification", cid=sid, since=m, timeout=40)
    stop = cs.wait_call("StopTransaction", cid=sid, since=m, timeout=20)
    assert stop["reason"] == "EVDisconnected" and stop["transaction_id"] == 101, stop
    assert ch.alive()


def test_malformed_calls_get_callerrors(orig):
    cs = orig.csms
    sid = "OCBAD"
    _boot(orig, sid)
    cases = [
        ("not json at all", "-1", "FormationViolation"),
        ('{"a": 1}', "-1", "FormationViolation"),
        ('[2, "m1", "NoSuchAction", {}]', "m1", "NotImplemented"),
        ('[2, "m2", "ChangeConfiguration", {"key": 5, "value": "1"}]', "m2", "TypeConstraintViolation"),
        ('[2, "m3", "Reset", {}]', "m3", "OccurenceConstraintViolation"),
        ('[2, "m4", "Reset"]', "m4", "FormationViolation"),
        ('[2, "m5", "Reset", [1]]', "m5", "FormationViolation"),
        ('[9, "m6", "Reset", {}]', "m6", "ProtocolError"),
        ('[2, "m7", "UpdateFirmware", {"location": "x", "retrieveDate": "2026-01-01T00:00:00Z"}]', "m7",
         "NotSupported"),
        ('[2, "m8", "SetChargingProfile", {"connectorId": 0, "csChargingProfiles": {"chargingProfileId": 1}}]', "m8",
         "OccurenceConstraintViolation"),
    ]
    for raw, mid, code in cases:
        f = cs.frame_mark()
        cs.raw(sid, raw)
        wait_until(lambda mid=mid, f=f: cs.answers(mid, f), 5, "answer to %r" % raw)
        ans = cs.answers(mid, f)[0]
        assert ans[0] == 4 and ans[2] == code, (raw, ans)
    # still fine
    assert cs.call(sid, call.GetConfiguration(key=["HeartbeatInterval"])).configuration_key[0]["value"] == "2"


def test_slow_then_blackholed_central_system_while_the_vehicle_stops(orig):
    from broker import Proxy

    cs = orig.csms
    sid = "OCSLOW"
    proxy = Proxy(cs.port, dribble_s=0.05)
    try:
        ch, ev = _boot(orig, sid, url="ws://127.0.0.1:%d/ocpp" % proxy.port)
        _charge(ev)
        cs.wait_call("StatusNotification", lambda p: p["status"] == "Charging", cid=sid)
        for mode in ("dribble", "blackhole"):
            proxy.set_mode(mode)  # every frame of the charger now crawls (or stops) on the way
            time.sleep(1)
            since = len(ev.msgs)
            ev.ev("charge", on=False)
            d = ev.ev_state(lambda d: d["s2"] is False and not d["contactor_out"], 10, since)
            dt = d["contactor_ms"] - d["s2_ms"]
            print("%s central system: contactor opened %d ms after S2" % (mode, dt))
            assert 0 <= dt <= 100, (mode, d)
            ev.ev("charge", on=True)
            ev.ev_state(lambda d: d["contactor_out"], 15, since, "charging again")
        proxy.set_mode("pass")
        assert ch.alive()
    finally:
        proxy.close()
