# The charger settings of the MQTT contract (shared/contract.md, "config"): schema, defaults and
# all-or-nothing validation. Ranges are checked per key; the hardware maximum comes from the board.
from firmware import text
from firmware.ticks import const
from firmware.units import BAD_REQUEST, MAX_ID, OUT_OF_RANGE, is_number

ROTATIONS = ("L1L2L3", "L2L3L1", "L3L1L2", "L1L3L2", "L3L2L1", "L2L1L3")
_MAX_AUTH_IDS = const(100)

# key: (kind, default, lo, hi); hi None = hardware maximum current
SCHEMA = {
    "enabled": ("bool", True, None, None),
    "max_current_a": ("amps", 16, 0, None),
    "min_current_a": ("amps", 6, 6, None),
    "auth_required": ("bool", False, None, None),
    "auth_timeout_s": ("int", 60, 10, 3600),
    "standalone": ("bool", True, None, None),
    "fallback_current_a": ("amps", 6, 0, None),
    "fallback_phases": ("choice", 3, (1, 3), None),
    "phase_rotation": ("choice", "L1L2L3", ROTATIONS, None),
    "local_auth_ids": ("ids", [], None, None),
    "state_interval_s": ("int", 10, 1, 3600),
    "session_retry_s": ("int", 30, 5, 3600),
}


class SettingsError(Exception):
    def __init__(self, code, detail):
        super().__init__(detail)
        self.code = code
        self.detail = detail


def defaults(hw_max_a):
    d = {}
    for key in SCHEMA:
        v = SCHEMA[key][1]
        if key == "max_current_a":
            v = min(v, hw_max_a)
        d[key] = list(v) if isinstance(v, list) else v
    return d


def _check(key, v, hw_max_a):
    kind, _, lo, hi = SCHEMA[key]
    if kind == "bool":
        if not isinstance(v, bool):
            raise SettingsError(BAD_REQUEST, key + " must be true or false")
        return v
    if kind == "amps":
        if not is_number(v):
            raise SettingsError(BAD_REQUEST, key + " must be a number of amperes")
        if v < lo or v > hw_max_a:
            raise SettingsError(OUT_OF_RANGE, "%s must be %d..%d A" % (key, lo, hw_max_a))
        return int(v) if v == int(v) else round(v * 10) / 10
    if kind == "int":
        if not is_number(v) or v != int(v):
            raise SettingsError(BAD_REQUEST, key + " must be a whole number")
        if v < lo or v > hi:
            raise SettingsError(OUT_OF_RANGE, "%s must be %d..%d" % (key, lo, hi))
        return int(v)
    if kind == "choice":
        if isinstance(v, bool) or v not in lo or type(v) is not type(lo[0]):
            raise SettingsError(OUT_OF_RANGE, "%s must be one of %s" % (key, ", ".join(str(x) for x in lo)))
        return v
    # ids
    if not isinstance(v, list):
        raise SettingsError(BAD_REQUEST, key + " must be a list of strings")
    if len(v) > _MAX_AUTH_IDS:
        raise SettingsError(OUT_OF_RANGE, "%s holds at most %d ids" % (key, _MAX_AUTH_IDS))
    for s in v:
        if not isinstance(s, str) or not s:
            raise SettingsError(BAD_REQUEST, key + " must hold non-empty strings")
        if len(s) > MAX_ID:
            raise SettingsError(OUT_OF_RANGE, "%s ids are at most %d characters" % (key, MAX_ID))
        try:
            text.decode(s)  # settings from flash were written by an older firmware, maybe unchecked
        except ValueError:
            raise SettingsError(BAD_REQUEST, key + " must hold valid UTF-8 text") from None
    return list(v)


def validate(doc, hw_max_a):
    """Check a partial settings document. Returns a dict of normalised values to apply;
    raises SettingsError(code, detail) when any key or value is unknown or invalid."""
    if not isinstance(doc, dict):
        raise SettingsError(BAD_REQUEST, "settings must be a JSON object")
    out = {}
    for key in sorted(doc):  # sorted: the same error for the same document on both runtimes
        if key not in SCHEMA:
            raise SettingsError(BAD_REQUEST, "unknown setting " + str(key)[:40])
        out[key] = _check(key, doc[key], hw_max_a)
    return out


def merged(current, doc, hw_max_a):
    """current + a validated partial document, as a new dict (current is left unchanged)."""
    changes = validate(doc, hw_max_a)
    new = dict(current)
    new.update(changes)
    return new


def load(stored, hw_max_a):
    """Settings from flash, falling back key by key to defaults for anything missing or invalid."""
    s = defaults(hw_max_a)
    if isinstance(stored, dict):
        for key in stored:
            if key in SCHEMA:
                try:
                    s[key] = _check(key, stored[key], hw_max_a)
                except SettingsError:
                    pass
    return s
