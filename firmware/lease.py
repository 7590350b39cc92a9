# Cloud current limits as leases (contract "limit"): a value per grid phase that holds for ttl_s,
# accepted only with a seq greater than the last applied one, mapped through the installation's
# phase rotation to the charger's terminals. set() is the slow path; the rest allocates nothing.
from firmware.ticks import ticks_add, ticks_diff
from firmware.units import (
    BAD_REQUEST,
    MAX_AMPS,
    OUT_OF_RANGE,
    TTL_DEFAULT_S,
    TTL_MAX_S,
    TTL_MIN_S,
    da,
    is_int,
    is_number,
)


def rotation_map(rotation):
    """'L2L3L1' -> [1, 2, 0]: the grid phase index (0..2) of charger terminals L1, L2, L3."""
    return [int(rotation[1]) - 1, int(rotation[3]) - 1, int(rotation[5]) - 1]


class Lease:
    def __init__(self):
        self.grid_da = [0, 0, 0]  # per grid phase L1, L2, L3
        self.valid = False
        self.until = 0
        self.seq = None  # last applied seq

    def set(self, now, a, ttl_s, seq):
        """Validate and apply. Returns None or (code, detail)."""
        if not is_int(seq):
            return (BAD_REQUEST, "seq must be an integer")
        if ttl_s is None:
            ttl_s = TTL_DEFAULT_S
        if not is_number(ttl_s):
            return (BAD_REQUEST, "ttl_s must be a number of seconds")
        if ttl_s < TTL_MIN_S or ttl_s > TTL_MAX_S:
            return (OUT_OF_RANGE, "ttl_s must be %d..%d" % (TTL_MIN_S, TTL_MAX_S))
        if isinstance(a, list) or isinstance(a, tuple):
            if len(a) != 3:
                return (BAD_REQUEST, "a must be a number or a list of 3 numbers")
            vals = a
        elif is_number(a):
            vals = (a, a, a)
        else:
            return (BAD_REQUEST, "a must be a number or a list of 3 numbers")
        for v in vals:
            if not is_number(v):
                return (BAD_REQUEST, "a must hold numbers")
            if v < 0 or v > MAX_AMPS:
                return (OUT_OF_RANGE, "a must be 0..%d A" % MAX_AMPS)
        if self.seq is not None and seq <= self.seq:
            return ("stale", "seq %d is not greater than %d" % (int(seq), self.seq))
        for i in range(3):
            self.grid_da[i] = da(vals[i])
        self.seq = int(seq)
        self.until = ticks_add(now, int(ttl_s * 1000))
        self.valid = True
        return None

    def expired(self, now):
        """True once when a valid lease runs out (it becomes invalid)."""
        if self.valid and ticks_diff(now, self.until) >= 0:
            self.valid = False
            return True
        return False

    def ms_left(self, now):
        return ticks_diff(self.until, now)

    def min_da(self, rot, phases):
        """Smallest limit among the terminals the contactor switches (L1 only on one phase)."""
        g = self.grid_da
        m = g[rot[0]]
        if phases == 3:
            v = g[rot[1]]
            if v < m:
                m = v
            v = g[rot[2]]
            if v < m:
                m = v
        return m

    def drop(self):
        self.valid = False
