# The OCPP backend (firmware/ocpp.py) on the real Station in virtual time (host_tests/ocpp_bench.py):
# boot and clock, a transaction with charging profiles and a pause, offline and power-cut delivery,
# Reset, configuration, the local list, a session begun offline. Both runtimes.
from ocpp_bench import T_UNIX, Bench

# The simulated plant and board of charger_rig and this test code, compiled from source, beside the
# Station and the OCPP modules, and a second Station and backend for the power-cut cases, do not fit
# 112K: 176K is the smallest that passes on the 32-bit ports (160K does not). The OCPP modules
# themselves take about 50 KB there from .mpy files, 7 KB frozen (docs/ocpp.md "Measured").
MP_HEAP = "176K"


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


def test_every_measurand_of_ocpp_16_is_accepted_in_the_configuration():
    # make soak's OCPP fuzz: five of 1.6's 22 measurands (Power.Reactive.Export, the Interval and
    # reactive export registers) were Rejected although docs/ocpp.md accepts every valid one
    b = Bench()
    b.run(300)
    v = "Power.Reactive.Export,Energy.Reactive.Export.Register,Energy.Active.Export.Interval"
    a = b.server_call("ChangeConfiguration", {"key": "MeterValuesSampledData", "value": v})
    assert a[2] == {"status": "Accepted"}, a
    v2 = "Energy.Reactive.Import.Interval,Energy.Reactive.Export.Interval"
    assert b.server_call("ChangeConfiguration", {"key": "MeterValuesAlignedData", "value": v2})[2] == \
        {"status": "Accepted"}
    a = b.server_call("GetConfiguration", {"key": ["MeterValuesSampledData", "MeterValuesAlignedData"]})
    assert [k["value"] for k in a[2]["configurationKey"]] == [v, v2], a


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
    again.run(1500)  # a new status is reported once it has held a second (ocpp.STATUS_SETTLE_MS)
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
