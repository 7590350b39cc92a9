"""Peers for the OCPP end-to-end tests (CPython only; not a test module): a real central system
(host_tests/csms.py, the PyPI `ocpp` package), a mosquitto for the vehicle link, and chargers run
as `tools/sim-charger --ocpp` processes exactly as shared/contract.md "OCPP 1.6J mode" says."""

import os
import signal

from broker import Broker
from csms import Csms
from e2e import Charger, CloudClient


class OcppCharger(Charger):
    env = {"SIM_LINK_LOG": "1", "SIM_BENCH": "1"}  # `@bench` lines: the loop gap each second

    def __init__(self, serial, csms_port, ev_port, state_dir, settings=None, password=None, log_dir=None,
                 url=None, tls_ca=None, args=()):
        Charger.__init__(self, serial, None, state_dir, settings, ev_broker_port=ev_port, log_dir=log_dir, args=args)
        self.url = url or "ws://127.0.0.1:%d/ocpp" % csms_port
        self.password = password
        self.tls_ca = tls_ca

    def backend_args(self):
        a = ["--ocpp", self.url]
        if self.password is not None:
            a += ["--ocpp-password", self.password]
        if self.tls_ca is not None:
            a += ["--tls-ca", self.tls_ca]
        return a


def loop_gaps(charger):
    """The fast loop's longest gap (ms) of every second the charger has run so far (its @bench lines)."""
    import json

    out = []
    try:
        with open(charger.log_path, "rb") as f:
            for line in f:
                if line.startswith(b"@bench "):
                    out.append(json.loads(line[7:])["gap_ms"])
    except (OSError, ValueError):
        pass
    return out


class OcppRig:
    def __init__(self, tmp, **csms_kw):
        self.tmp = str(tmp)
        folder = os.path.join(self.tmp, "mosq")
        os.makedirs(folder, exist_ok=True)
        self.broker = Broker(folder=folder)
        self.broker.start()
        self.csms = Csms(**csms_kw).start()
        self.chargers = []
        self.clients = []

    def charger(self, serial, settings=None, password=None, start=True, url=None, tls_ca=None, args=()):
        """A charger and the vehicle's MQTT client (sim/<id>/ev, sim/<id>/ev/state)."""
        cl = CloudClient(self.broker.port, serial, topics=["sim/%s/ev/state" % serial])
        self.clients.append(cl)
        ch = OcppCharger(serial, self.csms.port, self.broker.port, os.path.join(self.tmp, serial), settings,
                         password, log_dir=self.tmp, url=url, tls_ca=tls_ca, args=args)
        self.chargers.append(ch)
        if start:
            ch.start()
        return ch, cl

    def close(self):
        for c in self.clients:
            try:
                c.close()
            except Exception:  # noqa: BLE001
                pass
        for ch in self.chargers:
            if ch.alive():
                try:
                    os.kill(ch.proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for ch in self.chargers:
            ch.close()
            print("---- %s log ----\n%s" % (ch.serial, ch.log_tail()))
        self.csms.stop()
        self.broker.close()
