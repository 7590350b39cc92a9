# The MQTT contract's backend: inbound limit/cmd/config -> the station's commands, with exactly
# one reply per command that has an id and a `rejected` event for everything else that cannot be
# taken; outbound state, events, sessions, config/reported. It sees the charger only through the
# station's backend interface (firmware/station.py). Runs in the app's slow loop; it only enqueues
# into the link (firmware/link.py), never touches a socket, never blocks.
import json

from firmware import protocol
from firmware.ticks import const, ticks_diff

_INBOX_PER_SERVICE = const(8)  # inbound messages handled per service() call
_SESSIONS_PER_ROUND = const(8)  # pending session records queued per (re)send round


class Cloud:
    def __init__(self, station, link, prefix="evse", ha_prefix=None):
        """ha_prefix: Home Assistant discovery under this prefix (provisioning), None: off."""
        self.station = station
        self.link = link
        self.t = protocol.Topics(prefix, station.serial)
        self.env = protocol.Envelope(station.boot)
        for topic in self.t.inbound():
            if topic not in link.topics:
                link.add_topic(topic)
        self._seen_connect = 0
        self._v = None  # station.status_version() last reported
        self._last_state = None
        self._last_sessions = None
        self._restarting = False
        self.verifier = None  # firmware/signed.py Verifier when a command key is provisioned
        self.stats = {"rx": 0, "replies": 0, "rejected": 0, "errors": 0}
        self.ha = None  # Home Assistant discovery (firmware/ha.py), loaded only when provisioned
        if ha_prefix is not None or station.store.read_json("ha.json", None) is not None:
            from firmware import ha

            self.ha = ha.attach(self, ha_prefix)

    # ---- lifecycle -----------------------------------------------------------------------------
    def start(self, now_ms):
        """At boot: queue the boot event and the settings in effect, start the link thread."""
        st = self.station
        ev = {"fw": st.fw, "reset_cause": st.reset_cause}
        if st.boot_cmd_id:
            ev["cmd_id"] = st.boot_cmd_id
        self.emit_event("boot", ev, now_ms)
        self.publish_reported(now_ms)
        self.publish_state(now_ms)
        self.link.start()

    def service(self, now_ms):
        link = self.link
        if self.ha is not None:
            self.ha.service(now_ms)
        for _ in range(_INBOX_PER_SERVICE):
            m = link.get()
            if m is None:
                break
            self.handle(m[0], m[1], now_ms)
        if self.station.updater is not None:
            self.station.updater.drain(self, now_ms)
        cc = link.connect_count
        if cc != self._seen_connect:
            # (re)connected: the broker may have lost our retained messages, the cloud our events
            self._seen_connect = cc
            self.publish_state(now_ms)
            self.publish_reported(now_ms)
            self.resend_sessions(now_ms)
            return
        if self.station.status_version() != self._v:
            self.publish_state(now_ms)
        elif self._last_state is None or \
                ticks_diff(now_ms, self._last_state) >= self._setting("state_interval_s", 10) * 1000:
            self.publish_state(now_ms)
        if self._last_sessions is not None and link.connected and \
                ticks_diff(now_ms, self._last_sessions) >= self._setting("session_retry_s", 30) * 1000:
            self.resend_sessions(now_ms)

    def _setting(self, key, default):
        v = self.station.settings.get(key, default)
        return v if isinstance(v, int) and v > 0 else default

    # ---- outbound ------------------------------------------------------------------------------
    def _now(self, now_ms):
        if now_ms is None:
            from firmware.ticks import ticks_ms

            now_ms = ticks_ms()
        return now_ms

    def _send(self, topic, fields, now_ms, retain=False, key=None):
        st = self.station
        now_ms = self._now(now_ms)
        env = self.env
        up = st.up_ms(now_ms)
        ts = st.ts(now_ms)
        # the MQTT link serializes into small parts (firmware/link.py publish_json), the envelope
        # written around the fields (no merged dict); a link without it (a test's) takes the text
        pub = getattr(self.link, "publish_json", None)
        if pub is not None:
            pub(topic, lambda s: env.write(s, fields, up, ts), retain, 1, key)
        else:
            self.link.publish(topic, env.dumps(fields, up, ts), retain, 1, key)

    def _publish(self, topic, doc, retain, key):
        pub = getattr(self.link, "publish_json", None)
        if pub is not None:
            pub(topic, doc, retain, 1, key)
        else:
            self.link.publish(topic, json.dumps(doc), retain, 1, key)

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
            d = protocol.reply_ok(cmd_id, ok_result)
        else:
            d = protocol.reply_error(cmd_id, error[0], error[1])
        self._send(self.t.reply, d, now_ms)

    def reject(self, rel, code, detail, now_ms=None):
        self.stats["rejected"] += 1
        self._send(self.t.event, protocol.rejected(rel, code, detail), now_ms)

    def publish_reported(self, now_ms=None):
        # the settings object itself, complete, retained (no envelope: contract "config/reported")
        self._publish(self.t.config_reported, self.station.settings, True, "reported")

    def send_session(self, rec, now_ms=None):
        """A closed session record (written to flash before): publish it (again)."""
        self._send(self.t.session, rec, now_ms)
        if self._last_sessions is None:
            self._last_sessions = self._now(now_ms)

    def resend_sessions(self, now_ms):
        self._last_sessions = now_ms
        pending = self.station.pending_sessions(_SESSIONS_PER_ROUND)
        for rec in pending:
            self._send(self.t.session, rec, now_ms)
        if not pending:
            self._last_sessions = None

    def publish_state(self, now_ms=None):
        now_ms = self._now(now_ms)
        self._v = self.station.status_version()
        self._last_state = now_ms
        self._send(self.t.state, self.station.status(now_ms), now_ms, True, "state")

    def _get_result(self, now_ms):
        # contract: `get`'s state carries the envelope of the reply it travels in (same seq)
        st = self.station
        state = self.env.peek(st.status(now_ms), st.up_ms(now_ms), st.ts(now_ms))
        return {"state": state, "settings": st.settings}

    # ---- inbound -------------------------------------------------------------------------------
    def handle(self, topic, payload, now_ms):
        """Dispatch one received message; never raises."""
        rel = self.t.relative(topic)
        if rel not in protocol.IN_TOPICS:
            if self.ha is not None:
                try:
                    self.ha.handle(topic, rel, payload, now_ms)
                except Exception as e:  # noqa: BLE001  as below
                    self.stats["errors"] += 1
                    self._say("cloud: error handling", topic, repr(e))
            return
        self.stats["rx"] += 1
        try:
            if self.verifier is not None:
                payload = self.verifier.unwrap(self, rel, payload, now_ms)
                if payload is None:
                    return
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
            a, ttl, seq = protocol.parse_limit(payload)
        except protocol.ProtocolError as e:
            self.reject("limit", e.code, e.detail, now_ms)
            return
        r = self.station.set_limit(now_ms, a, ttl, seq)
        if r is not None:
            code, detail = r
            if code == "stale":
                code = protocol.OUT_OF_RANGE  # ignored: its seq is not greater than the last applied one
            self.reject("limit", code, detail, now_ms)

    def _on_config(self, payload, now_ms):
        try:
            doc = protocol.parse_config(payload)
        except protocol.ProtocolError as e:
            self.reject("config", e.code, e.detail, now_ms)
            return
        if doc is None:
            return  # retained config cleared by the cloud: keep what is in effect
        err = self.station.apply_settings(doc)
        if err is not None:
            self.reject("config", err[0], err[1], now_ms)
            return
        if self.verifier is not None:
            self.verifier.config_applied()
        self._applied(now_ms)

    def _applied(self, now_ms):
        self.publish_reported(now_ms)
        self.emit_event("config_applied", None, now_ms)
        self.publish_state(now_ms)

    def _on_cmd(self, payload, now_ms):
        try:
            cid, op, args = protocol.parse_cmd(payload)
        except protocol.ProtocolError as e:
            if e.cmd_id is None:
                self.reject("cmd", e.code, e.detail, now_ms)
            else:
                self.reply(e.cmd_id, error=(e.code, e.detail), now_ms=now_ms)
            return
        try:
            result, err = self._run(cid, op, args, now_ms)
        except Exception as e:  # noqa: BLE001  still exactly one reply
            result, err = None, (protocol.BUSY, "internal error: " + repr(e)[:80])
        if op in ("restart", "factory_reset") and err is None:
            return  # replied (and restart requested) in _run
        self.reply(cid, result, err, now_ms)

    def _run(self, cid, op, args, now_ms):
        st = self.station
        if self._restarting:
            return None, (protocol.BUSY, "restarting")
        if op == "get":
            return self._get_result(now_ms), None
        if op == "authorize":
            err = st.authorize(now_ms, args["auth_id"])
            return ({"auth_id": args["auth_id"]} if err is None else None), err
        if op == "deauthorize":
            return None, st.deauthorize(now_ms)
        if op == "stop":
            return None, st.stop(now_ms)
        if op == "resume":
            return None, st.resume(now_ms)
        if op == "session_ack":
            sid = args["session_id"]
            return {"session_id": sid, "deleted": st.ack_session(sid)}, None
        if op == "set":
            err = st.apply_settings(args["settings"])
            if err is not None:
                return None, err
            self._applied(now_ms)
            return {"settings": st.settings}, None
        if op == "restart" or op == "factory_reset":
            if op == "factory_reset":
                err = st.factory_reset()  # the owner's data erased, or (busy, ...) while charging
                if err is not None:
                    return None, err
            # the reply goes out first; the app then ends the session, persists, says offline
            # through link.shutdown() and resets
            self._restarting = True
            self.reply(cid, None, None, now_ms)
            st.restart(cid)
            return None, None
        if op == "update":
            return st.update(cid, args["url"])
        return None, (protocol.UNKNOWN_OP, op)
