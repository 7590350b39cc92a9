# Home Assistant MQTT discovery (firmware/ha.py) on the real Station and Cloud with the recording
# link of cloud_rig: the documents field by field against Home Assistant's discovery schema, their
# pacing, re-publication on connect and on Home Assistant's `online`, removal after re-provisioning,
# the controls with good and bad payloads. Both runtimes.
import gc
import json

from cloud_rig import SERIAL, BoardCaps, QueueLink

from firmware.cloud import Cloud
from firmware.station import Station
from firmware.storage import Storage
from mpcompat import TempDir

gc.collect()
from firmware import ha as HA  # noqa: E402

# one test holds the 21 decoded discovery documents at once beside the Station, the Cloud and the HA
# module (loaded only when provisioned): more than the 112K the firmware alone gets
MP_HEAP = "128K"

BASE = "evse/%s/" % SERIAL
COMPONENTS = ("sensor", "binary_sensor", "switch", "number", "button")
# device classes of Home Assistant's sensor and number entities and the units they take
UNITS = {"current": ("A", "mA"), "voltage": ("V", "mV"), "power": ("W", "kW"), "energy": ("Wh", "kWh", "MWh"),
         "temperature": ("°C", "°F", "K")}
STATE_CLASSES = ("measurement", "total", "total_increasing")
CATEGORIES = ("config", "diagnostic")


class Rig:
    def __init__(self, ha_prefix="homeassistant", root=None):
        self.root = root or TempDir("ha").path
        self.make(ha_prefix)

    def make(self, ha_prefix="homeassistant"):
        """A (re)boot with this provisioning: ha_prefix None = discovery off."""
        store = Storage(self.root)
        self.st = Station(store, BoardCaps("power_on"), SERIAL, 3, 0, None, {"standalone": True})
        self.st.readings(0, 250, None)
        self.link = QueueLink()
        self.cloud = Cloud(self.st, self.link, "evse", ha_prefix)
        self.now = 1000

    def connect(self):
        self.link.connected = True
        self.link.connect_count += 1

    def run(self, n=40, drain=True):
        """n slow works; the link sends everything queued between two (drain). Returns what went to
        a topic outside the contract's (the discovery documents), in order."""
        sent = []
        for _ in range(n):
            self.now += 50
            self.cloud.service(self.now)
            assert len(self.link._out) <= HA.OUTBOX_ROOM + HA.PER_SERVICE + 3
            if drain:
                for t, p, r, _k, _q in self.link._out:
                    if not t.startswith(b"evse/"):
                        sent.append((t.decode(), p, r))
                self.link._out = []
                gc.collect()
        return sent

    def discovery(self, sent):
        return [(t, p, r) for t, p, r in sent if t.startswith("homeassistant/")]

    def deliver(self, topic, payload):
        self.cloud.handle(topic, payload, self.now)
        out = [(t.decode(), p) for t, p, _r, _k, _q in self.link._out]
        self.link._out = []
        return out


def rejected(out):
    res = []
    for t, p in out:
        if t == BASE + "event":
            d = json.loads(p)
            if d["type"] == "rejected":
                res.append((d["topic"], d["error"]))
    return res


def template_fields(tpl):
    """The value_json.<field> names a template reads."""
    names = []
    i = tpl.find("value_json.")
    while i >= 0:
        j = i + len("value_json.")
        k = j
        while k < len(tpl) and (tpl[k].isalpha() or tpl[k] == "_"):
            k += 1
        names.append(tpl[j:k])
        i = tpl.find("value_json.", k)
    return names


def test_off_unless_provisioned_and_nothing_subscribed():
    r = Rig(None)
    assert r.cloud.ha is None
    assert all("/ha/" not in t and not t.startswith("homeassistant") for t in r.link.topics), r.link.topics
    r.connect()
    assert r.discovery(r.run(10)) == []


def test_on_at_boot_subscribes_the_controls_and_ha_status():
    r = Rig()
    for t in (BASE + "ha/enabled", BASE + "ha/max_current_a", BASE + "ha/button", "homeassistant/status"):
        assert t in r.link.topics, (t, r.link.topics)


def test_documents_follow_the_discovery_schema():
    r = Rig()
    assert r.discovery(r.run(5)) == []  # nothing while the link is down
    r.connect()
    docs = r.discovery(r.run(40))
    assert len(docs) == HA.N_ENTITIES == 21
    status = r.st.status(r.now)
    reported = r.st.settings
    seen_ids = []
    by_obj = {}
    for topic, payload, retain in docs:
        assert retain
        parts = topic.split("/")
        assert len(parts) == 5 and parts[0] == "homeassistant" and parts[4] == "config", topic
        comp, node, obj = parts[1], parts[2], parts[3]
        assert comp in COMPONENTS and node == SERIAL, topic
        d = json.loads(payload)
        by_obj[obj] = (comp, d)
        assert d["unique_id"] == SERIAL + "_" + obj and d["unique_id"] not in seen_ids
        seen_ids.append(d["unique_id"])
        assert isinstance(d["name"], str) and d["name"]
        assert d["availability_topic"] == BASE + "online"
        assert d["payload_available"] == "online" and d["payload_not_available"] == "offline"
        dev = d["device"]
        assert dev["identifiers"] == [SERIAL] and dev["sw_version"] == r.st.fw
        assert dev["manufacturer"] and dev["model"] and dev["name"]
        if "entity_category" in d:
            assert d["entity_category"] in CATEGORIES
        if "state_topic" in d:
            assert d["state_topic"] in (BASE + "state", BASE + "config/reported")
            source = status if d["state_topic"] == BASE + "state" else reported
            fields = template_fields(d["value_template"])
            assert fields, d["value_template"]
            for f in fields:
                assert f in source, (obj, f)  # the template reads what the topic really carries
        if comp == "sensor":
            assert d["state_topic"] == BASE + "state"
            dc = d.get("device_class")
            if dc is not None:
                assert d["unit_of_measurement"] in UNITS[dc], (obj, dc)
                assert d["state_class"] in STATE_CLASSES
        if comp in ("switch", "number", "button"):
            assert d["command_topic"].startswith(BASE + "ha/")
            assert d["command_topic"] in r.link.topics  # subscribed
    assert by_obj["energy"][1]["device_class"] == "energy"
    assert by_obj["energy"][1]["state_class"] == "total_increasing"
    assert by_obj["energy"][1]["unit_of_measurement"] == "kWh"
    assert by_obj["session_energy"][1]["device_class"] == "energy"
    comp, f = by_obj["faults"]
    assert comp == "binary_sensor" and f["device_class"] == "problem" and f["json_attributes_topic"] == BASE + "state"
    comp, n = by_obj["max_current"]
    assert comp == "number" and n["min"] == 0 and n["max"] == 32 and n["step"] == 1
    assert n["state_topic"] == BASE + "config/reported" and n["unit_of_measurement"] == "A"
    comp, s = by_obj["enabled"]
    assert comp == "switch" and s["payload_on"] == "ON" and s["payload_off"] == "OFF"
    presses = sorted(by_obj[o][1]["payload_press"] for o in ("stop", "resume", "authorize"))
    assert presses == ["authorize", "resume", "stop"]
    for o in ("mode", "cp", "current_l1", "current_l2", "current_l3", "voltage_l1", "power", "offered_current",
              "current_limit", "limit_source", "temperature"):
        assert by_obj[o][0] == "sensor", o
    assert r.discovery(r.run(40)) == []  # announced once per occasion


def test_pacing_leaves_room_for_the_contract():
    r = Rig()
    r.connect()
    r.link._out = [(b"x", b"{}", False, None, 1)] * 6  # a backlog: the link is slow
    r.run(10, drain=False)
    assert not any(t.startswith(b"homeassistant/") for t, *_ in r.link._out)  # nothing added
    r.link._out = []
    counts = []
    for _ in range(20):
        r.now += 50
        r.cloud.service(r.now)
        counts.append(sum(1 for t, *_ in r.link._out if t.startswith(b"homeassistant/")))
        r.link._out = []
    assert max(counts) == HA.PER_SERVICE and sum(counts) == HA.N_ENTITIES


def test_republished_on_connect_and_on_home_assistant_online():
    r = Rig()
    r.connect()
    assert len(r.discovery(r.run(40))) == HA.N_ENTITIES
    r.deliver("homeassistant/status", b"offline")
    assert r.discovery(r.run(20)) == []
    r.deliver("homeassistant/status", b"online")
    assert len(r.discovery(r.run(40))) == HA.N_ENTITIES
    r.connect()  # a reconnect: the broker may have lost them
    assert len(r.discovery(r.run(40))) == HA.N_ENTITIES


def test_provisioned_off_removes_them_at_the_next_boot():
    r = Rig()
    r.connect()
    docs = r.discovery(r.run(40))
    topics = sorted(t for t, _, _ in docs)
    r.make(None)  # re-provisioned without discovery: the record in flash says what to remove
    assert r.cloud.ha is not None and r.cloud.ha.topics() == []
    r.connect()
    gone = r.discovery(r.run(40))
    assert sorted(t for t, _, _ in gone) == topics and all(p == b"" and ret for _, p, ret in gone)
    assert r.st.store.read_json("ha.json", None) is None
    r.make(None)  # nothing left to do: the module is not even loaded
    assert r.cloud.ha is None


def test_a_reboot_half_way_through_an_announcement_still_removes_all():
    r = Rig()
    r.connect()
    assert 0 < len(r.discovery(r.run(3))) < HA.N_ENTITIES
    r.make(None)
    r.connect()
    gone = r.discovery(r.run(40))
    assert len(gone) == HA.N_ENTITIES and all(p == b"" for _, p, _ in gone)


def test_a_new_prefix_removes_the_old_documents_first():
    r = Rig()
    r.connect()
    r.run(40)
    r.make("ha/site1")
    r.connect()
    sent = r.run(60)
    old = [(t, p) for t, p, _ in sent if t.startswith("homeassistant/")]
    new = [(t, p) for t, p, _ in sent if t.startswith("ha/site1/")]
    assert len(old) == HA.N_ENTITIES and all(p == b"" for _, p in old)
    assert len(new) == HA.N_ENTITIES and all(json.loads(p)["device"]["identifiers"] == [SERIAL] for _, p in new)
    first_new = [i for i, (t, _, _) in enumerate(sent) if t.startswith("ha/site1/")][0]
    last_old = [i for i, (t, _, _) in enumerate(sent) if t.startswith("homeassistant/")][-1]
    assert last_old < first_new
    assert "ha/site1/status" in r.link.topics and "homeassistant/status" not in r.link.topics


def test_the_controls_map_onto_the_station():
    r = Rig()
    r.connect()
    r.run(40)
    out = r.deliver(BASE + "ha/enabled", b"OFF")
    assert r.st.settings["enabled"] is False and rejected(out) == []
    assert BASE + "config/reported" in [t for t, _ in out]  # Home Assistant's number/switch see it
    r.deliver(BASE + "ha/enabled", b"ON")
    assert r.st.settings["enabled"] is True
    out = r.deliver(BASE + "ha/max_current_a", b"10")
    assert r.st.settings["max_current_a"] == 10 and rejected(out) == []
    r.deliver(BASE + "ha/max_current_a", b"12.5")
    assert r.st.settings["max_current_a"] == 12.5
    r.deliver(BASE + "ha/button", b"authorize")
    assert r.st.charger.auth_state == "authorized" and r.st.charger.auth_id == "ha"
    for press in (b"stop", b"resume"):
        assert rejected(r.deliver(BASE + "ha/button", press)) == []


def test_bad_control_payloads_are_rejected_and_change_nothing():
    r = Rig()
    before = json.dumps(sorted(r.st.settings.items()))
    cases = (
        ("ha/enabled", b"on", "bad_request"),
        ("ha/enabled", b"", "bad_request"),
        ("ha/enabled", None, "bad_request"),  # too large for the link
        ("ha/enabled", b"\xff\xfe", "bad_request"),
        ("ha/max_current_a", b"99", "out_of_range"),
        ("ha/max_current_a", b"-1", "out_of_range"),
        ("ha/max_current_a", b"ten", "bad_json"),
        ("ha/max_current_a", b'"10"', "bad_request"),
        ("ha/max_current_a", b"true", "bad_request"),
        ("ha/max_current_a", b"NaN", "bad_json"),
        ("ha/button", b"explode", "unknown_op"),
        ("ha/button", b"\xc3", "bad_request"),
    )
    for rel, payload, code in cases:
        assert rejected(r.deliver(BASE + rel, payload)) == [(rel, code)], (rel, payload)
    assert json.dumps(sorted(r.st.settings.items())) == before
    assert r.cloud.stats["errors"] == 0


def test_with_signed_commands_the_controls_are_neither_announced_nor_obeyed():
    from firmware import signed

    r = Rig()
    r.cloud.verifier = signed.Verifier(r.st.store, bytes(range(32)))  # a provisioned cmd_key
    r.connect()
    docs = {t: p for t, p, _r in r.discovery(r.run(40))}
    assert len(docs) == HA.N_ENTITIES
    controls = [t for t in docs if t.split("/")[1] in ("switch", "number", "button")]
    assert len(controls) == 5 and all(docs[t] == b"" for t in controls)  # emptied: not in Home Assistant
    assert all(docs[t] != b"" for t in docs if t not in controls)  # the sensors still are
    before = json.dumps(sorted(r.st.settings.items()))
    for rel, payload in (("ha/enabled", b"OFF"), ("ha/max_current_a", b"6"), ("ha/button", b"authorize"),
                         ("ha/button", b"stop")):
        assert rejected(r.deliver(BASE + rel, payload)) == [(rel, "unauthenticated")], rel
    assert json.dumps(sorted(r.st.settings.items())) == before
    assert r.st.charger.auth_state != "authorized"


def test_a_bad_prefix_turns_discovery_off():
    for bad in ("", "a/+", "#", "/x", "x/", "a//b", "x" * 65, 7, ["homeassistant"]):
        assert not HA.valid_prefix(bad), bad
    assert HA.valid_prefix("homeassistant") and HA.valid_prefix("ha/site-1")
    r = Rig("bad/#")
    assert r.cloud.ha is not None and r.cloud.ha.prefix is None and r.cloud.ha.topics() == []
    r.connect()
    assert r.discovery(r.run(10)) == []


def test_node_id_keeps_only_what_home_assistant_takes():
    assert HA.node_id("ZAP012345") == "ZAP012345"
    assert HA.node_id("ab.c d/é") == "ab_c_d__"
