"""An installation as the portal describes it: main breaker, grid type, circuits with breakers,
chargers by serial with their phase rotation and fallback current.

File format (JSON; TOML with the same shape when the name ends in .toml):

    {"name": "garage", "grid": "TN", "main_breaker_a": 63,
     "defaults": {"fallback_current_a": 6, "fallback_phases": 3},
     "circuits": [{"name": "C1", "breaker_a": 32,
                   "chargers": [{"serial": "SIM0001", "phase_rotation": "L1L2L3"}]}]}

Grid types: "TN" and "TT" (230/400 V, three phases and neutral: a three-phase load draws its current
on all three grid phases, a single-phase load on the grid phase its terminal L1 is wired to) and
"IT" (230 V between phases, no neutral: a single-phase load sits between two grid conductors, those
wired to the charger's terminals L1 and L2 (its "N" on IT), and draws its current on both).
"""

import json
import os
from dataclasses import dataclass, field

GRIDS = ("TN", "TT", "IT")
ROTATIONS = ("L1L2L3", "L2L3L1", "L3L1L2", "L1L3L2", "L3L2L1", "L2L1L3")
# keys of a charger entry that are charger settings pushed through `config`
SETTING_KEYS = ("fallback_current_a", "fallback_phases", "max_current_a", "min_current_a", "auth_required",
                "state_interval_s", "session_retry_s", "auth_timeout_s")


class InstallationError(ValueError):
    pass


def rotation_map(rotation):
    """phase_rotation -> tuple: grid phase index (0..2) of charger terminal L1, L2, L3."""
    if rotation not in ROTATIONS:
        raise InstallationError("unknown phase_rotation %r" % (rotation,))
    return tuple(int(rotation[2 * k + 1]) - 1 for k in range(3))


def loaded_phases(grid, rotation, phases):
    """Grid phases (indices) that carry the current of a charger using `phases` (1 or 3) phases."""
    rot = rotation_map(rotation)
    if phases >= 3:
        return (0, 1, 2)
    if grid == "IT":
        return tuple(sorted((rot[0], rot[1])))
    return (rot[0],)


@dataclass(frozen=True)
class ChargerCfg:
    serial: str
    circuit: str
    phase_rotation: str = "L1L2L3"
    fallback_current_a: float = 6.0
    fallback_phases: int = 3
    max_current_a: float = 32.0
    min_current_a: float = 6.0
    settings: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Circuit:
    name: str
    breaker_a: float
    serials: tuple


@dataclass(frozen=True)
class Installation:
    name: str
    grid: str
    main_breaker_a: float
    circuits: tuple  # of Circuit
    chargers: dict  # serial -> ChargerCfg
    voltage_v: float = 230.0

    def circuit(self, name):
        for c in self.circuits:
            if c.name == name:
                return c
        raise KeyError(name)

    def with_breaker(self, circuit_name, breaker_a):
        """A copy with one circuit's breaker changed (or the main breaker, for circuit_name None)."""
        if circuit_name is None:
            return Installation(self.name, self.grid, breaker_a, self.circuits, self.chargers, self.voltage_v)
        circuits = tuple(Circuit(c.name, breaker_a if c.name == circuit_name else c.breaker_a, c.serials)
                         for c in self.circuits)
        return Installation(self.name, self.grid, self.main_breaker_a, circuits, self.chargers, self.voltage_v)

    def warnings(self):
        """Configuration risks worth telling the installer (not errors)."""
        out = []
        for c in self.circuits:
            fb = sum(self.chargers[s].fallback_current_a for s in c.serials)
            if fb > c.breaker_a:
                out.append("circuit %s: the fallback currents add up to %.1f A > breaker %.1f A; if the cloud goes "
                           "away for longer than a lease, the chargers may overload it" % (c.name, fb, c.breaker_a))
        fb = sum(ch.fallback_current_a for ch in self.chargers.values())
        if fb > self.main_breaker_a:
            out.append("main: the fallback currents add up to %.1f A > main breaker %.1f A" % (fb, self.main_breaker_a))
        return out


def _num(doc, key, where, lo=0.0, hi=10000.0, default=None):
    v = doc.get(key, default)
    if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InstallationError("%s: %s must be a number" % (where, key))
    if not lo <= v <= hi:
        raise InstallationError("%s: %s must be %g..%g" % (where, key, lo, hi))
    return float(v)


def parse(doc):
    """Installation from a parsed document; raises InstallationError with a readable message."""
    if not isinstance(doc, dict):
        raise InstallationError("an installation is an object")
    name = str(doc.get("name", "installation"))
    grid = str(doc.get("grid", "TN")).upper().split()[0].split("-")[0]
    if grid not in GRIDS:
        raise InstallationError("grid must be one of %s, not %r" % (", ".join(GRIDS), doc.get("grid")))
    main = _num(doc, "main_breaker_a", "installation", 1, 4000)
    defaults = doc.get("defaults", {}) or {}
    circuits = []
    chargers = {}
    if not isinstance(doc.get("circuits"), list) or not doc["circuits"]:
        raise InstallationError("installation: circuits must be a non-empty list")
    for ci, cdoc in enumerate(doc["circuits"]):
        cname = str(cdoc.get("name", "C%d" % (ci + 1)))
        where = "circuit %s" % cname
        if cname == "main" or any(c.name == cname for c in circuits):
            raise InstallationError("%s: duplicate circuit name (\"main\" is the main breaker)" % where)
        breaker = _num(cdoc, "breaker_a", where, 1, 4000)
        serials = []
        for chdoc in cdoc.get("chargers", []):
            if isinstance(chdoc, str):
                chdoc = {"serial": chdoc}
            merged = dict(defaults)
            merged.update(chdoc)
            serial = merged.get("serial")
            if not isinstance(serial, str) or not serial:
                raise InstallationError("%s: every charger needs a serial" % where)
            if serial in chargers:
                raise InstallationError("charger %s appears twice" % serial)
            w = "charger %s" % serial
            rot = merged.get("phase_rotation", "L1L2L3")
            rotation_map(rot)
            fb_phases = merged.get("fallback_phases", 3)
            if fb_phases not in (1, 3):
                raise InstallationError("%s: fallback_phases must be 1 or 3" % w)
            settings = {k: merged[k] for k in SETTING_KEYS if k in merged}
            if isinstance(merged.get("settings"), dict):
                settings.update(merged["settings"])
            chargers[serial] = ChargerCfg(
                serial=serial, circuit=cname, phase_rotation=rot,
                fallback_current_a=_num(merged, "fallback_current_a", w, 0, 80, 6),
                fallback_phases=fb_phases,
                max_current_a=_num(merged, "max_current_a", w, 0, 80, 32),
                min_current_a=_num(merged, "min_current_a", w, 6, 80, 6),
                settings=settings)
            serials.append(serial)
        circuits.append(Circuit(cname, breaker, tuple(serials)))
    return Installation(name, grid, main, tuple(circuits), chargers, float(doc.get("voltage_v", 230)))


def load(path):
    with open(path, "rb") as f:
        raw = f.read()
    if os.path.splitext(path)[1].lower() == ".toml":
        import tomllib
        doc = tomllib.loads(raw.decode())
    else:
        try:
            doc = json.loads(raw)
        except ValueError as e:
            raise InstallationError("%s: not valid JSON: %s" % (path, e)) from None
    return parse(doc)
