# Units, number checks, bounds and error codes, in one place for every part (core, settings,
# protocol parsing, any backend). Deci-amperes (da, 0.1 A) are the core's current unit: integers,
# so the fast path never touches a float.

# error codes of the contract's `reply` / `rejected` messages
BAD_JSON = "bad_json"
BAD_REQUEST = "bad_request"
UNKNOWN_OP = "unknown_op"
OUT_OF_RANGE = "out_of_range"
NOT_ALLOWED = "not_allowed"
BUSY = "busy"
UNAUTHENTICATED = "unauthenticated"  # contract v1.1: signed messages
REPLAY = "replay"
ERRORS = (BAD_JSON, BAD_REQUEST, UNKNOWN_OP, OUT_OF_RANGE, NOT_ALLOWED, BUSY, UNAUTHENTICATED, REPLAY)

MAX_AMPS = 1000  # the largest current a `limit` may name
MAX_ID = 64  # command ids, auth ids, session ids, tag uids
TTL_DEFAULT_S = 60  # lease of a `limit` without ttl_s
TTL_MIN_S = 1
TTL_MAX_S = 3600
MAX_SEQ = 2 ** 53  # JSON-safe integers only


def da(a):
    """Amperes -> deci-amperes, rounded half up (inputs are validated non-negative)."""
    return int(a * 10 + 0.5)


def amps_1dp(a):
    """A validated current as the contract carries it: an int when whole, else rounded to 0.1 A."""
    return int(a) if a == int(a) else round(a * 10) / 10


def is_number(v):
    """A finite JSON number that is not a bool."""
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return True
    if isinstance(v, float):
        return v == v and v not in (float("inf"), float("-inf"))
    return False


def is_int(v):
    return is_number(v) and v == int(v)
