# The charger as every backend sees it: who it is, one status snapshot, and the commands. It owns
# the charging core, the settings in effect (validated, persisted), the session log and the lifetime
# energy counter; the app (firmware/app.py) feeds it readings and runs it. A backend (the MQTT
# contract in firmware/cloud.py, an OCPP one next) holds a Station and a link, nothing else.
#
# Backend interface
#   identity      serial, fw, boot, reset_cause, boot_cmd_id
#   status(now)   the contract's `state` object (no envelope); status_version() changes with it
#   settings      the settings document in effect (a new dict on every change)
#   commands      authorize, deauthorize, stop, resume, set_limit, apply_settings, ack_session,
#                 pending_sessions, restart: each returns None or (error code, detail)
#   events        drain_events(now, backend) hands the core's events to backend.emit_event() and
#                 closed session records to backend.send_session()
from firmware import settings as settings_mod
from firmware.charger import Charger, Inputs
from firmware.iec61851 import HIGH, LOW
from firmware.sessions import SessionLog
from firmware.ticks import ticks_diff, ticks_ms
from firmware.units import NOT_ALLOWED
from firmware.version import VERSION as FW

ENERGY_STEP_WH = 10  # persist the lifetime counter when it grew by this much (or at a checkpoint)


def _r1(x):
    return None if x is None else round(x * 10) / 10


class Station:
    def __init__(self, store, board, serial, boot, boot_ms, boot_cmd_id=None, first_settings=None, on_restart=None):
        """board: its capabilities (hw_max_a, phases, tethered_a), meter, reset_cause() and, where it
        knows the time, unix_time(); boot: this boot's number; boot_cmd_id: the restart command this
        boot answers; on_restart(cmd_id): the app's restart sequence."""
        self.store = store
        self.serial = serial
        self.fw = FW
        self.boot = boot
        self.boot_ms = boot_ms
        self.reset_cause = board.reset_cause()
        self.boot_cmd_id = boot_cmd_id
        self.hw_max_a = board.hw_max_a
        self._board = board  # for its clock: unix_time() where it has one, looked up when needed
        self._on_restart = on_restart
        self.updater = None  # firmware/update.py Updater when an update key is provisioned
        self._clock_ms = None  # a clock set by the backend (OCPP currentTime) when there is no NTP
        self._clock_at = 0
        self.settings = self._load_settings(first_settings)
        e = store.read_json("energy.json", None) or {}
        self.energy_wh_persisted = int(e.get("wh", 0))
        self.meter = board.meter
        self.sessions = SessionLog(store, serial, boot)
        self.sessions.recover(self.energy_wh_persisted, self.ts())
        self.charger = Charger(self.settings, board.hw_max_a, board.phases, board.tethered_a)
        self.inp = Inputs()
        self.inp.energy_wh = self.energy_wh_persisted
        # readings of the app's slow work, as the contract reports them (set through readings())
        self.pp_a = None
        self.temp_c = None
        self._version = 0
        self._seen = (None, None, None, None)

    def _load_settings(self, first):
        # flash, else the first-boot document, else defaults
        hw = self.hw_max_a
        stored = self.store.read_json("settings.json", None)
        if stored is not None:
            return settings_mod.load(stored, hw)
        s = settings_mod.defaults(hw)
        if first:
            s = settings_mod.merged(s, first, hw)
        self.store.write_json("settings.json", s)
        return s

    def readings(self, pp_a, temp_dc, tethered):
        """The slow inputs as the contract reports them: pp_a null without a reading or with a
        tethered cable, temp_c in degC (null for a sensor fault)."""
        self.pp_a = pp_a if pp_a > 0 and tethered is None else None
        self.temp_c = None if temp_dc is None else temp_dc / 10

    # ---- time ---------------------------------------------------------------------------------------
    def ts(self, now_ms=None):
        f = getattr(self._board, "unix_time", None)
        v = f() if f is not None else None
        if v is None and self._clock_ms is not None:
            if now_ms is None:
                now_ms = ticks_ms()
            v = (self._clock_ms + ticks_diff(now_ms, self._clock_at)) // 1000
        return v

    def up_ms(self, now_ms):
        return ticks_diff(now_ms, self.boot_ms)

    # ---- status ---------------------------------------------------------------------------------------
    @property
    def contactor_closed(self):
        return self.inp.contactor_closed

    def status_version(self):
        """Changes whenever what status() reports changed beyond the live measurements."""
        seen = self._seen
        ch = self.charger
        closed = self.inp.contactor_closed
        up = self.updater.version if self.updater is not None else 0
        if ch.version != seen[0] or closed != seen[1] or self.settings is not seen[2] or up != seen[3]:
            self._seen = (ch.version, closed, self.settings, up)
            self._version += 1
        return self._version

    def status(self, now_ms):
        """The contract's `state` object (the envelope is the backend's)."""
        ch = self.charger
        s = self.settings
        m = self.meter
        if ch.pilot_mode == HIGH:
            duty = 100
        elif ch.pilot_mode == LOW:
            duty = 0
        else:
            duty = ch.duty_pm / 10
        left = ch.lease_ms_left
        ok = bool(getattr(m, "ok", False))
        return {
            "mode": ch.mode,
            "cp": ch.cp_name,
            "pwm_duty": duty,
            "offered_a": ch.offered_da / 10,
            "limit_a": ch.limit_da / 10,
            "limit_src": ch.limit_src,
            "lease_s": None if left is None else (left + 999) // 1000,
            "contactor": bool(self.inp.contactor_closed),
            "phases": ch.phases,
            "i_a": [_r1(x) for x in m.i_a] if ok else None,
            "v_v": [_r1(x) for x in m.v_v] if ok else None,
            "p_w": int(m.p_w) if ok and m.p_w is not None else None,
            "e_wh": self.energy_wh_persisted,
            "pp_a": self.pp_a,
            "temp_c": _r1(self.temp_c),
            "session": self._session_status(m, ok),
            "auth": {"required": bool(s.get("auth_required")), "state": ch.auth_state, "id": ch.auth_id},
            "standalone": bool(s.get("standalone")),
            "enabled": bool(s.get("enabled")),
            "faults": list(ch.faults),
            "fw": self.fw,
            "update": self.updater.status() if self.updater is not None else None,
        }

    def _session_status(self, m, ok):
        cur = self.sessions.current
        if cur is None:
            return None
        sess = {"id": cur.get("id"), "wh": cur.get("wh", 0) or 0, "ts": cur.get("ts_start"),
                "auth_id": cur.get("auth_id")}
        start = cur.get("meter_start_wh")
        live = getattr(m, "energy_wh", None)
        if ok and start is not None and live is not None and live - start > sess["wh"]:
            sess["wh"] = int(live - start)  # the live meter, between flash checkpoints
        return sess

    # ---- commands ---------------------------------------------------------------------------------------
    def authorize(self, now_ms, auth_id):
        return self.charger.authorize(now_ms, auth_id)

    def deauthorize(self, now_ms):
        return self.charger.deauthorize(now_ms)

    def stop(self, now_ms):
        return self.charger.stop(now_ms)

    def resume(self, now_ms):
        return self.charger.resume(now_ms)

    def set_limit(self, now_ms, a, ttl_s, seq):
        return self.charger.set_cloud_limit(now_ms, a, ttl_s, seq)

    def apply_settings(self, doc):
        try:
            new = settings_mod.merged(self.settings, doc, self.hw_max_a)
        except settings_mod.SettingsError as e:
            return (e.code, e.detail)
        if new == self.settings:  # the retained `config` comes back at every connect: nothing to do
            return None
        self.store.write_json("settings.json", new)
        self.settings = new
        self.charger.apply_settings(new)
        return None

    def ack_session(self, session_id):
        """True when the record was pending and is now deleted."""
        return bool(self.sessions.ack(session_id))

    def pending_sessions(self, limit):
        return self.sessions.pending(limit)

    def reset_settings(self, s):
        """A whole settings document in effect and on flash (the factory reset's defaults)."""
        self.store.write_json("settings.json", s)
        self.settings = s
        self.charger.apply_settings(s)

    def factory_reset(self):
        """Erase the owner's data (contract v1.1, firmware/factory.py); the caller restarts.
        None, or (busy, detail) while a vehicle charges or an update runs."""
        from firmware import factory  # loaded only when used (heap)

        return factory.erase(self)

    def update(self, cmd_id, url):
        """A field update (firmware/update.py): (result, error) for the command's reply."""
        if self.updater is None:
            return None, (NOT_ALLOWED, "no update key provisioned")
        return self.updater.request(cmd_id, url)

    @property
    def updating(self):
        """A field update is past its deferral: downloading, verifying or installing."""
        up = self.updater
        return up is not None and up.job is not None and up.job.get("phase") != "deferred"

    def charging(self):
        """A vehicle draws (or may draw) power: no factory reset, no switch to a new image."""
        return bool(self.inp.contactor_closed) or self.charger.mode == "connected_charging"

    def restart(self, cmd_id):
        """End a running session, persist everything; the app resets once the contactor is open."""
        self._on_restart(cmd_id)
        return None

    # ---- for the OCPP backend (firmware/ocpp.py) ----------------------------------------------------
    def set_clock(self, unix_s, now_ms):
        """The central system's time (BootNotification / Heartbeat currentTime): used by ts() only
        while the board has no clock of its own (NTP)."""
        self._clock_ms = int(unix_s * 1000)
        self._clock_at = now_ms

    def set_offer_limit(self, a):
        """A cap on the offered current in A (an OCPP composite charging schedule), None to lift it;
        applied by the core's arbitration beside max current, cable and thermal. Below
        min_current_a the vehicle pauses, as with a cloud lease."""
        return self.charger.set_offer_cap(a)

    def open_session(self):
        """The open session record (id, ts_start, meter_start_wh, auth_id, ...) or None; read-only
        (not a copy: the backend asks for it several times per slow tick)."""
        return self.sessions.current

    def live_energy_wh(self):
        return self.inp.energy_wh

    # ---- energy and sessions (the app's slow work) -----------------------------------------------------
    def meter_read(self, m):
        inp = self.inp
        inp.meter_ok = m.ok
        if not m.ok:
            return
        for i in range(3):
            inp.i_da[i] = m.i_da[i]
        if m.energy_wh > inp.energy_wh:
            inp.energy_wh = m.energy_wh
        if inp.energy_wh - self.energy_wh_persisted >= ENERGY_STEP_WH and self.sessions.current is None:
            self.persist_energy()

    def persist_energy(self):
        wh = self.inp.energy_wh
        if wh > self.energy_wh_persisted:
            self.store.write_json("energy.json", {"wh": wh})
            self.energy_wh_persisted = wh

    def checkpoint(self, now_ms):
        self.persist_energy()
        self.sessions.checkpoint(self.energy_wh_persisted, self.ts(now_ms))

    def drain_events(self, now_ms, backend):
        """The core's events to the session log and the backend. Returns True when a session opened."""
        events = self.charger.pop_events()
        opened = False
        for ev in events:
            t = ev.get("type")
            if t == "session_start":
                self.persist_energy()
                sid = self.sessions.open(ev.get("auth_id"), self.energy_wh_persisted, self.ts(now_ms))
                opened = True
                if backend is not None:
                    backend.emit_event("session_started", {"session_id": sid})
            elif t == "session_end":
                self.persist_energy()
                rec = self.sessions.close(ev.get("reason"), self.energy_wh_persisted, self.ts(now_ms))
                if rec is not None and backend is not None:
                    backend.emit_event("session_ended", {"session_id": rec["id"]})
                    backend.send_session(rec)
            elif backend is not None:
                fields = {}
                for k in ev:
                    if k != "type":
                        fields[k] = ev[k]
                backend.emit_event(t, fields)
        return opened
