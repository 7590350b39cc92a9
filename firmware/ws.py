# An RFC 6455 WebSocket client of our own, for the OCPP-J transport (MicroPython and CPython).
#
# Three layers, each testable alone:
#   encode_frame() / Parser   the framing: pure functions of bytes (masked client frames, 7/16/64-bit
#                             lengths, fragmentation, control frames between fragments, a bound on
#                             the message size). A half-received frame is only parser state.
#   handshake_request() / check_handshake()   the HTTP/1.1 upgrade: a random key, Sec-WebSocket-Accept
#                             verified, the subprotocol required in the answer, HTTP Basic auth.
#   WsLink                    the connection in its own thread (`_thread`), like firmware/link.py:
#                             DNS, TCP connect, TLS, the handshake, every read and write, pings, the
#                             dead-server timeout and the reconnect back-off happen there. The
#                             control loop only touches two lock-protected queues and a few counters,
#                             so a dead, slow or half-answering server costs the fast loop nothing.
import binascii
import errno
import hashlib
import select
import socket
import time

try:
    import _thread
except ImportError:  # pragma: no cover
    _thread = None

from firmware import link_thread, text
from firmware.link_thread import LinkThread
from firmware.ticks import ticks_add, ticks_diff, ticks_ms

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3

OP_CONT = 0
OP_TEXT = 1
OP_BINARY = 2
OP_CLOSE = 8
OP_PING = 9
OP_PONG = 10

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL = 1002
CLOSE_BAD_DATA = 1007
CLOSE_TOO_BIG = 1009

MAX_MESSAGE = 16384  # an OCPP message larger than this is refused (close 1009): bounded RAM
CONNECT_MS = 10000
TLS_MS = 15000
HANDSHAKE_MS = 10000
IO_MS = 10000  # a write that makes no progress for this long: the server is gone
POLL_MS = 25
PING_S = 30  # WebSocketPingInterval default; 0 = no pings
DEAD_FACTOR = 3  # nothing received for DEAD_FACTOR * ping interval: the server is dead
BACKOFF_MIN_MS = 1000
BACKOFF_MAX_MS = 60000
OUTBOX_ITEMS = 16
INBOX_ITEMS = 8

_EAGAIN = (errno.EAGAIN, getattr(errno, "EWOULDBLOCK", errno.EAGAIN))
_EINPROGRESS = (errno.EINPROGRESS, errno.EAGAIN, getattr(errno, "EALREADY", 114))


class WsError(Exception):
    """A protocol violation: `code` is the close code to send."""

    def __init__(self, code, msg):
        super().__init__(msg)
        self.code = code
        self.msg = msg


def _urandom(n):
    try:
        import os

        return os.urandom(n)
    except (ImportError, AttributeError, OSError):
        import random

        return bytes(random.getrandbits(8) for _ in range(n))


# ---- framing ---------------------------------------------------------------------------------------
def encode_frame(opcode, payload, fin=True, mask=None):
    """One client frame (always masked, RFC 6455 5.3). mask: 4 bytes (random when None)."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload)
    if mask is None:
        mask = _urandom(4)
    b0 = (0x80 if fin else 0) | opcode
    if n < 126:
        head = bytes((b0, 0x80 | n))
    elif n < 65536:
        head = bytes((b0, 0x80 | 126, n >> 8, n & 0xFF))
    else:
        head = bytes((b0, 0x80 | 127)) + bytes(((n >> (8 * (7 - i))) & 0xFF) for i in range(8))
    out = bytearray(head)
    out += mask
    body = bytearray(payload)
    for i in range(n):
        body[i] ^= mask[i & 3]
    out += body
    return bytes(out)


def close_payload(code, reason=""):
    r = reason.encode() if isinstance(reason, str) else reason
    return bytes((code >> 8, code & 0xFF)) + r[:123]


class Parser:
    """Incremental reader of server frames. feed(bytes) appends; next() returns one event or None
    when more bytes are needed:
        (OP_TEXT, str)  a complete text message (strict UTF-8 is checked by the caller's decoder)
        (OP_BINARY, bytes)
        (OP_PING, bytes) / (OP_PONG, bytes)  control frames, also between fragments
        (OP_CLOSE, (code or None, reason bytes))
    Raises WsError for a protocol violation (masked server frame, reserved bits, bad opcode,
    fragmented or long control frame, continuation without a start, a message above max_message)."""

    def __init__(self, max_message=MAX_MESSAGE):
        self.max_message = max_message
        self.buf = bytearray()
        self._frag_op = None  # opcode of the fragmented message being received
        self._frag = bytearray()

    def feed(self, data):
        if len(self.buf) + len(data) > self.max_message + 16 + 14:
            # never hold more than one frame's worth: a server that floods is cut off
            self._check_pending(len(data))
        self.buf += data

    def _check_pending(self, extra):
        hdr = self._header()
        if hdr is not None and hdr[3] > self.max_message:
            raise WsError(CLOSE_TOO_BIG, "frame too large")
        if len(self.buf) + extra > 2 * (self.max_message + 30):
            raise WsError(CLOSE_TOO_BIG, "too much data buffered")

    def _header(self):
        b = self.buf
        if len(b) < 2:
            return None
        b0 = b[0]
        b1 = b[1]
        n = b1 & 0x7F
        off = 2
        if n == 126:
            if len(b) < 4:
                return None
            n = (b[2] << 8) | b[3]
            off = 4
        elif n == 127:
            if len(b) < 10:
                return None
            n = 0
            for i in range(8):
                n = (n << 8) | b[2 + i]
            off = 10
        return (b0, b1, off, n)

    def next(self):
        while True:
            hdr = self._header()
            if hdr is None:
                return None
            b0, b1, off, n = hdr
            fin = b0 & 0x80
            op = b0 & 0x0F
            if b0 & 0x70:
                raise WsError(CLOSE_PROTOCOL, "reserved bits set")
            if b1 & 0x80:
                raise WsError(CLOSE_PROTOCOL, "masked frame from the server")
            control = op >= 8
            if op not in (OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG):
                raise WsError(CLOSE_PROTOCOL, "unknown opcode %d" % op)
            if control and (not fin or n > 125):
                raise WsError(CLOSE_PROTOCOL, "fragmented or long control frame")
            if n > self.max_message or (not control and len(self._frag) + n > self.max_message):
                raise WsError(CLOSE_TOO_BIG, "message too large")
            if len(self.buf) < off + n:
                return None
            payload = bytes(self.buf[off:off + n])
            self.buf = self.buf[off + n:]
            if control:
                if op == OP_CLOSE:
                    if n == 1:
                        raise WsError(CLOSE_PROTOCOL, "1-byte close payload")
                    code = (payload[0] << 8 | payload[1]) if n >= 2 else None
                    return (OP_CLOSE, (code, payload[2:]))
                return (op, payload)
            if op == OP_CONT:
                if self._frag_op is None:
                    raise WsError(CLOSE_PROTOCOL, "continuation without a message")
                self._frag += payload
                if not fin:
                    continue
                op = self._frag_op
                payload = bytes(self._frag)
                self._frag_op = None
                self._frag = bytearray()
            elif self._frag_op is not None:
                raise WsError(CLOSE_PROTOCOL, "new message inside a fragmented one")
            elif not fin:
                self._frag_op = op
                self._frag = bytearray(payload)
                continue
            if op == OP_TEXT:
                try:
                    return (OP_TEXT, text.decode(payload))  # strict UTF-8, the one check (text.py)
                except ValueError:
                    raise WsError(CLOSE_BAD_DATA, "text frame is not UTF-8") from None
            return (OP_BINARY, payload)


# ---- handshake -----------------------------------------------------------------------------------------
def parse_url(url):
    """'ws://host:port/path' -> (tls, host, port, path). Raises ValueError."""
    if url.startswith("ws://"):
        tls = False
        rest = url[5:]
    elif url.startswith("wss://"):
        tls = True
        rest = url[6:]
    else:
        raise ValueError("URL must start with ws:// or wss://")
    i = rest.find("/")
    hostport = rest if i < 0 else rest[:i]
    path = "/" if i < 0 else rest[i:]
    if "@" in hostport or not hostport:
        raise ValueError("bad host in URL")
    if hostport.startswith("["):
        j = hostport.find("]")
        host = hostport[1:j]
        port = hostport[j + 2:] if hostport[j + 1:j + 2] == ":" else ""
    else:
        host, _, port = hostport.partition(":")
    port = int(port) if port else (443 if tls else 80)
    if port <= 0 or port > 65535:
        raise ValueError("bad port in URL")
    return tls, host, port, path


_M32 = 0xFFFFFFFF


def sha1(data):
    """SHA-1 digest (FIPS 180-4) for MicroPython builds whose hashlib has none (built without a TLS
    library: the 32-bit test ports); the ESP32's hashlib has it. Only the handshake uses it."""
    h = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0]
    n = len(data)
    data = bytes(data) + b"\x80" + bytes((55 - n) % 64) + (n * 8).to_bytes(8, "big")
    for off in range(0, len(data), 64):
        w = [int.from_bytes(data[off + 4 * i:off + 4 * i + 4], "big") for i in range(16)]
        for i in range(16, 80):
            x = w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]
            w.append(((x << 1) | (x >> 31)) & _M32)
        a, b, c, d, e = h
        for i in range(80):
            if i < 20:
                f = (b & c) | ((b ^ _M32) & d)
                k = 0x5A827999
            elif i < 40:
                f = b ^ c ^ d
                k = 0x6ED9EBA1
            elif i < 60:
                f = (b & c) | (b & d) | (c & d)
                k = 0x8F1BBCDC
            else:
                f = b ^ c ^ d
                k = 0xCA62C1D6
            t = ((((a << 5) | (a >> 27)) & _M32) + f + e + k + w[i]) & _M32
            e = d
            d = c
            c = ((b << 30) | (b >> 2)) & _M32
            b = a
            a = t
        h = [(h[0] + a) & _M32, (h[1] + b) & _M32, (h[2] + c) & _M32, (h[3] + d) & _M32, (h[4] + e) & _M32]
    return b"".join(x.to_bytes(4, "big") for x in h)


def _sha1_digest(data):
    f = getattr(hashlib, "sha1", None)
    return f(data).digest() if f is not None else sha1(data)


def accept_for(key):
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (bytes or str)."""
    if isinstance(key, str):
        key = key.encode()
    return binascii.b2a_base64(_sha1_digest(key + GUID)).strip().decode()


def handshake_request(host, port, path, key, protocol, user=None, password=None):
    hostport = host if port in (80, 443) else "%s:%d" % (host, port)
    lines = [
        "GET %s HTTP/1.1" % path,
        "Host: %s" % hostport,
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: %s" % key,
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Protocol: %s" % protocol,
    ]
    if password is not None:
        cred = ("%s:%s" % (user, password)).encode()
        lines.append("Authorization: Basic %s" % binascii.b2a_base64(cred).strip().decode())
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def check_handshake(head, key, protocol):
    """The server's answer (bytes up to the blank line). Raises WsError(0, why) when it is not a
    valid upgrade for our key with our subprotocol."""
    try:
        answer = text.decode(head)
    except ValueError:
        raise WsError(0, "handshake answer is not text") from None
    lines = answer.split("\r\n")
    status = lines[0].split(" ")
    if len(status) < 2 or not status[0].startswith("HTTP/1.1"):
        raise WsError(0, "not an HTTP/1.1 answer: %s" % lines[0][:60])
    if status[1] != "101":
        raise WsError(0, "server answered %s" % " ".join(status[1:])[:60])
    hdrs = {}
    for ln in lines[1:]:
        k, sep, v = ln.partition(":")
        if sep:
            hdrs[k.strip().lower()] = v.strip()
    if hdrs.get("upgrade", "").lower() != "websocket":
        raise WsError(0, "no Upgrade: websocket")
    if "upgrade" not in hdrs.get("connection", "").lower():
        raise WsError(0, "no Connection: Upgrade")
    if hdrs.get("sec-websocket-accept") != accept_for(key):
        raise WsError(0, "wrong Sec-WebSocket-Accept")
    if hdrs.get("sec-websocket-protocol") != protocol:
        raise WsError(0, "server did not accept subprotocol %s" % protocol)
    return hdrs


def new_key():
    return binascii.b2a_base64(_urandom(16)).strip().decode()


def backoff_ms(attempt, lo=BACKOFF_MIN_MS, hi=BACKOFF_MAX_MS):
    return link_thread.backoff_ms(attempt, lo, hi)


# ---- a socket with deadlines (the link thread only) ----------------------------------------------------
class _Sock:
    """A non-blocking socket (TLS-wrapped for wss) whose waits are bounded polls. Works with CPython's
    recv/send and MicroPython's read/write (its TLS socket has only those)."""

    def __init__(self, raw):
        self.raw = raw
        self.s = raw
        self.poll = select.poll()
        self.poll.register(raw, select.POLLIN)
        self.rx_bytes = 0

    def _rd(self, n):
        f = getattr(self.s, "recv", None) or self.s.read
        try:
            return f(n)
        except OSError as e:
            if e.args and e.args[0] in _EAGAIN:
                return None
            raise

    def _wr(self, mv):
        f = getattr(self.s, "send", None) or self.s.write
        try:
            return f(mv)
        except OSError as e:
            if e.args and e.args[0] in _EAGAIN:
                return None
            raise

    def wait(self, ev, ms):
        p = self.poll
        p.modify(self.s, ev)
        return p.poll(ms)

    def read_some(self, n, ms):
        """Up to n bytes, waiting at most ms; b'' when nothing came (EOF raises)."""
        b = self._rd(n)
        if b is None:
            if not self.wait(select.POLLIN, ms):
                return b""
            b = self._rd(n)
            if b is None:  # a TLS record not complete yet
                return b""
        if not b:
            raise OSError(errno.ECONNRESET)
        self.rx_bytes += len(b)
        return b

    def write_all(self, data, io_ms):
        mv = memoryview(data)
        off = 0
        deadline = ticks_add(ticks_ms(), io_ms)
        while off < len(mv):
            k = self._wr(mv[off:])
            if not k:
                left = ticks_diff(deadline, ticks_ms())
                if left <= 0:
                    raise OSError(errno.ETIMEDOUT)
                self.wait(select.POLLOUT, left if left < 100 else 100)
                continue
            off += k
            deadline = ticks_add(ticks_ms(), io_ms)  # progress: the bound is per chunk

    def close(self):
        for s in (self.s, self.raw):
            try:
                s.close()
            except Exception:  # noqa: BLE001
                pass


def _connect_tcp(host, port, ms):
    ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
    raw = socket.socket(ai[0], socket.SOCK_STREAM)
    raw.setblocking(False)
    try:
        raw.connect(ai[-1])
    except OSError as e:
        if not e.args or e.args[0] not in _EINPROGRESS:
            raw.close()
            raise
    p = select.poll()
    p.register(raw, select.POLLOUT)
    ev = p.poll(ms)
    if not ev:
        raw.close()
        raise OSError(errno.ETIMEDOUT)
    if ev[0][1] & (select.POLLERR | select.POLLHUP):
        raw.close()
        raise OSError(errno.ECONNREFUSED)
    err = 0
    if hasattr(raw, "getsockopt") and hasattr(socket, "SO_ERROR"):
        err = raw.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        raw.close()
        raise OSError(err)
    return raw


def _wrap_tls(raw, cadata, host, ms):
    from firmware.mqtt_socket import make_context

    ctx = make_context(cadata)
    raw.setblocking(True)
    try:
        raw.settimeout(ms / 1000)
    except (AttributeError, OSError):
        pass
    try:
        s = ctx.wrap_socket(raw, server_hostname=host)
    except Exception:
        raw.close()
        raise
    try:
        s.setblocking(False)
    except (AttributeError, OSError):
        pass
    return s


# ---- the connection thread ---------------------------------------------------------------------------
class WsLink(LinkThread):
    """A WebSocket client connection kept up in its own thread. The control loop calls only
    start(), send(text), get() -> str or None, connected, connect_count, set_ping_interval(),
    status(), shutdown(timeout_ms, idle): none of them touches the network."""

    def __init__(self, url, protocol="ocpp1.6", user=None, password=None, cadata=None,
                 max_message=MAX_MESSAGE, ping_s=PING_S, connect_ms=CONNECT_MS, tls_ms=TLS_MS,
                 handshake_ms=HANDSHAKE_MS, io_ms=IO_MS, poll_ms=POLL_MS,
                 backoff_min_ms=BACKOFF_MIN_MS, backoff_max_ms=BACKOFF_MAX_MS,
                 outbox_items=OUTBOX_ITEMS, inbox_items=INBOX_ITEMS, stack_size=16384, log=None):
        self.tls, self.host, self.port, self.path = parse_url(url)
        if self.tls and not cadata:
            raise ValueError("wss:// needs the CA certificate")
        self.url = url
        self.protocol = protocol
        self.user = user
        self.password = password
        self.cadata = cadata
        self.max_message = max_message
        self.connect_ms = connect_ms
        self.tls_ms = tls_ms
        self.handshake_ms = handshake_ms
        self.io_ms = io_ms
        self.poll_ms = poll_ms
        self.backoff_min_ms = backoff_min_ms
        self.backoff_max_ms = backoff_max_ms
        self.outbox_items = outbox_items
        self.inbox_items = inbox_items
        self.stack_size = stack_size
        self.log = log
        self._lock = _thread.allocate_lock()
        # shared state, under self._lock
        self._out = []
        self._in = []
        self._ping_s = ping_s
        self._connected = False
        self._connect_count = 0
        self._dropped_out = 0
        self._dropped_in = 0
        self._attempts = 0
        self._last_error = None
        self._stop = False
        self._shutdown = False
        self._running = False
        self._close_code = None  # what the server's close frame said last
        self.pings = 0
        self.pongs = 0

    # ---- control thread API -----------------------------------------------------------------------
    def send(self, text):
        """Queue a text message. False when the oldest queued one had to be dropped to make room
        (the RPC layer keeps one CALL outstanding, so this only happens with a backed-up link)."""
        ok = True
        with self._lock:
            self._out.append(text)
            while len(self._out) > self.outbox_items:
                self._out.pop(0)
                self._dropped_out += 1
                ok = False
        return ok

    def clear_outbox(self):
        """After a reconnect what was queued for the old connection is stale (its CALLs timed out)."""
        with self._lock:
            self._out = []

    def set_ping_interval(self, s):
        with self._lock:
            self._ping_s = s

    def status(self):
        with self._lock:
            return {"connected": self._connected, "connect_count": self._connect_count,
                    "outbox": len(self._out), "dropped_out": self._dropped_out, "dropped_in": self._dropped_in,
                    "attempts": self._attempts, "error": self._last_error, "running": self._running,
                    "close_code": self._close_code, "pings": self.pings, "pongs": self.pongs}

    def shutdown(self, timeout_ms=2000, idle=None):
        """Deliberate close: flush the outbox, close handshake with 1000 (1001 on restart is the
        server's business). Waits at most timeout_ms, calling idle() every ~10 ms."""
        start = ticks_ms()
        with self._lock:
            if not self._running:
                return True
            self._shutdown = True
        return self._wait_stopped(start, timeout_ms, idle)

    # ---- the link thread -------------------------------------------------------------------------
    def _flag(self):
        with self._lock:
            if self._stop:
                return "stop"
            if self._shutdown:
                return "shutdown"
        return None

    def _run(self):
        attempt = 0
        try:
            while self._flag() is None:
                with self._lock:
                    self._attempts += 1
                t0 = ticks_ms()
                sock = None
                try:
                    sock = self._open()
                    self._serve(sock)
                except Exception as e:  # noqa: BLE001  every failure means: back off, retry
                    self._say("ws: down:", repr(e))
                    with self._lock:
                        self._last_error = repr(e)[:80]
                finally:
                    with self._lock:
                        self._connected = False
                    if sock is not None:
                        sock.close()
                if self._flag() is not None:
                    break
                if ticks_diff(ticks_ms(), t0) >= 60000:
                    attempt = 0
                if self._sleep(backoff_ms(attempt, self.backoff_min_ms, self.backoff_max_ms)):
                    break
                attempt += 1
        finally:
            with self._lock:
                self._connected = False
                self._running = False

    def _open(self):
        self._say("ws: connecting", self.host, self.port, self.path)
        raw = _connect_tcp(self.host, self.port, self.connect_ms)
        s = _Sock(raw)
        if self.tls:
            s.s = _wrap_tls(raw, self.cadata, self.host, self.tls_ms)
            s.poll = select.poll()
            s.poll.register(s.s, select.POLLIN)
        key = new_key()
        user = self.user
        s.write_all(handshake_request(self.host, self.port, self.path, key, self.protocol, user,
                                      self.password), self.io_ms)
        head = bytearray()
        deadline = ticks_add(ticks_ms(), self.handshake_ms)
        while True:
            i = bytes(head).find(b"\r\n\r\n")  # MicroPython's bytearray has no find()
            if i >= 0:
                break
            if len(head) > 4096:
                raise WsError(0, "handshake answer too long")
            left = ticks_diff(deadline, ticks_ms())
            if left <= 0:
                raise OSError(errno.ETIMEDOUT)
            head += s.read_some(512, left if left < 100 else 100)
        check_handshake(bytes(head[:i]), key, self.protocol)
        self._rest = bytes(head[i + 4:])  # frames that came with the answer
        with self._lock:
            # what was queued for the old connection belongs to CALLs that the RPC layer has
            # given up on at the drop: sending them now would duplicate them
            self._out = []
            self._connected = True
            self._connect_count += 1
            self._last_error = None
        self._say("ws: connected")
        return s

    def _serve(self, s):
        parser = Parser(self.max_message)
        if self._rest:  # frames that came in the same read as the handshake answer
            parser.feed(self._rest)
            self._rest = b""
            self._drain(parser, s)
        now = ticks_ms()
        last_rx = now
        last_ping = now
        rx = s.rx_bytes
        closing_at = None
        while True:
            flag = self._flag()
            if flag == "stop":
                return
            with self._lock:
                item = self._out.pop(0) if self._out else None
                room = len(self._in) < self.inbox_items
                ping_ms = self._ping_s * 1000
            if flag == "shutdown" and item is None and closing_at is None:
                s.write_all(encode_frame(OP_CLOSE, close_payload(CLOSE_NORMAL)), self.io_ms)
                closing_at = ticks_ms()
            if item is not None:
                s.write_all(encode_frame(OP_TEXT, item), self.io_ms)
                continue
            if room:
                try:
                    data = s.read_some(1024, self.poll_ms)
                except OSError:
                    if closing_at is not None:
                        return  # the server closed the TCP after our close: done
                    raise
                if data:
                    try:
                        parser.feed(data)
                        self._drain(parser, s)
                    except WsError as e:
                        self._say("ws: protocol error:", e.msg)
                        s.write_all(encode_frame(OP_CLOSE, close_payload(e.code)), self.io_ms)
                        raise
            else:
                time.sleep_ms(self.poll_ms) if hasattr(time, "sleep_ms") else time.sleep(self.poll_ms / 1000)
            if self._closed_by_server:
                self._closed_by_server = False
                return
            now = ticks_ms()
            if s.rx_bytes != rx:
                rx = s.rx_bytes
                last_rx = now
            if closing_at is not None and ticks_diff(now, closing_at) >= 2000:
                return  # no close answer: give up on the handshake, the TCP goes anyway
            if ping_ms > 0:
                if ticks_diff(now, last_rx) >= DEAD_FACTOR * ping_ms:
                    raise OSError(errno.ETIMEDOUT)  # no pong, no traffic
                if ticks_diff(now, last_rx) >= ping_ms and ticks_diff(now, last_ping) >= ping_ms:
                    s.write_all(encode_frame(OP_PING, b"p"), self.io_ms)
                    self.pings += 1
                    last_ping = now

    _closed_by_server = False
    _rest = b""

    def _drain(self, parser, s):
        while True:
            ev = parser.next()
            if ev is None:
                return
            op, data = ev
            if op == OP_TEXT:
                with self._lock:
                    if len(self._in) >= 2 * self.inbox_items:
                        self._dropped_in += 1
                    else:
                        self._in.append(data)
            elif op == OP_PING:
                s.write_all(encode_frame(OP_PONG, data), self.io_ms)
            elif op == OP_PONG:
                self.pongs += 1
            elif op == OP_CLOSE:
                code = data[0]
                with self._lock:
                    self._close_code = code
                try:
                    # echo the code (RFC 6455 5.5.1); our own close already sent is answered by theirs
                    s.write_all(encode_frame(OP_CLOSE, close_payload(code or CLOSE_NORMAL)), self.io_ms)
                except OSError:
                    pass
                self._closed_by_server = True
                return
            # binary frames mean nothing in OCPP-J: ignored
