# Home Assistant MQTT discovery (docs/home-assistant.md): provisioned with `ha_discovery` (and
# `ha_prefix`, default `homeassistant`), the charger announces one device with its entities as
# retained documents on `<ha_prefix>/<component>/<node_id>/<object_id>/config`, the schema of
# Home Assistant's MQTT
# integration. Every entity reads the topics the contract already has (the retained `state`, and
# `config/reported` for the max current): there is no second state topic. The controls publish on
# topics of their own under `<p>/<id>/ha/`, taken here and mapped onto the station's commands and
# settings, so bad input gets the contract's `rejected` event like any other.
#
# When: at every connect, and when Home Assistant says `online` on `<ha_prefix>/status` (it has
# restarted and may have lost them). Provisioned off again, or under another prefix, the documents
# announced before are removed (an empty retained message each) at the next connect: a record in
# flash (`ha.json`, the prefix announced) remembers them across the reboot that re-provisioning takes.
# Slow path (the backend's service); a few documents per call, and only while the outbox is short,
# so that the announcement never pushes the contract's own messages out of the link's bounded outbox.
import json

from firmware import protocol, text
from firmware.units import BAD_REQUEST, UNAUTHENTICATED, UNKNOWN_OP, is_number

PER_SERVICE = 2  # documents queued per service() call
OUTBOX_ROOM = 4  # ... and only while the link holds at most this many messages
RECORD = "ha.json"
MANUFACTURER = "evse-mpy"
MODEL = "IEC 61851 Mode 3 AC charger"
AUTH_ID = "ha"  # the auth id of a session that Home Assistant's authorize button granted

# The sensors, read from the retained `state`: (object_id, name, state field, index into it (-1: the
# field itself), device_class, unit, entity_category). A null in the state renders `None`, which Home
# Assistant shows as unknown; energy is reported in kWh from the Wh the contract carries.
DIAG = "diagnostic"
SENSORS = (
    ("mode", "Mode", "mode", -1, None, None, None),
    ("cp", "Control pilot", "cp", -1, None, None, DIAG),
    ("current_l1", "Current L1", "i_a", 0, "current", "A", None),
    ("current_l2", "Current L2", "i_a", 1, "current", "A", None),
    ("current_l3", "Current L3", "i_a", 2, "current", "A", None),
    ("voltage_l1", "Voltage L1", "v_v", 0, "voltage", "V", DIAG),
    ("voltage_l2", "Voltage L2", "v_v", 1, "voltage", "V", DIAG),
    ("voltage_l3", "Voltage L3", "v_v", 2, "voltage", "V", DIAG),
    ("power", "Power", "p_w", -1, "power", "W", None),
    ("energy", "Energy", "e_wh", -1, "energy", "kWh", None),
    ("session_energy", "Session energy", "session", -1, "energy", "kWh", None),
    ("offered_current", "Offered current", "offered_a", -1, "current", "A", None),
    ("current_limit", "Current limit", "limit_a", -1, "current", "A", None),
    ("limit_source", "Limit source", "limit_src", -1, None, None, DIAG),
    ("temperature", "Temperature", "temp_c", -1, "temperature", "°C", DIAG),
)


def template(field, idx, unit):
    """The value_template reading one field of the state."""
    v = "value_json." + field
    if field == "session":  # the open session's energy; 0 between sessions
        return "{{ ((%s.wh if %s else 0) / 1000) | round(3) }}" % (v, v)
    if unit == "kWh":
        return "{{ (%s / 1000) | round(3) }}" % v
    if idx >= 0:
        return "{{ %s[%d] if %s else none }}" % (v, idx, v)
    return "{{ %s }}" % v


# the controls: (component, object_id, name, payload)
BUTTONS = (
    ("button", "stop", "Stop charging", "stop"),
    ("button", "resume", "Resume charging", "resume"),
    ("button", "authorize", "Authorize", "authorize"),
)
N_ENTITIES = len(SENSORS) + 3 + len(BUTTONS)  # + faults (binary_sensor), enabled (switch), max current (number)
FIRST_CONTROL = len(SENSORS) + 1  # the switch, the number and the buttons: they command the charger


def node_id(serial):
    """The serial as a discovery topic's node_id: Home Assistant takes [a-zA-Z0-9_-] only."""
    out = []
    for ch in serial:
        out.append(ch if ("a" <= ch <= "z" or "A" <= ch <= "Z" or "0" <= ch <= "9" or ch in "_-") else "_")
    return "".join(out)


def valid_prefix(p):
    """A discovery prefix from provisioning: MQTT topic levels, no wildcards, no empty level."""
    return isinstance(p, str) and 0 < len(p) <= 64 and "+" not in p and "#" not in p and "\x00" not in p \
        and "" not in p.split("/")


class HomeAssistant:
    def __init__(self, station, link, topics, reject, applied, prefix, signed):
        """topics: protocol.Topics of the charger; reject(rel, code, detail, now) and applied(now):
        the backend's `rejected` event and its after-settings publication (config/reported, event,
        state); prefix: the discovery prefix, None when discovery is off (then only what an earlier
        provisioning announced is removed); signed(): True while a command key is provisioned (then
        the controls, which cannot carry a mac, are neither announced nor obeyed)."""
        self.station = station
        self.link = link
        self.t = topics
        self._reject = reject
        self._applied = applied
        self._signed = signed
        self.prefix = prefix
        # the controls' topics, as protocol.HA_IN_TOPICS spells them
        self.cmd_enabled, self.cmd_max_current, self.cmd_button = topics.inbound(True)[3:]
        self.node = node_id(station.serial)
        rec = station.store.read_json(RECORD, None)
        self.announced = rec.get("prefix") if isinstance(rec, dict) else None  # the prefix in flash
        self._jobs = []  # [kind "announce"/"remove", prefix, next index]
        if self.announced is not None and self.announced != prefix:
            self._schedule("remove", self.announced)
        self._cc = None
        self._removed = None  # a prefix removed this boot: removed again after every reconnect, as
        # what went out on a connection that dropped is lost (QoS 1 with a clean session)
        self.published = 0  # documents queued, for tests

    def topics(self):
        """What to subscribe (before the link starts)."""
        if self.prefix is None:
            return []
        return self.t.inbound(True)[3:] + [protocol.HA_STATUS % self.prefix]

    # ---- slow work ------------------------------------------------------------------------------
    def service(self, now):
        link = self.link
        cc = link.connect_count
        if cc != self._cc:  # (re)connected: the broker may have lost what it retained
            self._cc = cc
            if self.prefix is not None:
                self._schedule("announce", self.prefix)
            if self._removed is not None:
                self._schedule("remove", self._removed)
            for j in self._jobs:
                j[2] = 0  # what a dropped connection carried may be lost: from the start
        if self._jobs and link.connected:
            self._work()

    def _schedule(self, kind, prefix):
        for j in self._jobs:
            if j[1] == prefix:  # one job per prefix, from the start
                j[0] = kind
                j[2] = 0
                return
        self._jobs.append([kind, prefix, 0])

    def _work(self):
        link = self.link
        job = self._jobs[0]
        n = 0
        if job[0] == "announce" and job[2] == 0 and self.announced != job[1]:
            # noted before the first document goes out, so that a reboot half-way still knows what
            # to remove (an old prefix is removed first: one prefix in flash at a time)
            self.announced = job[1]
            self.station.store.write_json(RECORD, {"prefix": job[1]})
        while n < PER_SERVICE and job[2] < N_ENTITIES and link.pending() <= OUTBOX_ROOM:
            i = job[2]
            comp, obj, doc = self.document(i)
            topic = protocol.HA_CONFIG % (job[1], comp, self.node, obj)
            # with signed commands a control's topic is emptied: Home Assistant drops the entity
            off = job[0] == "remove" or (i >= FIRST_CONTROL and self._signed())
            payload = "" if off else json.dumps(doc)
            link.publish(topic, payload, True, 1, topic)  # keyed: a newer one of a topic replaces it
            self.published += 1
            job[2] = i + 1
            n += 1
        if job[2] >= N_ENTITIES:
            self._jobs.pop(0)
            if job[0] == "remove":
                self._removed = job[1]
                if job[1] == self.announced:
                    self.announced = None
                    self.station.store.remove(RECORD)

    # ---- the documents ---------------------------------------------------------------------------
    def _common(self, obj, name):
        st = self.station
        t = self.t
        return {
            "name": name,
            "unique_id": self.node + "_" + obj,
            "availability_topic": t.online,
            "payload_available": "online",
            "payload_not_available": "offline",
            "qos": 1,
            "device": {
                "identifiers": [st.serial],
                "name": "EV charger " + st.serial,
                "manufacturer": MANUFACTURER,
                "model": MODEL,
                "serial_number": st.serial,
                "sw_version": st.fw,
            },
            "origin": {"name": MANUFACTURER, "sw_version": st.fw},
        }

    def document(self, i):
        """Entity i: (component, object_id, discovery document)."""
        t = self.t
        ns = len(SENSORS)
        if i < ns:
            obj, name, field, idx, dc, unit, cat = SENSORS[i]
            comp = "sensor"
            d = self._common(obj, name)
            d["state_topic"] = t.state
            d["value_template"] = template(field, idx, unit)
            if dc is not None:
                d["device_class"] = dc
                d["state_class"] = "total_increasing" if dc == "energy" else "measurement"
            if unit is not None:
                d["unit_of_measurement"] = unit
            if cat is not None:
                d["entity_category"] = cat
            if obj == "mode":
                d["icon"] = "mdi:ev-station"
            return comp, obj, d
        i -= ns
        if i == 0:
            d = self._common("faults", "Faults")
            d["state_topic"] = t.state
            d["value_template"] = "{{ 'ON' if value_json.faults else 'OFF' }}"
            d["payload_on"] = "ON"
            d["payload_off"] = "OFF"
            d["device_class"] = "problem"
            d["json_attributes_topic"] = t.state
            d["json_attributes_template"] = "{{ {'faults': value_json.faults} | tojson }}"
            return "binary_sensor", "faults", d
        if i == 1:
            d = self._common("enabled", "Enabled")
            d["command_topic"] = self.cmd_enabled
            d["payload_on"] = "ON"
            d["payload_off"] = "OFF"
            d["state_topic"] = t.state
            d["value_template"] = "{{ 'ON' if value_json.enabled else 'OFF' }}"
            d["entity_category"] = "config"
            return "switch", "enabled", d
        if i == 2:
            d = self._common("max_current", "Max current")
            d["command_topic"] = self.cmd_max_current
            d["state_topic"] = t.config_reported  # the settings in effect, retained, no envelope
            d["value_template"] = "{{ value_json.max_current_a }}"
            d["min"] = 0
            d["max"] = self.station.hw_max_a
            d["step"] = 1
            d["mode"] = "box"
            d["unit_of_measurement"] = "A"
            d["device_class"] = "current"
            d["entity_category"] = "config"
            return "number", "max_current", d
        comp, obj, name, payload = BUTTONS[i - 3]
        d = self._common(obj, name)
        d["command_topic"] = self.cmd_button
        d["payload_press"] = payload
        return comp, obj, d

    # ---- inbound -----------------------------------------------------------------------------------
    def handle(self, topic, rel, payload, now):
        """A message on a topic that is not the contract's: Home Assistant's status or one of its
        controls. Returns True when it was one of ours."""
        if self.prefix is None:
            return False
        if topic == protocol.HA_STATUS % self.prefix:
            if payload == b"online":
                self._schedule("announce", self.prefix)
            return True
        if rel not in protocol.HA_IN_TOPICS:
            return False
        if self._signed():  # a side door around the mac that every `cmd` and `config` needs
            self._reject(rel, UNAUTHENTICATED, "Home Assistant controls are off while commands are signed", now)
            return True
        try:
            v = None if payload is None else text.decode(payload)
        except ValueError:
            v = None
        if v is None:
            self._reject(rel, BAD_REQUEST, "payload must be short UTF-8 text", now)
            return True
        st = self.station
        if rel == "ha/enabled":
            if v not in ("ON", "OFF"):
                self._reject(rel, BAD_REQUEST, "payload must be ON or OFF", now)
                return True
            self._set(rel, {"enabled": v == "ON"}, now)
        elif rel == "ha/max_current_a":
            try:
                a = protocol.loads(payload)
            except protocol.ProtocolError as e:
                self._reject(rel, e.code, e.detail, now)
                return True
            if not is_number(a):
                self._reject(rel, BAD_REQUEST, "payload must be a number of amperes", now)
                return True
            self._set(rel, {"max_current_a": a}, now)
        else:
            if v == "stop":
                err = st.stop(now)
            elif v == "resume":
                err = st.resume(now)
            elif v == "authorize":
                err = st.authorize(now, AUTH_ID)
            else:
                err = (UNKNOWN_OP, "press must be stop, resume or authorize")
            if err is not None:
                self._reject(rel, err[0], err[1], now)
        return True

    def _set(self, rel, doc, now):
        err = self.station.apply_settings(doc)
        if err is not None:
            self._reject(rel, err[0], err[1], now)
        else:
            self._applied(now)


def attach(cloud, prefix):
    """The MQTT backend's Home Assistant part (firmware/cloud.py loads this module only when it is
    provisioned, or documents announced before are still to be removed). Subscribes what it needs;
    call it before the link starts."""
    if prefix is not None and not valid_prefix(prefix):
        print("ha: ignoring ha_prefix %r: not a topic without wildcards or empty levels" % (prefix,))
        prefix = None
    h = HomeAssistant(cloud.station, cloud.link, cloud.t, cloud.reject, cloud._applied, prefix,
                      lambda: cloud.verifier is not None)
    for topic in h.topics():
        cloud.link.add_topic(topic)
    return h
