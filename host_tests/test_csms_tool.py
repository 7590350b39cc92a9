"""The reference central system (tools/refcsms, `tools/csms`, `make sim-ocpp`) balancing two real
simulated chargers (`tools/sim-charger --ocpp`) on one circuit with TxDefaultProfiles, observed at
the PWM duty each vehicle sees; and its CLI commands."""

import asyncio
import io
import os
import sys
import threading

from broker import Broker, free_port
from e2e import ROOT, CloudClient
from ocpp_rig import OcppCharger

sys.path.insert(0, os.path.join(ROOT, "tools"))
from refcsms.csms import Csms, share  # noqa: E402

CPYTHON_ONLY = "a central system, a broker and firmware processes"


def test_share():
    assert share(32, 0) == []
    assert share(32, 2) == [16.0, 16.0]
    assert share(32, 3) == [10.7, 10.7, 10.7]
    assert share(16, 3) == [6.0, 6.0, 0.0]  # below 6 A each: the later ones pause


def test_two_chargers_balanced_on_one_circuit(tmp_path):
    os.makedirs(str(tmp_path / "mosq"))
    broker = Broker(folder=str(tmp_path / "mosq"))
    broker.start()
    port = free_port()
    log = io.StringIO()
    cs = Csms(port=port, circuit_a=20.0, balance_s=1.0, heartbeat_s=30, out=log)
    ready = threading.Event()
    threading.Thread(target=lambda: asyncio.run(cs.serve(ready)), daemon=True).start()
    assert ready.wait(10)
    chargers, cars = [], []
    try:
        for cid in ("BAL1", "BAL2"):
            cars.append(CloudClient(broker.port, cid, topics=["sim/%s/ev/state" % cid]))
            ch = OcppCharger(cid, port, broker.port, str(tmp_path / cid), log_dir=str(tmp_path))
            chargers.append(ch.start())
        for car in cars:
            car.ev_state(None, 20, what="the vehicle link up")  # ops before that would be lost
            car.plug()
            car.ev("charge", on=True)
        for car in cars:  # 20 A shared: 10 A each = 16.7 % duty
            car.ev_state(lambda d: d["contactor_out"] and abs(d["duty"] - 16.7) < 0.3, 30, what="10 A")
        assert "BAL1" in cs.run_command("list") and "Accepted" in cs.run_command("trigger BAL1 Heartbeat")
        assert cs.run_command("limit NOPE 6") == "unknown or disconnected charger"
        since = len(cars[1].msgs)
        cars[0].ev("unplug")  # the other one gets the whole circuit, capped by its own 16 A maximum
        cars[1].ev_state(lambda d: abs(d["duty"] - 26.7) < 0.3, 30, since, "16 A")
        assert '"dir": "in"' in log.getvalue() and '"dir": "out"' in log.getvalue()  # every frame logged
    finally:
        for c in cars:
            c.close()
        for ch in chargers:
            ch.close()
        broker.close()
