# The charging session: consumes the pilot's CP events and the commands (authorize, tags,
# deauthorize, stop, resume, restart) and keeps one explicit state. Authorization lives here: a grant
# waits auth_timeout_s for a plug-in, a plug-in waits as long for a grant. Commands are the slow path
# (they may allocate events); tick() and classify() allocate nothing unless an event is due.
from firmware.ticks import const, ticks_diff

# session states (docs/architecture.md)
IDLE = "idle"  # no vehicle
WAITING_FOR_AUTH = "waiting_for_auth"  # plugged, no session: a grant is needed
READY = "ready"  # session open, power may be offered, the vehicle draws nothing yet
CHARGING = "charging"  # contactor closed
PAUSED_EV = "paused_ev"  # the vehicle stopped drawing by itself while offered current
PAUSED_EVSE = "paused_evse"  # the charger offers nothing now (limit, rest time, phase change)
FINISHED = "finished"  # stopped by command or restart: no power until resume / unplug
FAULTED = "faulted"  # a fault is active

# session state -> the contract's `mode` (a vehicle that stopped drawing by itself is `finished`
# there; `disabled` is the charger's, not the session's)
MODE_OF_STATE = {
    IDLE: "disconnected",
    WAITING_FOR_AUTH: "connected_requesting",
    READY: "connected_requesting",
    PAUSED_EVSE: "connected_requesting",
    CHARGING: "connected_charging",
    PAUSED_EV: "connected_finished",
    FINISHED: "connected_finished",
    FAULTED: "fault",
}

# auth states of the contract
AUTH_IDLE = "idle"
AUTH_PENDING = "pending"
AUTH_AUTHORIZED = "authorized"
AUTH_DENIED = "denied"

# session end reasons of the contract
EV_UNPLUGGED = "ev_unplugged"
CMD_STOP = "cmd_stop"
DEAUTHORIZED = "deauthorized"
R_FAULT = "fault"
RESTART = "restart"

# a charger-side final stop
_HOLD_NONE = const(0)
_HOLD_STOP = const(1)  # `stop`: until `resume` or unplug
_HOLD_RESTART = const(2)  # a commanded restart: for good


class Session:
    def __init__(self, emit):
        self._emit = emit  # emit(dict): event sink (slow; events are rare)
        self.state = IDLE
        self.active = False  # between session_start and session_end
        self.auth_state = AUTH_IDLE
        self.auth_id = None
        self._plugged = False
        self._hold = _HOLD_NONE
        self._auth_required = False
        self._auth_timeout_ms = 60000
        self._local_ids = []
        self._session_auth = None  # auth id of the open session
        self._grant_valid = False
        self._grant_id = None
        self._grant_at = 0
        self._pending = False  # a plug-in waits for a grant
        self._pending_at = 0
        self._denied_id = None
        self._need_grant = False  # after deauthorize: the next session needs a grant even without auth_required

    def configure(self, auth_required, auth_timeout_s, local_ids):
        self._auth_required = auth_required
        self._auth_timeout_ms = auth_timeout_s * 1000
        self._local_ids = local_ids
        self._refresh_auth()

    # ---- commands (slow path) ---------------------------------------------------------------------
    def authorize(self, now, auth_id):
        self._grant(now, auth_id)

    def present_tag(self, now, uid):
        aid = "tag:" + uid
        if uid in self._local_ids:
            self._grant(now, aid)
            return
        self._emit({"type": "auth", "result": "denied", "auth_id": aid})
        if not self.active:  # an unknown tag does not disturb a running session
            self._denied_id = aid
            self._refresh_auth()

    def deauthorize(self):
        if self.active:
            aid = self._session_auth
            self._end(DEAUTHORIZED)
            self._need_grant = True
            self._pending = False
            self._emit({"type": "auth", "result": "revoked", "auth_id": aid})
        if self._grant_valid:
            self._grant_valid = False
            self._emit({"type": "auth", "result": "revoked", "auth_id": self._grant_id})
        self._refresh_auth()

    def stop(self):
        if self._plugged and self._hold == _HOLD_NONE:
            self._hold = _HOLD_STOP

    def resume(self):
        if self._hold == _HOLD_STOP:
            self._hold = _HOLD_NONE

    def end_for_restart(self):
        self._end(RESTART)
        self._hold = _HOLD_RESTART

    # ---- CP events ------------------------------------------------------------------------------
    def on_plug(self, now):
        self._plugged = True
        if self._hold == _HOLD_STOP:
            self._hold = _HOLD_NONE
        self._need_grant = False
        self._denied_id = None
        if self._auth_required:
            self._pending = True
            self._pending_at = now
        self._refresh_auth()

    def on_unplug(self):
        self._plugged = False
        self._end(CMD_STOP if self._hold == _HOLD_STOP else EV_UNPLUGGED)
        if self._hold == _HOLD_STOP:
            self._hold = _HOLD_NONE
        self._need_grant = False
        self._pending = False
        self._denied_id = None
        self._refresh_auth()

    # ---- per tick -----------------------------------------------------------------------------------
    def tick(self, now, enabled, faults_latched):
        """Grant and plug-in timeouts; a latched fault ends the session; a session opens when the
        vehicle is plugged, the charger enabled and the authorization (if needed) given."""
        if self._grant_valid and ticks_diff(now, self._grant_at) >= self._auth_timeout_ms:
            self._grant_valid = False
            self._emit({"type": "auth", "result": "timeout", "auth_id": self._grant_id})
            self._refresh_auth()
        if self._pending and ticks_diff(now, self._pending_at) >= self._auth_timeout_ms:
            self._pending = False
            self._emit({"type": "auth", "result": "timeout", "auth_id": None})
            self._refresh_auth()
        if faults_latched and self.active:
            self._end(R_FAULT)
            if self._auth_required:
                self._pending = True
                self._pending_at = now
                self._refresh_auth()
        if (
            not self.active
            and self._plugged
            and enabled
            and self._hold != _HOLD_RESTART
            and not faults_latched
            and (self._grant_valid or (not self._auth_required and not self._need_grant))
        ):
            self._start()

    def may_charge(self):
        """An open session that no command holds."""
        return self.active and self._hold == _HOLD_NONE

    def classify(self, faulted, contactor, offering, ev_stopped, vehicle_in_b):
        """This tick's state, from the session's own facts and what the pilot machine did."""
        if faulted:
            st = FAULTED
        elif not self._plugged:
            st = IDLE
        elif contactor:
            st = CHARGING
        elif self._hold != _HOLD_NONE:
            st = FINISHED
        elif ev_stopped and vehicle_in_b:
            st = PAUSED_EV
        elif not self.active:
            st = WAITING_FOR_AUTH
        elif offering:
            st = READY
        else:
            st = PAUSED_EVSE
        self.state = st
        return st

    # ---- helpers -------------------------------------------------------------------------------------
    def _grant(self, now, aid):
        self._grant_valid = True
        self._grant_id = aid
        self._grant_at = now
        self._denied_id = None
        self._need_grant = False
        self._emit({"type": "auth", "result": "granted", "auth_id": aid})
        self._refresh_auth()

    def _start(self):
        aid = None
        if self._grant_valid:
            aid = self._grant_id
            self._grant_valid = False
        self._session_auth = aid
        self.active = True
        self._pending = False
        self._denied_id = None
        self._emit({"type": "session_start", "auth_id": aid})
        self._refresh_auth()

    def _end(self, reason):
        if not self.active:
            return
        self.active = False
        self._session_auth = None
        self._emit({"type": "session_end", "reason": reason})
        self._refresh_auth()

    def _refresh_auth(self):
        if self.active:
            aid = self._session_auth
            st = AUTH_IDLE if aid is None else AUTH_AUTHORIZED
        elif self._grant_valid:
            aid = self._grant_id
            st = AUTH_AUTHORIZED
        elif self._denied_id is not None:
            aid = self._denied_id
            st = AUTH_DENIED
        elif self._pending:
            aid = None
            st = AUTH_PENDING
        else:
            aid = None
            st = AUTH_IDLE
        self.auth_state = st
        self.auth_id = aid
