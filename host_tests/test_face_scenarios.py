# The local face on the simulated board in virtual time: the real app with the PN532 twin, the
# WS2812 pixel and the front button (the simulator's `button` op): the reader's fault does not stop a
# session, the button stops and resumes one, a long press while charging does not reset, a long
# press without a charging vehicle resets to the factory settings. Both runtimes.
from simrig import Rig

from firmware import panel as P


def charging(r):
    return r.contactor_out()


def test_a_dead_reader_is_reported_and_stops_nothing():
    r = Rig(settings={"max_current_a": 16}, tag="face-reader")
    r.plug_and_charge(max_a=16)
    r.run(8000, until=lambda: charging(r))
    r.run(500)
    assert charging(r) and r.app.panel.name == "charging"
    r.board.rfid.chip.mute = True  # a cut wire
    r.run(4000)
    assert r.ch.faults == ["reader"] and r.ch.mode == "connected_charging" and charging(r)
    assert r.app.panel.name == "charging"  # the LED shows what the vehicle gets
    r.board.rfid.chip.mute = False
    r.run(3000)
    assert r.ch.faults == [] and charging(r)


def test_a_tag_still_authorizes_through_the_reader_twin():
    r = Rig(settings={"auth_required": True, "local_auth_ids": ["04A1B2"]}, tag="face-tag")
    r.plug_and_charge(max_a=16)
    r.run(3000)
    assert r.app.panel.name == "waiting_for_auth"
    r.ev({"op": "tag", "id": "04A1B2"})
    r.run(8000, until=lambda: charging(r))
    assert charging(r) and r.ch.auth_id == "tag:04A1B2"


def test_the_button_stops_and_resumes_a_session():
    r = Rig(tag="face-button")
    r.plug_and_charge(max_a=16)
    r.run(8000, until=lambda: charging(r))
    sid = r.app.sessions.current["id"]
    r.ev({"op": "button", "ms": 200})
    r.run(8000, until=lambda: not charging(r))
    r.run(500)
    assert not charging(r) and r.ch.mode == "connected_finished" and r.app.panel.name == "paused"
    assert r.app.sessions.current["id"] == sid  # stopped, not ended
    r.ev({"op": "button", "ms": 200})
    r.run(20000, until=lambda: charging(r))  # the pilot's rest time before it offers again
    assert charging(r) and r.app.sessions.current["id"] == sid and r.app.panel.presses == 2


def test_a_long_press_while_charging_does_not_reset():
    r = Rig(settings={"max_current_a": 20}, tag="face-long")
    r.plug_and_charge(max_a=16)
    r.run(8000, until=lambda: charging(r))
    r.ev({"op": "button", "ms": 11000})
    r.run(10500)
    assert r.app.panel.name == "refused"
    r.run(3000)
    assert charging(r) and r.app.station.settings["max_current_a"] == 20 and r.app.panel.resets == 0


def test_a_long_press_without_a_charging_vehicle_resets_to_factory_settings():
    r = Rig(settings={"max_current_a": 20, "local_auth_ids": ["04A1B2"]}, tag="face-reset")
    r.run(1000)
    assert r.app.panel.name == "disconnected"
    r.ev({"op": "button", "ms": 10500})
    r.run(10200)
    assert r.app.panel.name == "factory_reset" and r.board.led.shown is P.WHITE
    try:
        r.run(P.CONFIRM_MS + 3000)
        raise AssertionError("no reset")
    except SystemExit as e:
        assert (e.args[0] if e.args else e.code) == 75  # the simulated board's reset
    s = r.app.store.read_json("settings.json")
    assert s["max_current_a"] == 16 and s["local_auth_ids"] == []
