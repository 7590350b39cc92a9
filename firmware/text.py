# Text that enters the firmware from outside (MQTT payloads, and whatever else gets parsed as JSON)
# is checked here and nowhere else, so that everything the charger stores or sends is strict UTF-8.
# Runs on CPython and MicroPython.
#
#   valid(b)        -> True when the bytes are strict UTF-8 (RFC 3629): no overlong forms, no
#                      encoded surrogates (ED A0..BF xx), nothing above U+10FFFF, no stray or missing
#                      continuation bytes. NUL and other control characters are valid UTF-8.
#   decode(payload) -> str from bytes/bytearray/str; ValueError unless it is strict UTF-8. A str is
#                      checked too: on CPython it may hold surrogates, on MicroPython any bytes.
#   clean(obj)      -> the decoded JSON document (dicts, lists, strings, numbers...) with every
#                      escaped surrogate pair ("\ud835\udfd9") combined into the one character it
#                      encodes; ValueError for a lone surrogate (or a code point past U+10FFFF)
#                      anywhere, keys included. Lists and dicts are fixed in place; a string
#                      without surrogates is returned as it is.
#   quote(v, n)     -> a printable-ASCII form of anything (str, bytes, other) of at most n characters,
#                      for an error's detail; never raises.
#
# Why not trust the runtimes: MicroPython's bytes.decode() (unix port 1.29, measured) refuses only
# broken structure (a stray continuation byte, an F8..FF lead, a missing or non-continuation byte in
# a sequence); it accepts overlong forms (C0 AF -> "/"), encoded surrogates (ED A0 80) and code
# points up to 0x1FFFFF (F4 90 80 80, F7 BF BF BF), and its json.loads() turns "\ud835\udfd9" into two
# separate code points, which it then encodes as CESU-8. CPython's decoder is strict, but its json
# keeps a lone "\ud800" as a surrogate that no strict encoder accepts. After decode(), a surrogate
# can only come from a \u escape: callers that see no "\\u" in the text may skip clean().

_LONE = "lone surrogate"


def valid(b):
    # Indexing bytes gives small ints: the check allocates nothing on MicroPython.
    n = len(b)
    i = 0
    while i < n:
        c = b[i]
        if c < 0x80:
            i += 1
            continue
        # lo..hi bounds the second byte: that is where overlong forms, surrogates and
        # > U+10FFFF show (RFC 3629 section 4); the later bytes are plain 80..BF.
        lo = 0x80
        hi = 0xBF
        if c < 0xC2:  # a continuation byte as a lead, or C0/C1 (overlong ASCII)
            return False
        if c < 0xE0:
            k = 1
        elif c < 0xF0:
            k = 2
            if c == 0xE0:
                lo = 0xA0
            elif c == 0xED:
                hi = 0x9F
        elif c < 0xF5:
            k = 3
            if c == 0xF0:
                lo = 0x90
            elif c == 0xF4:
                hi = 0x8F
        else:
            return False
        if i + k >= n:
            return False
        c = b[i + 1]
        if c < lo or c > hi:
            return False
        j = i + 2
        i += k + 1
        while j < i:
            c = b[j]
            if c < 0x80 or c > 0xBF:
                return False
            j += 1
    return True


def decode(payload):
    if isinstance(payload, str):
        try:
            b = payload.encode()  # CPython: UnicodeEncodeError for a surrogate
        except UnicodeError:
            raise ValueError("not valid UTF-8") from None
        if not valid(b):
            raise ValueError("not valid UTF-8")
        return payload
    try:
        s = payload.decode()
    except UnicodeError:
        raise ValueError("not valid UTF-8") from None
    # Same length in characters and bytes: all ASCII, nothing for the slow check to find.
    if len(s) != len(payload) and not valid(payload):
        raise ValueError("not valid UTF-8")
    return s


def _suspect(s):
    # > U+10FFFF too: MicroPython's json reads any 4 characters after \u as "hex" ("\uZZZZ" gives
    # U+23333); what it makes stays below U+10FFFF as far as measured, but that is not promised.
    for ch in s:  # iterating a str allocates nothing on MicroPython (measured under heap_lock)
        o = ord(ch)
        if 0xD800 <= o <= 0xDFFF or o > 0x10FFFF:
            return True
    return False


def _combine(s):
    # Rare path: only strings that hold a surrogate get here. The new string is built from slices
    # of the runs between pairs, not from single characters, to stay near the string's own size.
    parts = []
    start = 0
    high = 0
    i = 0
    for ch in s:
        o = ord(ch)
        if high:
            if o < 0xDC00 or o > 0xDFFF:
                raise ValueError(_LONE)
            parts.append(chr(0x10000 + ((high - 0xD800) << 10) + (o - 0xDC00)))
            high = 0
            start = i + 1
        elif 0xD800 <= o <= 0xDBFF:
            if i > start:
                parts.append(s[start:i])
            high = o
        elif 0xDC00 <= o <= 0xDFFF:
            raise ValueError(_LONE)
        elif o > 0x10FFFF:
            raise ValueError("beyond U+10FFFF")
        i += 1
    if high:
        raise ValueError(_LONE)
    if start < i:
        parts.append(s[start:])
    return "".join(parts)


def _text(s):
    if _suspect(s):
        return _combine(s)
    return s


def clean(obj, depth=0):
    if depth > 32:  # protocol.loads bounds nesting at 16 before this; a standalone caller gets a limit too
        raise ValueError("nesting too deep")
    if isinstance(obj, str):
        return _text(obj)
    if isinstance(obj, list):
        for i in range(len(obj)):
            v = obj[i]
            c = clean(v, depth + 1)
            if c is not v:
                obj[i] = c
    elif isinstance(obj, dict):
        renamed = None
        for k in obj:
            v = obj[k]
            c = clean(v, depth + 1)
            if c is not v:
                obj[k] = c  # same key: allowed while iterating
            if isinstance(k, str) and _suspect(k):
                if renamed is None:
                    renamed = []
                renamed.append(k)
        if renamed:  # keys change after the loop: a dict must not grow while it is iterated
            for k in renamed:
                obj[_combine(k)] = obj.pop(k)
    return obj


_HEX = b"0123456789abcdef"


def _escape(buf, o):
    buf.append(0x5C)  # backslash
    if o < 0x100:
        buf.append(0x78)  # x
        width = 2
    elif o < 0x10000:
        buf.append(0x75)  # u
        width = 4
    else:
        buf.append(0x55)  # U
        width = 8
    for sh in range((width - 1) * 4, -1, -4):
        buf.append(_HEX[(o >> sh) & 15])


def quote(v, n=120):
    # Built from code points (ord), never by copying the input: on MicroPython a str made by a lax
    # decode can hold invalid bytes whose ord() looks harmless (C0 AF gives "/").
    try:
        if not isinstance(v, (str, bytes, bytearray)):
            v = str(v)
        buf = bytearray()
        cut = -1  # length before the first piece that leaves no room for "..."
        for x in v:
            o = x if isinstance(x, int) else ord(x)
            before = len(buf)
            if 0x20 <= o < 0x7F and o != 0x5C:
                buf.append(o)
            elif o == 0x5C:
                buf.append(0x5C)
                buf.append(0x5C)
            else:
                _escape(buf, o)
            if cut < 0 and len(buf) > n - 3:
                cut = before
            if len(buf) > n:
                buf = buf[:cut] + b"..."  # MicroPython's bytearray has no slice deletion
                break
        return buf[:n].decode()
    except Exception:  # noqa: BLE001  a detail is best effort: never lose the error reply over it
        return "?"
