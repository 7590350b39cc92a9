# The charging core, composed of its parts: the pilot state machine (firmware/pilot_machine.py),
# the safety monitor (firmware/monitor.py), the session with its authorization
# (firmware/session.py), the cloud lease (firmware/lease.py) and the arbitration of the offered
# current (firmware/arbitration.py). Pure logic: no I/O, no sleeping, no `machine`; time comes in
# as `now_ms` ticks. `tick` is the fast path and allocates nothing (integers, interned strings,
# preallocated state); events (rare) allocate. Rules and numbers: docs/charging.md.
from firmware import text
from firmware.arbitration import NO_TERM, SRC_NONE, arbitrate
from firmware.iec61851 import CP_A, CP_B, LOW, PWM
from firmware.lease import Lease, rotation_map
from firmware.monitor import SafetyMonitor
from firmware.pilot_machine import PLUGGED, UNPLUGGED, PilotMachine
from firmware.session import FAULTED, IDLE, MODE_OF_STATE, Session
from firmware.units import BAD_REQUEST, MAX_ID, NOT_ALLOWED, da

DISABLED = "disabled"  # the contract mode of a charger disabled by its settings


class Inputs:
    """What the board read this tick (filled by its read(); see docs/architecture.md)."""

    def __init__(self):
        self.cp = CP_A
        self.diode_ok = None
        self.pp_a = 0
        self.contactor_closed = False
        self.contactor_fault = None
        self.rcd_ac = False
        self.rcd_dc = False
        self.rcd_selftest = None
        self.temp_dc = 250
        self.i_da = [0, 0, 0]
        self.meter_ok = True
        self.energy_wh = 0
        self.reader_ok = True  # the RFID reader answers (slow work; no reader: True)


class Charger:
    """Outputs for the board (pilot_mode, duty_pm, offered_da, contactor, phases, selftest_req) and
    for the backends (mode, cp_name, limit_da, limit_src, lease_ms_left, faults, auth_state, auth_id,
    session_active, version: +1 on every change a backend reports)."""

    def __init__(self, settings, hw_max_a, phases, tethered_a=None):
        self.hw_da = da(hw_max_a)
        self.hw_phases = 1 if phases == 1 else 3
        self.tethered_da = None if tethered_a is None else da(tethered_a)
        self._events = []
        self.lease = Lease()
        self.pilot = PilotMachine()
        self.safety = SafetyMonitor(self._fault_event)
        self.session = Session(self._push)
        self._limit = [0, SRC_NONE]
        self.selftest_req = False
        self.phases = self.hw_phases
        self.mode = MODE_OF_STATE[IDLE]
        self.cp_name = CP_A
        self.limit_da = 0
        self.limit_src = SRC_NONE
        self.lease_ms_left = None
        self.version = 0
        self._phase_pending = False
        self._cap_da = NO_TERM  # set_offer_cap(): a backend's schedule limit (OCPP), NO_TERM = none
        self._reported = [None, None, None, -1, None, None, None]
        self._closed = False  # the contactor as the board last confirmed it
        self.apply_settings(settings)

    # ---- what the board and the backends read --------------------------------------------------
    @property
    def pilot_mode(self):
        return self.pilot.mode

    @property
    def duty_pm(self):
        return self.pilot.duty_pm

    @property
    def offered_da(self):
        return self.pilot.offered_da

    @property
    def contactor(self):
        return self.pilot.contactor

    @property
    def faults(self):
        return self.safety.faults.names

    @property
    def auth_state(self):
        return self.session.auth_state

    @property
    def auth_id(self):
        return self.session.auth_id

    @property
    def session_active(self):
        return self.session.active

    # ---- events ----------------------------------------------------------------------------------
    def _push(self, ev):
        self._events.append(ev)

    def _fault_event(self, typ, key, val):
        self._events.append({"type": typ, key: val})

    def pop_events(self):
        ev = self._events
        if ev:
            self._events = []
        return ev

    # ---- settings and commands (slow path) -------------------------------------------------------
    def apply_settings(self, s):
        self.enabled = bool(s.get("enabled", True))
        self._max_da = da(s.get("max_current_a", 16))
        self._min_da = da(s.get("min_current_a", 6))
        standalone = bool(s.get("standalone", True))
        if standalone:
            self.lease.drop()
        self.standalone = standalone
        self._fallback_da = da(s.get("fallback_current_a", 6))
        self._fallback_phases = 1 if s.get("fallback_phases", 3) == 1 else 3
        self._rotation = rotation_map(s.get("phase_rotation", "L1L2L3"))
        self.session.configure(bool(s.get("auth_required", False)), int(s.get("auth_timeout_s", 60)),
                               list(s.get("local_auth_ids", [])))
        self._refresh()

    def set_tethered(self, tethered_a):
        """The board's cable is tethered (its rating in A) or a socket (None)."""
        self.tethered_da = None if tethered_a is None else da(tethered_a)

    def set_cloud_limit(self, now_ms, a, ttl_s, seq):
        if self.standalone:
            return (NOT_ALLOWED, "cloud limits are ignored in standalone mode")
        return self.lease.set(now_ms, a, ttl_s, seq)

    def set_offer_cap(self, a):
        """A backend's current cap in A (None: none), e.g. an OCPP charging schedule. Reported as
        limit_src `cloud` when it binds."""
        if a is None:
            self._cap_da = NO_TERM
            return None
        if not isinstance(a, (int, float)) or a != a or a < 0:
            return (BAD_REQUEST, "cap must be a number >= 0")
        self._cap_da = da(a if a < 1000 else 1000)
        return None

    def authorize(self, now_ms, auth_id):
        if not isinstance(auth_id, str) or not auth_id or len(auth_id) > MAX_ID:
            return (BAD_REQUEST, "auth_id must be a string of 1..%d characters" % MAX_ID)
        self.session.authorize(now_ms, auth_id)
        self._refresh()
        return None

    def present_tag(self, now_ms, uid):
        if not isinstance(uid, str) or not uid or len(uid) > MAX_ID - 4:
            return (BAD_REQUEST, "tag uid must be a string of 1..%d characters" % (MAX_ID - 4))
        try:
            text.decode(uid)  # a reader's bytes become an auth id: strict UTF-8 only (firmware/text.py)
        except ValueError:
            return (BAD_REQUEST, "tag uid is not valid UTF-8")
        self.session.present_tag(now_ms, uid)
        self._refresh()
        return None

    def deauthorize(self, now_ms):
        self.session.deauthorize()
        self._refresh()
        return None

    def stop(self, now_ms):
        self.session.stop()
        self._refresh()
        return None

    def resume(self, now_ms):
        self.session.resume()
        self.safety.faults.resume()
        self._refresh()
        return None

    def end_for_restart(self, now_ms):
        """Before a commanded restart: end the session (reason restart) and remove the PWM for good;
        the app waits for `contactor` to go False (at most PWM_OFF_OPEN_MS) before resetting."""
        self.session.end_for_restart()
        self._refresh()
        return None

    # ---- fast path ------------------------------------------------------------------------------------
    def tick(self, now, inp):
        pm = self.pilot
        sm = self.safety
        flt = sm.faults
        ss = self.session
        prev = pm.mode
        was_closed = pm.contactor
        ev = pm.sense(now, inp.cp)
        if ev == PLUGGED:
            ss.on_plug(now)
            sm.on_plug()
        elif ev == UNPLUGGED:
            ss.on_unplug()
            sm.on_unplug()
        tripped = sm.check(now, inp, pm, prev, pm.offer_da, self._min_da, self.tethered_da is None)
        if flt.n_trip and pm.contactor:
            pm.open(now)  # §4: a trip opens at once
        if tripped and (was_closed or prev == PWM):
            pm.hold_f(now)
        self._lease_tick(now)
        ss.tick(now, self.enabled, flt.n_latched)
        self._arbitrate(inp.pp_a)
        self._select_phases(inp.contactor_closed)
        allow = (
            self.enabled
            and pm.plugged
            and ss.may_charge()
            and flt.n_active == 0
            and self.limit_da >= self._min_da
            and self.limit_da > 0
            and not self._phase_pending
        )
        pm.drive(now, allow, self.limit_da)
        if pm.switch(now, prev, sm.may_close(inp.diode_ok)):
            sm.closed()
        self.selftest_req = sm.start_selftest(now, pm)
        self._closed = inp.contactor_closed
        self._report(inp.contactor_closed)

    def _refresh(self):
        # a command changed what the core reports: classify again now, so that a status built before
        # the next tick shows it (the `state` sent with `config_applied` already says `disabled`)
        self._report(self._closed)

    def drive(self, board, now):
        """This tick's outputs onto the board-support interface (board/support.py)."""
        pm = self.pilot
        if pm.mode == PWM:
            board.pwm_on(pm.duty_pm)
        elif pm.mode == LOW:
            board.f()
        else:
            board.x1()
        board.set_phases(self.phases)
        board.allow_power_on(pm.contactor, now)
        if self.selftest_req:
            board.selftest_start(now)

    def _lease_tick(self, now):
        lease = self.lease
        if lease.expired(now) and not self.standalone:
            fb = self._fallback_da if self._fallback_da < self._max_da else self._max_da
            self._events.append({"type": "limit_expired", "fallback_a": fb / 10})
        if lease.valid and not self.standalone:
            self.lease_ms_left = lease.ms_left(now)
        else:
            self.lease_ms_left = None

    def _arbitrate(self, pp_a):
        cable = self.tethered_da
        if cable is None:
            # a socket: the cable's PP capacity; no or an invalid reading with a vehicle -> 0
            cable = NO_TERM
            if pp_a > 0:
                cable = pp_a * 10
            elif self.pilot.plugged:
                cable = 0
        lease = self.lease
        max_da = self._max_da if self._max_da < self.hw_da else self.hw_da
        lim = self._limit
        arbitrate(lim, self.enabled, self.standalone, max_da,
                  lease.min_da(self._rotation, self.phases) if lease.valid else NO_TERM,
                  self._fallback_da, cable, self.safety.thermal, self.safety.penalty_da, self._cap_da)
        self.limit_da = lim[0]
        self.limit_src = lim[1]

    def _select_phases(self, contacts_closed):
        # the phase relay moves only while the contactor is open: a change while charging pauses
        # first, and the relay waits until the contacts report open (not in the tick the open is
        # commanded: they take a few ms to part, and a welded one never does)
        want = self.hw_phases
        if want == 3 and not self.standalone and not self.lease.valid:
            want = self._fallback_phases
        if want == self.phases:
            self._phase_pending = False
        elif self.pilot.contactor or contacts_closed:
            self._phase_pending = True
        else:
            self.phases = want
            self._phase_pending = False

    def _report(self, contactor_closed):
        pm = self.pilot
        sm = self.safety
        flt = sm.faults
        st = self.session.classify(flt.n_active > 0, pm.contactor, pm.mode == PWM, pm.ev_stopped,
                                   pm.last_letter == CP_B)
        mode = MODE_OF_STATE[st]
        if not self.enabled and st != FAULTED:
            mode = DISABLED
        self.mode = mode
        name = pm.cp_name()
        self.cp_name = name
        if flt.take_change():
            self.version += 1
        r = self._reported
        auth = self.session.auth_state
        active = self.session.active
        if (
            mode != r[0] or name != r[1] or contactor_closed != r[2] or pm.offered_da != r[3]
            or self.limit_src != r[4] or auth != r[5] or active != r[6]
        ):
            r[0] = mode
            r[1] = name
            r[2] = contactor_closed
            r[3] = pm.offered_da
            r[4] = self.limit_src
            r[5] = auth
            r[6] = active
            self.version += 1

