"""End to end through tools/sim-charger and a real mosquitto: the front button (the simulator's
`button` op) stops and resumes a session and `sim/<id>/led` follows the mode; Home Assistant discovery
documents are retained on the broker, re-published when Home Assistant says `online`, its controls
work and bad input is rejected, and a restart provisioned without discovery removes the documents.
"""

import json
import time

from e2e import FAST, retained, wait_until

CPYTHON_ONLY = "real broker and firmware processes"


def start(rig, serial, settings, extra, args=()):
    ch, _ = rig.charger(serial, settings, start=False, args=args)
    cl = rig.client(serial, topics=["evse/%s/#" % serial, "sim/%s/ev/state" % serial] + extra)
    ch.start()
    cl.wait("online", lambda p: p == b"online", 15)
    return ch, cl


def led(cl, code, since=0, timeout=10):
    return cl.wait("led", lambda d: d["code"] == code, timeout, since, "led " + code).d


def test_button_stops_and_resumes_and_the_led_follows(rig):
    ch, cl = start(rig, "E2EBTN", dict(FAST), ["sim/E2EBTN/led"])
    d = led(cl, "disconnected", timeout=15)
    assert d["rgb"] == [0, 80, 0] and d["off_ms"] == 0, d  # green, steady
    cl.plug()
    cl.ev_state(lambda d: d["contactor_out"] is True, 15)
    led(cl, "charging")
    sid = cl.state(lambda d: d["session"] is not None, 5)["session"]["id"]
    m = cl.mark()
    cl.ev("button", ms=200)
    cl.ev_state(lambda d: d["contactor_out"] is False, 8, m)
    st = cl.state(lambda d: d["mode"] == "connected_finished" and not d["contactor"], 5, m)
    assert st["session"]["id"] == sid, st  # stopped, not ended
    d = led(cl, "paused", m)
    assert d["rgb"] == [0, 0, 96] and d["on_ms"] == 1000 and d["off_ms"] == 1000, d
    m = cl.mark()
    cl.ev("button", ms=200)
    cl.ev_state(lambda d: d["contactor_out"] is True, 25, m)  # after the pilot's rest time
    led(cl, "charging", m)
    assert cl.state(lambda d: d["contactor"], 5, m)["session"]["id"] == sid
    assert not cl.all("event", m, lambda d: d["type"] == "session_ended")


def test_home_assistant_discovery_on_the_broker(rig):
    serial = "E2EHA"
    ch, cl = start(rig, serial, dict(FAST), ["homeassistant/#"], ["--ha-discovery"])
    port = rig.broker.port

    def configs(since=0):
        # the discovery documents only: this client also gets Home Assistant's own birth message
        # (homeassistant/status), which must not stand in for a missing document
        return {m.rel: m for m in cl.msgs[since:]
                if m.rel.startswith("homeassistant/") and m.rel.endswith("/config") and m.raw}

    wait_until(lambda: len(configs()) == 21, 25, "21 discovery documents")
    docs = configs()
    ids = set()
    for topic, m in docs.items():
        parts = topic.split("/")
        assert len(parts) == 5 and parts[2] == serial and parts[4] == "config", topic
        d = json.loads(m.raw)
        assert d["availability_topic"] == "evse/%s/online" % serial and d["device"]["identifiers"] == [serial]
        ids.add(d["unique_id"])
    assert len(ids) == 21
    energy = json.loads(docs["homeassistant/sensor/%s/energy/config" % serial].raw)
    assert energy["device_class"] == "energy" and energy["state_class"] == "total_increasing"
    # retained: a fresh subscriber (Home Assistant starting later) gets them from the broker
    got = retained(port, "homeassistant/switch/%s/enabled/config" % serial)
    assert got is not None and got[1] and json.loads(got[0])["command_topic"] == "evse/%s/ha/enabled" % serial

    # the controls
    m = cl.mark()
    cl.publish("ha/enabled", "OFF")
    cl.state(lambda d: d["enabled"] is False and d["mode"] == "disabled", 5, m)
    cl.publish("ha/enabled", "ON")
    cl.state(lambda d: d["enabled"] is True, 5, m)
    cl.publish("ha/max_current_a", "10")
    cl.wait("config/reported", lambda d: d["max_current_a"] == 10, 5, m)
    m = cl.mark()
    cl.publish("ha/max_current_a", "99")
    d = cl.event("rejected", lambda d: d["topic"] == "ha/max_current_a", 5, m)
    assert d["error"] == "out_of_range", d
    cl.publish("ha/button", "explode")
    assert cl.event("rejected", lambda d: d["topic"] == "ha/button", 5, m)["error"] == "unknown_op"

    # Home Assistant restarts: its birth message brings every document again
    m = cl.mark()
    cl.c.publish("homeassistant/status", "online", qos=1).wait_for_publish(5)
    # (paced: two documents a slow work while the link's outbox is short, which a loaded host slows)
    wait_until(lambda: len(configs(m)) == 21, 25, "re-published discovery")

    # provisioned off (a restart without --ha-discovery): removed from the broker
    ch.sigterm()
    ch2, cl2 = start(rig, serial, dict(FAST), ["homeassistant/#"])
    wait_until(lambda: len({m.rel for m in cl2.msgs if m.rel.endswith("/config") and not m.raw}) == 21, 25,
               "21 removals")  # each document's topic emptied
    fresh = rig.client(serial + "-ha", topics=["homeassistant/#"])  # Home Assistant starting now
    time.sleep(1.0)
    assert [m.rel for m in fresh.msgs if m.retain] == []
