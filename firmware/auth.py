# Authentication, standalone/enable settings, cloud leases and session boundaries of the charging
# core: the slow-path commands (they may allocate) and the per-tick timers (they do not). Mixed into
# firmware.charger.Charger.
from firmware.lease import rotation_map
from firmware.ticks import ticks_diff

IDLE = "idle"
PENDING = "pending"
AUTHORIZED = "authorized"
DENIED = "denied"

EV_UNPLUGGED = "ev_unplugged"
CMD_STOP = "cmd_stop"
DEAUTHORIZED = "deauthorized"
R_FAULT = "fault"
POWER_LOSS = "power_loss"
RESTART = "restart"

ST_IDLE = 0


def _da(a):
    return int(a * 10 + 0.5)


class AuthSessions:
    def apply_settings(self, s):
        self.enabled = bool(s.get("enabled", True))
        self._max_da = _da(s.get("max_current_a", 16))
        self._min_da = _da(s.get("min_current_a", 6))
        self._auth_req = bool(s.get("auth_required", False))
        self._auth_timeout_ms = int(s.get("auth_timeout_s", 60)) * 1000
        standalone = bool(s.get("standalone", True))
        if standalone:
            self.lease.drop()
        self.standalone = standalone
        self._fb_da = _da(s.get("fallback_current_a", 6))
        self._fb_phases = 1 if s.get("fallback_phases", 3) == 1 else 3
        self._rot = rotation_map(s.get("phase_rotation", "L1L2L3"))
        self._local_ids = list(s.get("local_auth_ids", []))
        self._refresh_auth()
        return None

    def set_cloud_limit(self, now_ms, a, ttl_s, seq):
        if self.standalone:
            return ("not_allowed", "cloud limits are ignored in standalone mode")
        return self.lease.set(now_ms, a, ttl_s, seq)

    def authorize(self, now_ms, auth_id):
        if not isinstance(auth_id, str) or not auth_id or len(auth_id) > 64:
            return ("bad_request", "auth_id must be a string of 1..64 characters")
        self._grant(now_ms, auth_id)
        return None

    def present_tag(self, now_ms, uid):
        if not isinstance(uid, str) or not uid:
            return ("bad_request", "tag uid must be a non-empty string")
        aid = "tag:" + uid
        if uid in self._local_ids:
            self._grant(now_ms, aid)
            return None
        if self.session_active:
            # an unknown tag does not disturb a running session; the event tells the cloud
            self._events.append({"type": "auth", "result": "denied", "auth_id": aid})
            return None
        self._denied = True
        self._denied_id = aid
        self._events.append({"type": "auth", "result": "denied", "auth_id": aid})
        self._refresh_auth()
        return None

    def _grant(self, now, aid):
        self._grant_valid = True
        self._grant_id = aid
        self._grant_at = now
        self._denied = False
        self._need_grant = False
        self._events.append({"type": "auth", "result": "granted", "auth_id": aid})
        self._refresh_auth()

    def deauthorize(self, now_ms):
        if self.session_active:
            aid = self._sess_auth
            self._end_session(DEAUTHORIZED)
            self._need_grant = True
            self._pending_on = False
            self._events.append({"type": "auth", "result": "revoked", "auth_id": aid})
        if self._grant_valid:
            self._grant_valid = False
            self._events.append({"type": "auth", "result": "revoked", "auth_id": self._grant_id})
        self._refresh_auth()
        return None

    def stop(self, now_ms):
        if self._plugged:
            self._stopped = True
        return None

    def resume(self, now_ms):
        self._stopped = False
        self.flt.resume()
        return None

    def end_for_restart(self, now_ms):
        """Before a commanded restart: end the session (reason restart) and remove the PWM for good;
        the app waits for `contactor` to go False (at most PWM_OFF_OPEN_MS) before resetting."""
        self._end_session(RESTART)
        self._halted = True
        return None

    # ---- helpers -----------------------------------------------------------------------------------
    def _end_session(self, reason):
        if not self.session_active:
            return
        self.session_active = False
        self._sess_auth = None
        self._events.append({"type": "session_end", "reason": reason})
        self._refresh_auth()

    def _start_session(self):
        aid = None
        if self._grant_valid:
            aid = self._grant_id
            self._grant_valid = False
        self._sess_auth = aid
        self.session_active = True
        self._pending_on = False
        self._denied = False
        self._events.append({"type": "session_start", "auth_id": aid})
        self._refresh_auth()

    def _refresh_auth(self):
        if self.session_active:
            aid = self._sess_auth
            st = IDLE if aid is None else AUTHORIZED
        elif self._grant_valid:
            aid = self._grant_id
            st = AUTHORIZED
        elif self._denied:
            aid = self._denied_id
            st = DENIED
        elif self._pending_on:
            aid = None
            st = PENDING
        else:
            aid = None
            st = IDLE
        self.auth_state = st
        self.auth_id = aid

    def _on_plug(self, now):
        self._plugged = True
        self._wake_done = False
        self._wake_active = False
        self._charged = False
        self._ev_done = False
        self._oc_pen_da = 0
        self._stopped = False
        self._need_grant = False
        self._denied = False
        if self._auth_req:
            self._pending_on = True
            self._pending_at = now
        self._refresh_auth()

    def _on_unplug(self, now):
        self._plugged = False
        reason = CMD_STOP if self._stopped else EV_UNPLUGGED
        self._end_session(reason)
        self._stopped = False
        self._need_grant = False
        self._pending_on = False
        self._denied = False
        self._wake_active = False
        self._oc_pen_da = 0
        self._st = ST_IDLE
        self.flt.on_unplug()
        self._refresh_auth()


    def _auth_tick(self, now):
        """Lease expiry, grant / plug-in timeouts, session start and end by latched faults."""
        flt = self.flt
        if self.lease.expired(now) and not self.standalone:
            fb = self._fb_da if self._fb_da < self._max_da else self._max_da
            self._events.append({"type": "limit_expired", "fallback_a": fb / 10})
        if self.lease.valid and not self.standalone:
            self.lease_ms_left = self.lease.ms_left(now)
        else:
            self.lease_ms_left = None
        if self._grant_valid and ticks_diff(now, self._grant_at) >= self._auth_timeout_ms:
            self._grant_valid = False
            self._events.append({"type": "auth", "result": "timeout", "auth_id": self._grant_id})
            self._refresh_auth()
        if self._pending_on and ticks_diff(now, self._pending_at) >= self._auth_timeout_ms:
            self._pending_on = False
            self._events.append({"type": "auth", "result": "timeout", "auth_id": None})
            self._refresh_auth()
        if flt.n_latched and self.session_active:
            self._end_session(R_FAULT)
            if self._auth_req:
                self._pending_on = True
                self._pending_at = now
                self._refresh_auth()
        if (
            not self.session_active
            and self._plugged
            and self.enabled
            and not self._halted
            and flt.n_latched == 0
            and (self._grant_valid or (not self._auth_req and not self._need_grant))
        ):
            self._start_session()

