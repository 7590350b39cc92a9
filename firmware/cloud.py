# The MQTT contract on top of the link: inbound limit/cmd/config -> core and app calls, with exactly
# one reply per command that has an id and a `rejected` event for everything else that cannot be
# taken; outbound state, events, sessions, config/reported. Runs in the app's slow loop; it only
# enqueues into the link (firmware/link.py), never touches a socket, never blocks.
import json

from firmware import protocol as P
from firmware.ticks import ticks_diff

INBOX_PER_SERVICE = 8  # inbound messages handled per service() call
SESSIONS_PER_ROUND = 8  # pending session records queued per (re)send round


def _r1(x):
    return None if x is None else round(x * 10) / 10


class Cloud:
    def __init__(self, app, link):
        self.app = app
        self.link = link
        self.t = P.Topics(app.prefix, app.serial)
        self.env = P.Envelope(app.boot)
        for topic in self.t.inbound():
            if topic not in link.topics:
                link.add_topic(topic)
        self._seen_connect = 0
        self._v = None  # charger.version last reported
        self._con = None  # confirmed contactor last reported
        self._settings = None  # settings object last reported
        self._last_state = None
        self._last_sessions = None
        self._restarting = False
        self.stats = {"rx": 0, "replies": 0, "rejected": 0, "errors": 0}

    # ---- lifecycle -----------------------------------------------------------------------------
    def start(self, now_ms):
        """At boot: queue the boot event and the settings in effect, start the link thread."""
        app = self.app
        ev = {"fw": app.fw, "reset_cause": app.reset_cause}
        if app.boot_cmd_id:
            ev["cmd_id"] = app.boot_cmd_id
        self.emit_event("boot", ev, now_ms)
        self.publish_reported(now_ms)
        self.publish_state(now_ms)
        self.link.start()

    def service(self, now_ms):
        link = self.link
        for _ in range(INBOX_PER_SERVICE):
            m = link.get()
            if m is None:
                break
            self.handle(m[0], m[1], now_ms)
        cc = link.connect_count
        if cc != self._seen_connect:
            # (re)connected: the broker may have lost our retained messages, the cloud our events
            self._seen_connect = cc
            self.publish_state(now_ms)
            self.publish_reported(now_ms)
            self.resend_sessions(now_ms)
            return
        ch = self.app.charger
        if ch.version != self._v or self.app.contactor_closed != self._con or self.app.settings is not self._settings:
            self.publish_state(now_ms)
        elif self._last_state is None or \
                ticks_diff(now_ms, self._last_state) >= self._setting("state_interval_s", 10) * 1000:
            self.publish_state(now_ms)
        if self._last_sessions is not None and link.connected and \
                ticks_diff(now_ms, self._last_sessions) >= self._setting("session_retry_s", 30) * 1000:
            self.resend_sessions(now_ms)

    def _setting(self, key, default):
        v = self.app.settings.get(key, default)
        return v if isinstance(v, int) and v > 0 else default

    # ---- outbound ------------------------------------------------------------------------------
    def _now(self, now_ms):
        if now_ms is None:
            from firmware.ticks import ticks_ms

            now_ms = ticks_ms()
        return now_ms

    def _send(self, topic, fields, now_ms, retain=False, key=None):
        app = self.app
        now_ms = self._now(now_ms)
        payload = self.env.dumps(fields, app.up_ms(now_ms), app.ts(now_ms))
        self.link.publish(topic, payload, retain, 1, key)

    def emit_event(self, etype, fields=None, now_ms=None):
        """One `event` message; the app hands over the core's events here."""
        d = {"type": etype}
        if fields:
            for k in fields:
                if k != "type":
                    d[k] = fields[k]
        self._send(self.t.event, d, now_ms)

    def reply(self, cmd_id, ok_result=None, error=None, now_ms=None):
        self.stats["replies"] += 1
        if error is None:
            d = P.reply_ok(cmd_id, ok_result)
        else:
            d = P.reply_error(cmd_id, error[0], error[1])
        self._send(self.t.reply, d, now_ms)

    def reject(self, rel, code, detail, now_ms=None):
        self.stats["rejected"] += 1
        self._send(self.t.event, P.rejected(rel, code, detail), now_ms)

    def publish_reported(self, now_ms=None):
        # the settings object itself, complete, retained (no envelope: contract "config/reported")
        self.link.publish(self.t.config_reported, json.dumps(self.app.settings), True, 1, "reported")

    def send_session(self, rec, now_ms=None):
        """A closed session record (written to flash before): publish it (again)."""
        self._send(self.t.session, rec, now_ms)
        if self._last_sessions is None:
            self._last_sessions = self._now(now_ms)

    def resend_sessions(self, now_ms):
        self._last_sessions = now_ms
        pending = self.app.sessions.pending(SESSIONS_PER_ROUND)
        for rec in pending:
            self._send(self.t.session, rec, now_ms)
        if not pending:
            self._last_sessions = None

    def publish_state(self, now_ms=None):
        now_ms = self._now(now_ms)
        self._v = self.app.charger.version
        self._con = self.app.contactor_closed
        self._settings = self.app.settings
        self._last_state = now_ms
        self._send(self.t.state, self.state_fields(now_ms), now_ms, True, "state")

    def state_fields(self, now_ms):
        app = self.app
        ch = app.charger
        s = app.settings
        m = app.meter
        if ch.pilot_mode == "high":
            duty = 100
        elif ch.pilot_mode == "low":
            duty = 0
        else:
            duty = ch.duty_pm / 10
        left = ch.lease_ms_left
        ok = bool(getattr(m, "ok", False))
        sess = None
        cur = app.sessions.current
        if cur is not None:
            sess = {"id": cur.get("id"), "wh": cur.get("wh", 0) or 0, "ts": cur.get("ts_start"),
                    "auth_id": cur.get("auth_id")}
            start = cur.get("meter_start_wh")
            live = getattr(m, "energy_wh", None)
            if ok and start is not None and live is not None and live - start > sess["wh"]:
                sess["wh"] = int(live - start)  # the live meter, between flash checkpoints
        return {
            "mode": ch.mode,
            "cp": ch.cp_name,
            "pwm_duty": duty,
            "offered_a": ch.offered_da / 10,
            "limit_a": ch.limit_da / 10,
            "limit_src": ch.limit_src,
            "lease_s": None if left is None else (left + 999) // 1000,
            "contactor": bool(app.contactor_closed),
            "phases": ch.phases,
            "i_a": [_r1(x) for x in m.i_a] if ok else None,
            "v_v": [_r1(x) for x in m.v_v] if ok else None,
            "p_w": int(m.p_w) if ok and m.p_w is not None else None,
            "e_wh": app.energy_wh_persisted,
            "pp_a": app.pp_a,
            "temp_c": _r1(app.temp_c),
            "session": sess,
            "auth": {"required": bool(s.get("auth_required")), "state": ch.auth_state, "id": ch.auth_id},
            "standalone": bool(s.get("standalone")),
            "enabled": bool(s.get("enabled")),
            "faults": list(ch.faults),
            "fw": app.fw,
        }

    # ---- inbound -------------------------------------------------------------------------------
    def handle(self, topic, payload, now_ms):
        """Dispatch one received message; never raises."""
        rel = self.t.relative(topic)
        if rel not in P.IN_TOPICS:
            return
        self.stats["rx"] += 1
        try:
            if rel == "limit":
                self._on_limit(payload, now_ms)
            elif rel == "cmd":
                self._on_cmd(payload, now_ms)
            else:
                self._on_config(payload, now_ms)
        except Exception as e:  # noqa: BLE001  a bug must not take the charger down
            self.stats["errors"] += 1
            self._say("cloud: error handling", rel, repr(e))

    def _say(self, *a):
        try:
            print(*a)
        except Exception:  # noqa: BLE001
            pass

    def _on_limit(self, payload, now_ms):
        try:
            a, ttl, seq = P.parse_limit(payload)
        except P.ProtocolError as e:
            self.reject("limit", e.code, e.detail, now_ms)
            return
        r = self.app.charger.set_cloud_limit(now_ms, a, ttl, seq)
        if r is not None:
            code, detail = r
            if code == "stale":
                code = P.OUT_OF_RANGE  # ignored: its seq is not greater than the last applied one
            self.reject("limit", code, detail, now_ms)

    def _on_config(self, payload, now_ms):
        try:
            doc = P.parse_config(payload)
        except P.ProtocolError as e:
            self.reject("config", e.code, e.detail, now_ms)
            return
        if doc is None:
            return  # retained config cleared by the cloud: keep what is in effect
        err = self.app.apply_settings(doc)
        if err is not None:
            self.reject("config", err[0], err[1], now_ms)
            return
        self._applied(now_ms)

    def _applied(self, now_ms):
        self.publish_reported(now_ms)
        self.emit_event("config_applied", None, now_ms)
        self.publish_state(now_ms)

    def _on_cmd(self, payload, now_ms):
        try:
            cid, op, args = P.parse_cmd(payload)
        except P.ProtocolError as e:
            if e.cmd_id is None:
                self.reject("cmd", e.code, e.detail, now_ms)
            else:
                self.reply(e.cmd_id, error=(e.code, e.detail), now_ms=now_ms)
            return
        try:
            result, err = self._run(cid, op, args, now_ms)
        except Exception as e:  # noqa: BLE001  still exactly one reply
            result, err = None, (P.BUSY, "internal error: " + repr(e)[:80])
        if op == "restart" and err is None:
            return  # replied (and restart requested) in _run
        self.reply(cid, result, err, now_ms)

    def _run(self, cid, op, args, now_ms):
        app = self.app
        ch = app.charger
        if self._restarting:
            return None, (P.BUSY, "restarting")
        if op == "get":
            return {"state": self.state_fields(now_ms), "settings": app.settings}, None
        if op == "authorize":
            err = ch.authorize(now_ms, args["auth_id"])
            return ({"auth_id": args["auth_id"]} if err is None else None), err
        if op == "deauthorize":
            return None, ch.deauthorize(now_ms)
        if op == "stop":
            return None, ch.stop(now_ms)
        if op == "resume":
            return None, ch.resume(now_ms)
        if op == "session_ack":
            sid = args["session_id"]
            deleted = bool(app.sessions.ack(sid))
            return {"session_id": sid, "deleted": deleted}, None
        if op == "set":
            err = app.apply_settings(args["settings"])
            if err is not None:
                return None, err
            self._applied(now_ms)
            return {"settings": app.settings}, None
        if op == "restart":
            # the reply goes out first; the app then ends the session, persists, says offline
            # through link.shutdown() and resets
            self._restarting = True
            self.reply(cid, None, None, now_ms)
            app.request_restart(cid)
            return None, None
        return None, (P.UNKNOWN_OP, op)
