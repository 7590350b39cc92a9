# OCPP 1.6 Smart Charging for one connector (spec sections 3.13, 5.16, 5.5, 5.7): the installed
# charging profiles, validated and kept in flash (in force offline and across reboots), and the
# composite limit they give at a time. Also the clock conversions OCPP needs (RFC 3339 <-> Unix
# seconds) without time.mktime, whose epoch differs between MicroPython ports.
# Slow path only (the backend evaluates the limit about once a second); the result goes to the
# core as one number in A through Station.set_offer_limit().
from firmware.ocpp_rpc import OCCURENCE, PROPERTY, TYPE, CallError

CP_MAX = "ChargePointMaxProfile"
TX_DEFAULT = "TxDefaultProfile"
TX = "TxProfile"
PURPOSES = (CP_MAX, TX_DEFAULT, TX)
KINDS = ("Absolute", "Recurring", "Relative")
MAX_STACK = 8  # ChargeProfileMaxStackLevel
MAX_PERIODS = 24  # ChargingScheduleMaxPeriods
MAX_PROFILES = 8  # MaxChargingProfilesInstalled
FILE = "ocpp_profiles.json"
DAY = 86400
WEEK = 7 * DAY
V_NOMINAL = 230.0


# ---- time ----------------------------------------------------------------------------------------------
def _days_from_civil(y, m, d):
    # proleptic Gregorian date -> days since 1970-01-01
    y -= 1 if m <= 2 else 0
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _civil_from_days(z):
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return yoe + era * 400 + (1 if m <= 2 else 0), m, d


def _digits(s, i, n):
    v = 0
    for k in range(i, i + n):
        c = ord(s[k]) - 48
        if c < 0 or c > 9:
            raise ValueError("digit expected")
        v = v * 10 + c
    return v


def parse_time(s):
    """'2026-12-03T09:10:58Z' (fraction and +HH:MM offsets allowed) -> Unix seconds (int).
    Raises ValueError."""
    if not isinstance(s, str) or len(s) < 19 or s[4] != "-" or s[7] != "-" or s[10] not in "Tt " \
            or s[13] != ":" or s[16] != ":":
        raise ValueError("not an RFC 3339 date-time")
    y = _digits(s, 0, 4)
    mo = _digits(s, 5, 2)
    d = _digits(s, 8, 2)
    h = _digits(s, 11, 2)
    mi = _digits(s, 14, 2)
    sec = _digits(s, 17, 2)
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h <= 23 and mi <= 59 and sec <= 60):
        raise ValueError("date-time out of range")
    i = 19
    if i < len(s) and s[i] == ".":
        i += 1
        while i < len(s) and "0" <= s[i] <= "9":
            i += 1
    off = 0
    rest = s[i:]
    if rest in ("Z", "z"):
        pass
    elif len(rest) == 6 and rest[0] in "+-" and rest[3] == ":":
        off = _digits(rest, 1, 2) * 3600 + _digits(rest, 4, 2) * 60
        if rest[0] == "-":
            off = -off
    elif rest == "":
        pass  # no zone: taken as UTC (OCPP says UTC)
    else:
        raise ValueError("bad time zone")
    return _days_from_civil(y, mo, d) * DAY + h * 3600 + mi * 60 + sec - off


def format_time(t):
    """Unix seconds -> '2026-12-03T09:10:58Z'."""
    t = int(t)
    days = t // DAY
    r = t - days * DAY
    y, m, d = _civil_from_days(days)
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (y, m, d, r // 3600, (r // 60) % 60, r % 60)


# ---- validation -----------------------------------------------------------------------------------------
def _num(v):
    return (isinstance(v, int) or isinstance(v, float)) and not isinstance(v, bool) and v == v


def _int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _field(obj, key, check, what, required=True):
    if key not in obj:
        if required:
            raise CallError(OCCURENCE, "%s is required" % key)
        return None
    v = obj[key]
    if not check(v):
        raise CallError(TYPE, "%s must be %s" % (key, what))
    return v


def check_profile(p):
    """A csChargingProfiles object -> the same, checked; raises CallError for a malformed one."""
    if not isinstance(p, dict):
        raise CallError(TYPE, "csChargingProfiles must be an object")
    _field(p, "chargingProfileId", _int, "an integer")
    _field(p, "transactionId", _int, "an integer", False)
    lvl = _field(p, "stackLevel", _int, "an integer")
    if lvl < 0:
        raise CallError(PROPERTY, "stackLevel must be >= 0")
    _field(p, "chargingProfilePurpose", lambda v: v in PURPOSES, "one of " + ",".join(PURPOSES))
    kind = _field(p, "chargingProfileKind", lambda v: v in KINDS, "one of " + ",".join(KINDS))
    rec = _field(p, "recurrencyKind", lambda v: v in ("Daily", "Weekly"), "Daily or Weekly", False)
    for k in ("validFrom", "validTo"):
        v = _field(p, k, lambda v: isinstance(v, str), "a date-time", False)
        if v is not None:
            try:
                parse_time(v)
            except ValueError:
                raise CallError(TYPE, "%s is not a date-time" % k) from None
    cs = _field(p, "chargingSchedule", lambda v: isinstance(v, dict), "an object")
    _field(cs, "duration", _int, "an integer", False)
    start = _field(cs, "startSchedule", lambda v: isinstance(v, str), "a date-time", False)
    if start is not None:
        try:
            parse_time(start)
        except ValueError:
            raise CallError(TYPE, "startSchedule is not a date-time") from None
    _field(cs, "chargingRateUnit", lambda v: v in ("A", "W"), "A or W")
    _field(cs, "minChargingRate", _num, "a number", False)
    periods = _field(cs, "chargingSchedulePeriod", lambda v: isinstance(v, list) and len(v) > 0,
                     "a non-empty array")
    prev = -1
    for per in periods:
        if not isinstance(per, dict):
            raise CallError(TYPE, "a chargingSchedulePeriod must be an object")
        sp = _field(per, "startPeriod", _int, "an integer")
        lim = _field(per, "limit", _num, "a number")
        ph = _field(per, "numberPhases", _int, "an integer", False)
        if sp <= prev or (prev < 0 and sp != 0) or lim < 0 or (ph is not None and ph not in (1, 2, 3)):
            raise CallError(PROPERTY, "periods start at 0 and increase; limit >= 0; numberPhases 1..3")
        prev = sp
    if kind == "Recurring" and (rec is None or start is None):
        raise CallError(OCCURENCE, "a Recurring profile needs recurrencyKind and startSchedule")
    return p


# ---- the installed profiles ---------------------------------------------------------------------------
class Profiles:
    def __init__(self, store):
        self.store = store
        doc = store.read_json(FILE, None)
        self.items = []  # [connectorId, profile]
        if isinstance(doc, list):
            for it in doc:
                if isinstance(it, list) and len(it) == 2 and _int(it[0]) and isinstance(it[1], dict):
                    self.items.append(it)

    def _save(self):
        self.store.write_json(FILE, self.items)

    def set(self, connector, p, tx_id):
        """SetChargingProfile: 'Accepted' or 'Rejected' (raises CallError when malformed). tx_id: the
        running transaction's id, None when none runs."""
        check_profile(p)
        purpose = p["chargingProfilePurpose"]
        if not _int(connector) or connector < 0 or connector > 1:
            return "Rejected"
        if p["stackLevel"] > MAX_STACK or len(p["chargingSchedule"]["chargingSchedulePeriod"]) > MAX_PERIODS:
            return "Rejected"
        if purpose == CP_MAX and connector != 0:
            return "Rejected"
        if purpose == TX:
            if connector == 0 or tx_id is None:
                return "Rejected"  # a TxProfile needs a running transaction (3.13.2)
            t = p.get("transactionId")
            if t is not None and t != tx_id:
                return "Rejected"
        keep = []
        for it in self.items:
            q = it[1]
            if q.get("chargingProfileId") == p["chargingProfileId"]:
                continue  # same id: replaced
            if it[0] == connector and q.get("chargingProfilePurpose") == purpose and \
                    q.get("stackLevel") == p["stackLevel"]:
                continue  # same purpose and stack level on the connector: replaced
            keep.append(it)
        if len(keep) >= MAX_PROFILES:
            return "Rejected"
        keep.append([connector, p])
        self.items = keep
        self._save()
        return "Accepted"

    def clear(self, pid=None, connector=None, purpose=None, level=None):
        """ClearChargingProfile: 'Accepted' when something was removed, else 'Unknown'."""
        keep = []
        for it in self.items:
            q = it[1]
            if pid is not None:
                match = q.get("chargingProfileId") == pid
            else:
                match = (connector is None or it[0] == connector) and \
                        (purpose is None or q.get("chargingProfilePurpose") == purpose) and \
                        (level is None or q.get("stackLevel") == level)
            if not match:
                keep.append(it)
        if len(keep) == len(self.items):
            return "Unknown"
        self.items = keep
        self._save()
        return "Accepted"

    def end_transaction(self):
        """TxProfiles live only as long as their transaction (3.13.2)."""
        keep = [it for it in self.items if it[1].get("chargingProfilePurpose") != TX]
        if len(keep) != len(self.items):
            self.items = keep
            self._save()

    # ---- evaluation ----------------------------------------------------------------------------------
    @staticmethod
    def _start(p, t, tx_start):
        cs = p["chargingSchedule"]
        kind = p["chargingProfileKind"]
        if kind == "Relative":
            return tx_start if tx_start is not None else t
        anchor = parse_time(cs["startSchedule"]) if "startSchedule" in cs else None
        if kind == "Recurring":
            per = DAY if p.get("recurrencyKind") == "Daily" else WEEK
            if t < anchor:
                return anchor
            return anchor + ((t - anchor) // per) * per
        if anchor is None:
            vf = p.get("validFrom")
            anchor = parse_time(vf) if vf else (tx_start if tx_start is not None else t)
        return anchor

    @classmethod
    def profile_limit(cls, p, t, tx_start):
        """(limit, unit, phases) of one profile at t, or None when it has no period in force."""
        vf = p.get("validFrom")
        vt = p.get("validTo")
        if vf and t < parse_time(vf):
            return None
        if vt and t >= parse_time(vt):
            return None
        s = cls._start(p, t, tx_start)
        el = t - s
        if el < 0:
            return None
        cs = p["chargingSchedule"]
        dur = cs.get("duration")
        if dur is not None and el >= dur:
            return None
        if p["chargingProfileKind"] == "Recurring":
            per = DAY if p.get("recurrencyKind") == "Daily" else WEEK
            if el >= per:
                return None
        found = None
        for per in cs["chargingSchedulePeriod"]:
            if per["startPeriod"] <= el:
                found = per
            else:
                break
        if found is None:
            return None
        return (found["limit"], cs["chargingRateUnit"], found.get("numberPhases", 3))

    def limit_a(self, t, tx_start, has_tx, volts=V_NOMINAL, phases=3):
        """The composite limit in A at Unix time t (None: no profile in force): the smaller of the
        ChargePointMaxProfile and the TxProfile (while a transaction runs) or else the
        TxDefaultProfile, each of them the highest stack level in force."""
        best = {}
        for it in self.items:
            p = it[1]
            purpose = p["chargingProfilePurpose"]
            if purpose == TX and not has_tx:
                continue
            try:
                r = self.profile_limit(p, t, tx_start)
            except (ValueError, KeyError, TypeError):
                continue
            if r is None:
                continue
            rank = p["stackLevel"] * 2 + (1 if it[0] != 0 else 0)  # a connector's own wins a tie
            cur = best.get(purpose)
            if cur is None or rank > cur[0]:
                best[purpose] = (rank, to_amps(r[0], r[1], r[2], volts, phases))
        lim = None
        tx = best.get(TX) if has_tx else None
        if tx is None:
            tx = best.get(TX_DEFAULT)
        for v in (best.get(CP_MAX), tx):
            if v is not None and (lim is None or v[1] < lim):
                lim = v[1]
        return lim

    def composite(self, t0, duration, tx_start, has_tx, volts=V_NOMINAL, phases=3, cap_a=None):
        """GetCompositeSchedule: [(startPeriod, limit A)] over [t0, t0 + duration), merged; cap_a (the
        charger's own max) bounds every period and stands alone when no profile is in force."""
        marks = [t0]
        end = t0 + duration
        for it in self.items:
            p = it[1]
            for k in ("validFrom", "validTo"):
                if p.get(k):
                    marks.append(parse_time(p[k]))
            cs = p["chargingSchedule"]
            s = self._start(p, t0, tx_start)
            per = 0
            if p["chargingProfileKind"] == "Recurring":
                per = DAY if p.get("recurrencyKind") == "Daily" else WEEK
            for rep in range(8):
                base = s + rep * per
                if base >= end:
                    break
                for q in cs["chargingSchedulePeriod"]:
                    marks.append(base + q["startPeriod"])
                if cs.get("duration") is not None:
                    marks.append(base + cs["duration"])
                if per == 0:
                    break
                marks.append(base + per)
        pts = sorted(set(m for m in marks if t0 <= m < end))
        out = []
        for m in pts:
            lim = self.limit_a(m, tx_start, has_tx, volts, phases)
            if cap_a is not None and (lim is None or cap_a < lim):
                lim = cap_a
            if lim is None:
                continue
            lim = round(lim * 10) / 10
            if out and out[-1][1] == lim:
                continue
            out.append((m - t0, lim))
            if len(out) >= MAX_PERIODS:
                break
        return out


def to_amps(limit, unit, phases, volts=V_NOMINAL, charger_phases=3):
    if unit == "A":
        return float(limit)
    n = phases if phases and phases < charger_phases else charger_phases
    return float(limit) / ((volts if volts and volts > 100 else V_NOMINAL) * n)
