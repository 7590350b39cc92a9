# The backend interface (firmware/station.py) through what a backend uses: the status snapshot and
# its version, settings that persist, commands, the hand-over of events and session records, and
# the lifetime energy. A real Station on a temporary flash; the backend is a recorder of what the
# station hands it. Runs on CPython and on the MicroPython unix port.
from firmware.station import Station
from firmware.storage import Storage
from firmware.ticks import PERIOD, ticks_add
from mpcompat import TempDir
from station_caps import BoardCaps, Meter

T0 = PERIOD - 1000


class Backend:
    def __init__(self):
        self.events = []
        self.sessions = []

    def emit_event(self, etype, fields):
        self.events.append((etype, fields))

    def send_session(self, rec):
        self.sessions.append(rec)


def _station(store=None, first=None, restarts=None):
    store = store or Storage(TempDir("station").path)
    on_restart = restarts.append if restarts is not None else None
    return Station(store, BoardCaps(energy_wh=0, unix_time=None), "ST01", 3, T0, None, first, on_restart), store


class Clock:
    def __init__(self):
        self.now = T0

    def tick(self, st, cp, ms):
        """The core's ticks with the vehicle's pilot letter, as the board would read it."""
        for _ in range(ms // 10):
            self.now = ticks_add(self.now, 10)
            st.inp.cp = cp
            st.charger.tick(self.now, st.inp)
        return self.now


def test_status_snapshot():
    st, _ = _station()
    s = st.status(T0)
    for k in ("mode", "cp", "pwm_duty", "offered_a", "limit_a", "limit_src", "lease_s", "contactor", "phases",
              "i_a", "v_v", "p_w", "e_wh", "pp_a", "temp_c", "session", "auth", "standalone", "enabled",
              "faults", "fw"):
        assert k in s, k
    assert "v" not in s and "seq" not in s  # the envelope is the backend's
    assert s["mode"] == "disconnected" and s["pwm_duty"] == 100 and s["session"] is None and s["temp_c"] is None
    st.readings(32, 251, None)
    assert st.status(T0)["pp_a"] == 32 and st.status(T0)["temp_c"] == 25.1
    st.readings(32, None, 32)
    assert st.status(T0)["pp_a"] is None and st.status(T0)["temp_c"] is None  # tethered; sensor fault


def test_status_version_follows_what_is_reported():
    st, _ = _station()
    v = st.status_version()
    assert st.status_version() == v
    st.inp.contactor_closed = True
    assert st.status_version() > v
    v = st.status_version()
    assert st.apply_settings({"max_current_a": 10}) is None
    assert st.status_version() > v
    v = st.status_version()
    assert st.apply_settings({"max_current_a": 10}) is None and st.status_version() == v  # no change


def test_settings_persist_and_bad_documents_change_nothing():
    st, store = _station(first={"max_current_a": 20})
    assert st.settings["max_current_a"] == 20
    assert st.apply_settings({"max_current_a": 12, "auth_required": True}) is None
    again, _ = _station(store, first={"max_current_a": 20})  # first-boot settings only count once
    assert again.settings["max_current_a"] == 12 and again.settings["auth_required"] is True
    before = store.read_bytes("settings.json")
    for doc in ({"max_current_a": 99}, {"bogus": 1}, {"max_current_a": 8, "enabled": "yes"}):
        err = again.apply_settings(doc)
        assert err is not None and err[0] in ("bad_request", "out_of_range"), (doc, err)
    assert again.settings["max_current_a"] == 12 and store.read_bytes("settings.json") == before


def test_commands_reach_the_core():
    restarts = []
    st, _ = _station(restarts=restarts)
    assert st.authorize(T0, "app:1") is None and st.charger.auth_state == "authorized"
    assert st.authorize(T0, "")[0] == "bad_request"
    assert st.deauthorize(T0) is None and st.charger.auth_state == "idle"
    assert st.set_limit(T0, 10, 60, 1)[0] == "not_allowed"  # standalone by default
    st.apply_settings({"standalone": False})
    assert st.set_limit(T0, 10, 60, 1) is None and st.charger.lease.grid_da == [100, 100, 100]
    assert st.restart("c-7") is None and restarts == ["c-7"]


def test_events_and_session_records_reach_the_backend():
    st, _ = _station()
    be = Backend()
    clock = Clock()
    now = clock.tick(st, "B", 100)  # plugged: a session opens (no authorization needed)
    assert st.drain_events(now, be) is True and st.sessions.current is not None
    sid = st.sessions.current["id"]
    assert be.events == [("session_started", {"session_id": sid})]
    assert st.status(now)["session"]["id"] == sid
    now = clock.tick(st, "A", 100)
    assert st.drain_events(now, be) is False and st.sessions.current is None
    assert be.events[-1] == ("session_ended", {"session_id": sid})
    assert len(be.sessions) == 1 and be.sessions[0]["id"] == sid and be.sessions[0]["stop_reason"] == "ev_unplugged"
    assert [r["id"] for r in st.pending_sessions(8)] == [sid]
    assert st.ack_session(sid) is True and st.ack_session(sid) is False and st.pending_sessions(8) == []


def test_lifetime_energy_never_decreases_and_persists():
    st, store = _station()
    m = Meter(energy_wh=0, v_v=(230.0, 230.0, 230.0))
    m.energy_wh = 25
    st.meter_read(m)
    assert st.energy_wh_persisted == 25  # >= 10 Wh since the last write, no session open
    m.energy_wh = 20  # a meter that went back (a chip reset) does not take the counter back
    st.meter_read(m)
    assert st.inp.energy_wh == 25
    m.ok = False
    m.energy_wh = 1000
    st.meter_read(m)
    assert st.inp.energy_wh == 25 and not st.inp.meter_ok  # a bad read adds nothing
    again, _ = _station(store)
    assert again.energy_wh_persisted == 25 and again.status(T0)["e_wh"] == 25


def test_factory_reset_erases_the_owner_keeps_the_board():
    st, store = _station(first={"max_current_a": 10, "local_auth_ids": ["04A1B2"]})
    st.inp.contactor_closed = True  # the board sees the contactor closed: a vehicle charges
    assert st.factory_reset()[0] == "busy" and st.settings["max_current_a"] == 10
    keep = {"boot.json": {"boot": 7}, "energy.json": {"wh": 1234}, "msgctr.json": {"ctr": 9, "config": None},
            "sess_0000000001_000001.json": {"id": "S-1"}}
    for name in keep:
        store.write_json(name, keep[name])
    st.inp.contactor_closed = False
    assert st.factory_reset() is None
    s = store.read_json("settings.json")
    assert s["local_auth_ids"] == [] and s["max_current_a"] == 16 and s["standalone"] is True
    assert st.settings == s
    st.charger.present_tag(T0, "04A1B2")  # the erased local list is the core's too
    assert st.charger.auth_state == "denied"
    for name in keep:
        assert store.read_json(name) == keep[name]
