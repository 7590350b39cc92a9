"""The one-process fleet mode (tools/sim-fleet, board/sim/fleet.py) against a real mosquitto and the
reference cloud (tools/refcloud): 20 chargers in 2 MicroPython processes, each charger the real App
with its own simulated board and its own MQTT connection (board/sim/mqtt_poll.py), on 4 circuits of 5
behind 32 A breakers, every vehicle asking for 32 A on 3 phases.

1. Every charger comes online on a connection of its own and takes the cloud's retained config.
2. Sharing: on every circuit all five vehicles draw 6.4 A (32 / 5), and no circuit ever exceeds its
   breaker (what the simulated vehicles really draw, `sim/<id>/ev/state`, mapped to grid phases).
3. Breaker step 32 A -> 16 A on every circuit: two chargers at 8 A and three paused per circuit within
   CONVERGE_S, and no sample later than FOLLOW_S after the step above 16 A (refcloud.fleet's
   check_overload, as make bench counts fleet_overload_events).
4. A commanded `restart` reboots that charger alone (boot event, reset cause `soft`), which comes
   back online and configured while the other 19 go on.
"""

import json
import os
import sys
import time

CPYTHON_ONLY = "real mosquitto, MicroPython fleet processes, paho-mqtt"

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))

from e2e import wait_until  # noqa: E402
from refcloud.balancer import BalancerParams  # noqa: E402
from refcloud.fleet import Fleet, check_overload  # noqa: E402

N = 20
PER_CIRCUIT = 5
PERIOD_S = 1.5
FOLLOW_S = PERIOD_S + 5 + 5 + 1  # one round + PWM raise interval + vehicle follow + sampling
CONVERGE_S = 35.0


def write_inst(path):
    rots = ("L1L2L3", "L2L3L1", "L3L1L2")
    circuits = []
    for c in range(N // PER_CIRCUIT):
        circuits.append({"name": "c%d" % c, "breaker_a": 32, "chargers": [
            {"serial": "FOP%04d" % i, "phase_rotation": rots[i % 3]}
            for i in range(c * PER_CIRCUIT, (c + 1) * PER_CIRCUIT)]})
    doc = {"name": "one-process fleet", "grid": "TN", "main_breaker_a": 32 * len(circuits) + 32,
           "defaults": {"fallback_current_a": 6, "fallback_phases": 3, "max_current_a": 32, "state_interval_s": 2},
           "circuits": circuits}
    with open(path, "w") as f:
        json.dump(doc, f)




def test_twenty_chargers_in_two_processes_balanced_without_overload(tmp_path):
    inst = str(tmp_path / "inst.json")
    write_inst(inst)
    params = BalancerParams(period_s=PERIOD_S, ttl_s=20, hold_s=10, min_run_s=600, stale_s=15)
    fleet = Fleet(inst, params=params, workdir=str(tmp_path / "run"), quiet=True)
    online = {}
    try:
        fleet.start(chargers=False)

        def on_online(c, u, m):
            online.setdefault(m.topic.split("/")[1], []).append(m.payload)
        fleet.obs.message_callback_add("evse/+/online", on_online)
        fleet.obs.subscribe("evse/+/online", qos=1)
        fleet.start_fleet(procs=2)
        serials = list(fleet.inst.chargers)
        snap = fleet.cloud.snapshot

        # 1. online, configured (standalone false from the retained config), vehicle sides connected
        wait_until(lambda: all(c["fresh"] and c["standalone"] is False for c in snap()["chargers"].values()), 30,
             "every charger online and configured")
        wait_until(lambda: all(s in fleet.truth for s in serials), 10, "every vehicle side publishing")
        assert sorted(s for s, v in online.items() if b"online" in v) == sorted(serials)

        # 2. sharing at 32 A per circuit
        for s in serials:
            fleet.arrive(s)
        samples = []

        def sample():
            s, sn = fleet.sample()
            samples.append(s)
            return s, sn

        def shares(per, paused):
            s, sn = sample()
            for c in fleet.inst.circuits:
                drawn = sorted(max(s["draw"].get(x, [0, 0, 0])) for x in c.serials)
                want = [0.0] * paused + [per] * (PER_CIRCUIT - paused)
                if any(abs(a - b) > 0.3 for a, b in zip(drawn, want, strict=True)):
                    return False
            return True
        wait_until(lambda: shares(6.4, 0), 40, "every circuit shared 5 x 6.4 A")
        assert not check_overload(fleet.recording(), FOLLOW_S), "a circuit above 32 A"

        # 3. breaker step
        fleet.mark("step")
        for c in fleet.inst.circuits:
            fleet.cloud.set_breaker(c.name, 16)
        t_step = fleet.elapsed()
        wait_until(lambda: shares(8.0, 3), CONVERGE_S, "two chargers at 8 A and three paused per circuit")
        end = time.monotonic() + 3  # hold: it stays there
        while time.monotonic() < end:
            assert shares(8.0, 3)
            time.sleep(0.25)
        over = check_overload(fleet.recording(), FOLLOW_S)
        assert not over, over[:3]
        assert any(s["t"] > t_step + FOLLOW_S for s in samples) or fleet.elapsed() < t_step + FOLLOW_S

        # 4. one charger restarted by command: it alone reboots and comes back
        target = serials[7]
        booted = len([e for e in fleet.cloud.events if e[1] == target and e[2].get("type") == "boot"])
        fleet.cloud.command(target, "restart")

        def rebooted():
            evs = [e[2] for e in fleet.cloud.events if e[1] == target and e[2].get("type") == "boot"]
            return len(evs) > booted and evs[-1].get("reset_cause") == "soft"
        wait_until(rebooted, 20, "the boot event of the restarted charger")
        wait_until(lambda: snap()["chargers"][target]["fresh"], 10, "the restarted charger online again")
        assert all(c["fresh"] for c in snap()["chargers"].values())
    finally:
        log = os.path.join(fleet.dir, "sim-fleet.log")
        fleet.stop()
    with open(log) as f:
        lines = [json.loads(x[7:]) for x in f if x.startswith("@fleet ")]
    last = {}
    for d in lines:
        last[d["name"]] = d
    assert sorted(last) == ["fleet0", "fleet1"] and sum(d["n"] for d in last.values()) == N
    assert sum(d["crashes"] for d in last.values()) == 0
    assert sum(d["reboots"] for d in last.values()) == 1  # the commanded restart, nothing else
    # every charger said goodbye on the clean stop: offline after its last online
    assert all(v and v[-1] == b"offline" for v in online.values()), {s: v[-2:] for s, v in online.items()}


LINK_SCRIPT = r"""
import sys, time
from board.sim.mqtt_poll import Hub
hub = Hub(sys.argv[1], int(sys.argv[2]))
lk = hub.link("PL1", ["t/in"], "t/online", inbox_items=4)
lk.start()
t0 = time.ticks_ms()
while not lk.connected and time.ticks_diff(time.ticks_ms(), t0) < 5000:
    hub.step(10)
print("UP", lk.connect_count)
got = []
end = time.ticks_add(time.ticks_ms(), 10000)
while len(got) < 40 and time.ticks_diff(end, time.ticks_ms()) > 0:
    hub.step(20)  # an app that takes one message per 20 ms: the broker has to hold the rest
    m = lk.get()
    if m:
        got.append(m[1].decode())
print("GOT", ",".join(got))
for i in range(10):
    lk.publish("t/out", "m%d" % i, False, 1)
lk.publish("t/state", "s1", True, 1, "state")
lk.publish("t/state", "s2", True, 1, "state")  # same key, not yet sent: replaces s1
while lk.pending() or lk._inflight:
    hub.step(10)
st = lk.status()
print("STATUS", st["dropped_in"], st["dropped_out"], st["connect_count"])
lk.shutdown()
while not lk.closed():
    hub.step(10)
print("BYE")
"""


def test_poll_link_qos1_back_pressure_coalescing_and_goodbye(tmp_path):
    """board/sim/mqtt_poll.py alone against mosquitto: 40 QoS 1 messages into an inbox of 4 drained
    slowly all arrive, in order, none dropped; 10 QoS 1 publishes arrive; two `state` snapshots
    queued together coalesce to the newest; `online` after the connect, `offline` on shutdown."""
    import subprocess

    import paho.mqtt.client as mqtt
    from refcloud.broker import Broker

    script = tmp_path / "link.py"
    script.write_text(LINK_SCRIPT)
    broker = Broker().start()
    seen = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pl-test")
    c.on_message = lambda cl, u, m: seen.append((m.topic, m.payload.decode()))
    c.connect("127.0.0.1", broker.port)
    c.subscribe([("t/out", 1), ("t/state", 1), ("t/online", 1)])
    c.loop_start()
    env = dict(os.environ, MICROPYPATH=ROOT + ":.frozen")
    mp = os.path.join(ROOT, ".venv", "bin", "micropython")
    p = subprocess.Popen([mp, str(script), "127.0.0.1", str(broker.port)], env=env, stdout=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout.readline().split() == ["UP", "1"]
        wait_until(lambda: ("t/online", "online") in seen, 5, "online")
        for i in range(40):
            c.publish("t/in", "n%d" % i, qos=1)
        out, _ = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
        time.sleep(0.3)
        c.loop_stop()
        broker.stop()
    lines = dict((x + " ").split(" ", 1) for x in out.strip().splitlines())
    assert lines["GOT"].strip().split(",") == ["n%d" % i for i in range(40)], out
    assert lines["STATUS"].split() == ["0", "0", "1"]
    assert "BYE" in lines
    assert [m for t, m in seen if t == "t/out"] == ["m%d" % i for i in range(10)]
    assert [m for t, m in seen if t == "t/state"] == ["s2"]
    assert [m for t, m in seen if t == "t/online"] == ["online", "offline"]
