# Safety monitor bookkeeping: the contract's fault names, each fault's policy, and the active /
# latched / retry state of every fault in preallocated lists (no allocation unless a fault is
# raised or cleared, which emits an event anyway). The charger decides *when* a condition holds;
# this module decides what a fault does (trip or stop gracefully) and when it may clear.
from firmware.iec61851 import MAX_RETRIES, RETRY_MS, TEMP_HALF_DC, TEMP_QUARTER_DC, TEMP_RESTORE_DC, TEMP_STOP_DC
from firmware.ticks import const, ticks_diff

FAULT_NAMES = (
    "rcd_ac",
    "rcd_dc",
    "rcd_selftest",
    "diode",
    "cp_short",
    "cp_invalid",
    "vent_required",
    "contactor_welded",
    "contactor_stuck_open",
    "overcurrent",
    "overtemp",
    "meter",
    "pp_invalid",
    "reader",
)
_N_FAULTS = const(14)
RCD_AC = 0
RCD_DC = 1
RCD_SELFTEST = 2
DIODE = 3
CP_SHORT = 4
CP_INVALID = 5
VENT_REQUIRED = 6
CONTACTOR_WELDED = 7
CONTACTOR_STUCK_OPEN = 8
OVERCURRENT = 9
OVERTEMP = 10
METER = 11
PP_INVALID = 12
READER = 13

# Policies (see docs/charging.md):
# RETRY: clears RETRY_MS after it was raised once its condition is gone; the (MAX_RETRIES+1)th
#        occurrence latches until `resume` or a power cycle.
# VEHICLE: as RETRY, and an unplug clears it and its count (the cause is the vehicle or cable).
# UNPLUG: latched until the vehicle is unplugged.
# COND: active exactly while its condition holds.
# LATCH: never clears (power cycle / service).
_POL_RETRY = const(0)
_POL_VEHICLE = const(1)
_POL_UNPLUG = const(2)
_POL_COND = const(3)
_POL_LATCH = const(4)

POLICY = (
    _POL_RETRY,  # rcd_ac
    _POL_RETRY,  # rcd_dc
    _POL_RETRY,  # rcd_selftest
    _POL_VEHICLE,  # diode
    _POL_COND,  # cp_short
    _POL_COND,  # cp_invalid
    _POL_UNPLUG,  # vent_required
    _POL_LATCH,  # contactor_welded
    _POL_RETRY,  # contactor_stuck_open
    _POL_VEHICLE,  # overcurrent
    _POL_COND,  # overtemp
    _POL_COND,  # meter
    _POL_COND,  # pp_invalid
    _POL_COND,  # reader
)

# Trip faults open the contactor at once (and show state F >= 300 ms when they hit while the PWM
# was on or the contactor closed). The others stop gracefully: PWM removed, contactor opened when
# the vehicle goes to B or after 6 s.
TRIP = (True, True, True, True, True, True, True, True, True, True, False, False, False, False)

# Every fault but the RFID reader's blocks: stops charging and makes the mode `fault` (Faults.n_active
# counts the blocking ones). The reader's does neither: a dead
# reader takes nothing away from a vehicle that is charging or from a session the cloud or a local
# setting allows; it is reported (state `faults`, events) so that someone replaces it. With
# auth_required and no cloud grant, nobody can start a session while it lasts, which is the truth of
# a charger whose only local way in is broken, not something to enforce (docs/charging.md).


def thermal_level(level, temp_dc):
    """Derating level 0 (full), 1 (1/2), 2 (1/4), 3 (stop) from the temperature with hysteresis:
    levels rise at 65/68/71 degC and fall back to full only at or below 62 degC. A sensor fault
    (None) is level 3."""
    if temp_dc is None or temp_dc >= TEMP_STOP_DC:
        return 3
    if temp_dc >= TEMP_QUARTER_DC:
        return level if level > 2 else 2
    if temp_dc >= TEMP_HALF_DC:
        return level if level > 1 else 1
    if temp_dc <= TEMP_RESTORE_DC:
        return 0
    return level


class Faults:
    def __init__(self, emit):
        self._emit = emit  # emit(type, key, value): event sink (allocates; rare)
        self.active = [False] * _N_FAULTS
        self.latched = [False] * _N_FAULTS
        self.since = [0] * _N_FAULTS
        self.count = [0] * _N_FAULTS
        self.n_active = 0  # blocking faults active (BLOCKS)
        self.n_trip = 0
        self.n_latched = 0
        self.names = []  # contract list; a new list on every change
        self.changed = False

    def _rebuild(self):
        names = []
        n = t = la = 0
        for i in range(_N_FAULTS):
            if self.active[i]:
                names.append(FAULT_NAMES[i])
                if i != READER:
                    n += 1
                if TRIP[i]:
                    t += 1
                if self.latched[i]:
                    la += 1
        self.names = names
        self.n_active = n
        self.n_trip = t
        self.n_latched = la
        self.changed = True

    def take_change(self):
        """True once after the active set changed (the reporter's cue), allocation-free."""
        if self.changed:
            self.changed = False
            return True
        return False

    def raise_(self, i, now):
        """Raise fault i. Returns True when it was not active before."""
        if self.active[i]:
            return False
        self.active[i] = True
        self.since[i] = now
        self.count[i] += 1
        p = POLICY[i]
        if p == _POL_LATCH or p == _POL_UNPLUG:
            self.latched[i] = True
        elif (p == _POL_RETRY or p == _POL_VEHICLE) and self.count[i] > MAX_RETRIES:
            self.latched[i] = True
        self._rebuild()
        self._emit("fault", "fault", FAULT_NAMES[i])
        return True

    def clear(self, i):
        if not self.active[i]:
            return
        self.active[i] = False
        self.latched[i] = False
        self._rebuild()
        self._emit("fault_cleared", "fault", FAULT_NAMES[i])

    def service(self, i, cond, now):
        """Clear fault i when its policy allows, given whether its condition still holds."""
        if not self.active[i] or self.latched[i]:
            return
        p = POLICY[i]
        if p == _POL_COND:
            if not cond:
                self.clear(i)
        elif p == _POL_RETRY or p == _POL_VEHICLE:
            if not cond and ticks_diff(now, self.since[i]) >= RETRY_MS:
                self.clear(i)

    def on_unplug(self):
        for i in range(_N_FAULTS):
            p = POLICY[i]
            if p == _POL_VEHICLE or p == _POL_UNPLUG:
                self.count[i] = 0
                self.clear(i)

    def resume(self):
        """Cloud `resume`: clear latched retrying faults and their counts (never a welded contactor)."""
        for i in range(_N_FAULTS):
            p = POLICY[i]
            if p == _POL_RETRY or p == _POL_VEHICLE:
                self.count[i] = 0
                if self.latched[i]:
                    self.clear(i)
