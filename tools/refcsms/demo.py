"""`make sim-ocpp`: the reference central system balancing simulated chargers on one circuit.

Starts a throwaway mosquitto (the vehicles' link), tools/refcsms in this process on a free port
with --circuit-a, and N `tools/sim-charger --ocpp` processes; vehicles plug in one after the other
and one leaves; a line a second shows each charger's OCPP status and the current its PWM offers.
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import paho.mqtt.client as mqtt

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))

from refcloud.broker import Broker, free_port  # noqa: E402

from refcsms.csms import Csms  # noqa: E402


def amps_of_duty(duty):
    if duty is None or duty <= 0 or duty >= 100:
        return 0.0
    return round(duty * 0.6, 1) if duty <= 85 else round((duty - 64) * 2.5, 1)


class Vehicles:
    def __init__(self, port, ids):
        self.view = {i: {} for i in ids}
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sim-ocpp-vehicles")
        self.c.on_message = self._msg
        self.c.connect("127.0.0.1", port)
        for i in ids:
            self.c.subscribe("sim/%s/ev/state" % i, 1)
        self.c.loop_start()

    def _msg(self, c, u, m):
        cid = m.topic.split("/")[1]
        try:
            self.view[cid] = json.loads(m.payload)
        except ValueError:
            pass

    def op(self, cid, **doc):
        self.c.publish("sim/%s/ev" % cid, json.dumps(doc), qos=1)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chargers", type=int, default=3)
    ap.add_argument("--circuit-a", type=float, default=32.0)
    ap.add_argument("--duration", type=float, default=70.0, help="seconds (0: until Ctrl-C)")
    a = ap.parse_args(argv)
    ids = ["OCPP%03d" % (i + 1) for i in range(a.chargers)]
    broker = Broker().start()
    port = free_port()
    log = open(os.path.join(tempfile.gettempdir(), "sim-ocpp-csms.log"), "w")
    cs = Csms(port=port, circuit_a=a.circuit_a, balance_s=3.0, heartbeat_s=30, out=log)
    ready = threading.Event()
    threading.Thread(target=lambda: asyncio.run(cs.serve(ready)), daemon=True).start()
    ready.wait(10)
    state = tempfile.mkdtemp(prefix="sim-ocpp-")
    procs = []
    for cid in ids:
        args = [sys.executable, os.path.join(ROOT, "tools", "sim-charger"), "--id", cid,
                "--ocpp", "ws://127.0.0.1:%d/ocpp" % port, "--ev-broker", broker.address,
                "--state-dir", os.path.join(state, cid)]
        procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True))
    ev = Vehicles(broker.port, ids)
    # the script: a vehicle every 10 s, the first leaves at 50 s
    script = [(5 + 10 * i, cid, "plug") for i, cid in enumerate(ids)] + [(50, ids[0], "unplug")]
    print("circuit %.0f A, %d chargers; central system log: %s" % (a.circuit_a, len(ids), log.name))
    t0 = time.monotonic()
    try:
        while a.duration == 0 or time.monotonic() - t0 < a.duration:
            t = time.monotonic() - t0
            for s in [s for s in script if s[0] <= t]:
                script.remove(s)
                if s[2] == "plug":
                    ev.op(s[1], op="plug", cable_a=32, phases=3, max_a=32)
                    ev.op(s[1], op="charge", on=True)
                else:
                    ev.op(s[1], op="unplug")
            cols = []
            total = 0.0
            for cid in ids:
                v = ev.view.get(cid) or {}
                amps = amps_of_duty(v.get("duty")) if v.get("plugged") else 0.0
                total += amps
                st = cs.states.get(cid, {})
                cols.append("%s %-13s %5.1f A" % (cid, st.get("status") or "-", amps))
            print("%5.1f s  %s  | sum %5.1f A" % (t, "  ".join(cols), total), flush=True)
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        ev.close()
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        broker.stop()
        log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
