# A socket for umqtt.simple that never blocks forever (MicroPython only; used by firmware/link.py).
#
# umqtt.simple reads with plain blocking sock.read(n) calls and flips the socket with setblocking()
# (check_msg: non-blocking for the first byte, then wait_msg sets it blocking for the rest of the
# packet). This shim keeps the real socket non-blocking all the time and maps those modes to
# bounded waits on select.poll:
#   - "poll" mode (setblocking(False) / settimeout(0)): read() waits at most `poll_ms` for data and
#     returns None when nothing came: low inbound latency without busy-looping;
#   - "blocking" mode (setblocking(True) / settimeout(None or t)): every read/write completes within
#     `io_ms` or raises OSError(ETIMEDOUT): a blackholed broker or a half-received packet cannot
#     hold the link thread forever.
# A read of more than `max_payload` bytes can only be a PUBLISH payload: it is drained in small
# chunks and the OVERSIZED marker is returned instead of allocating it.
# Patched into umqtt.simple as its `socket` module (socket(), getaddrinfo()) and, for umqtt 1.3.4
# which imports `ussl`, as `ussl` (wrap_socket(sock, ctx=, server_hostname=)).
import errno
import io
import json
import select
import socket as _socket

from firmware.ticks import const, ticks_add, ticks_diff, ticks_ms

OVERSIZED = b"\x00oversized"  # identity-compared marker handed to umqtt's callback
_CHUNK = const(256)

_EAGAIN = (errno.EAGAIN, getattr(errno, "EWOULDBLOCK", errno.EAGAIN))
_EINPROGRESS = (errno.EINPROGRESS, errno.EAGAIN, getattr(errno, "EALREADY", 114))

# Defaults, overridden per connection by firmware/link.py
POLL_MS = 25
IO_MS = 10000
CONNECT_MS = 10000
TLS_MS = 15000
MAX_PAYLOAD = 8192


def getaddrinfo(host, port, *args):
    # DNS blocks the calling thread (the link's), never the control loop.
    return _socket.getaddrinfo(host, port, *args)


def _timeout():
    return OSError(errno.ETIMEDOUT)


class MqttSocket:
    def __init__(self, *args):
        self.raw = _socket.socket(*args)
        self.s = self.raw  # the TLS socket once wrapped
        self.blocking = True
        self.poll_ms = POLL_MS
        self.io_ms = IO_MS
        self.connect_ms = CONNECT_MS
        self.tls_ms = TLS_MS
        self.max_payload = MAX_PAYLOAD
        self.rx_bytes = 0  # counted by the link's dead-link detector
        self.tx_bytes = 0
        self._poll = select.poll()
        self._scratch = None  # for draining an oversized payload: allocated when one comes
        self._closed = False

    # -- modes asked for by umqtt ------------------------------------------------------------
    def setblocking(self, flag):
        self.blocking = bool(flag)

    def settimeout(self, t):
        # umqtt >= 1.4 calls settimeout(timeout) in connect(); None would mean "forever": we keep
        # our own bound instead.
        self.blocking = t is None or t > 0
        if t is not None and t > 0:
            self.io_ms = int(t * 1000)

    # -- connection ---------------------------------------------------------------------------
    def connect(self, addr):
        raw = self.raw
        raw.setblocking(False)
        try:
            raw.connect(addr)
        except OSError as e:
            if e.args[0] not in _EINPROGRESS:
                raise
        p = select.poll()
        p.register(raw, select.POLLOUT)
        ev = p.poll(self.connect_ms)
        if not ev:
            raise _timeout()
        flags = ev[0][1]
        if flags & (select.POLLERR | select.POLLHUP):
            # the pending error (ECONNREFUSED, ...) surfaces on the first read
            try:
                raw.read(1)
            except OSError:
                raise
            raise OSError(errno.ECONNREFUSED)

    def wrap_tls(self, ctx, server_hostname):
        # The handshake runs blocking with a socket timeout: in the link thread only.
        raw = self.raw
        raw.settimeout(self.tls_ms / 1000)
        self.s = ctx.wrap_socket(raw, server_hostname=server_hostname)
        raw.setblocking(False)
        try:
            self.s.setblocking(False)
        except (AttributeError, OSError):
            pass
        return self

    # -- I/O --------------------------------------------------------------------------------
    def _wait(self, ev, ms):
        p = self._poll
        p.register(self.s, ev)
        r = p.poll(ms)
        p.unregister(self.s)
        return r

    def _read_some(self, n):
        try:
            b = self.s.read(n)
        except OSError as e:
            if e.args[0] in _EAGAIN:
                return None
            raise
        return b

    def read(self, n):
        if n > self.max_payload:
            return self._discard(n)
        if self.blocking:
            return self._read_exact(n)
        b = self._read_some(n)
        if b is None:
            if not self._wait(select.POLLIN, self.poll_ms):
                return None
            b = self._read_some(n)
            if b is None:  # a TLS record still incomplete: nothing to hand out yet
                return None
        if not b:
            return b  # EOF: umqtt raises OSError(-1)
        self.rx_bytes += len(b)
        if len(b) < n:
            b += self._read_exact(n - len(b))
        return b

    def _read_exact(self, n):
        deadline = ticks_add(ticks_ms(), self.io_ms)
        out = b""
        while len(out) < n:
            b = self._read_some(n - len(out))
            if b is None:
                left = ticks_diff(deadline, ticks_ms())
                if left <= 0 or not self._wait(select.POLLIN, left):
                    raise _timeout()
                continue
            if not b:
                raise OSError(errno.ECONNRESET)  # EOF in the middle of a packet
            self.rx_bytes += len(b)
            out = b if not out else out + b
        return out

    def _discard(self, n):
        deadline = ticks_add(ticks_ms(), self.io_ms)
        buf = self._scratch
        if buf is None:
            buf = self._scratch = bytearray(_CHUNK)
        mv = memoryview(buf)
        while n > 0:
            k = n if n < _CHUNK else _CHUNK
            try:
                got = self.s.readinto(mv[:k])
            except OSError as e:
                if e.args[0] not in _EAGAIN:
                    raise
                got = None
            if got is None:
                left = ticks_diff(deadline, ticks_ms())
                if left <= 0 or not self._wait(select.POLLIN, left):
                    raise _timeout()
                continue
            if not got:
                raise OSError(errno.ECONNRESET)
            n -= got
            self.rx_bytes += got
            deadline = ticks_add(ticks_ms(), self.io_ms)  # progress: the bound is per chunk
        return OVERSIZED

    def write(self, buf, n=None):
        if isinstance(buf, Parts):  # a payload of dump_parts(): its parts one after the other
            for p in buf.parts:
                self.write(p)
            return buf.n
        mv = memoryview(buf)
        if n is not None:
            mv = mv[:n]
        total = len(mv)
        deadline = ticks_add(ticks_ms(), self.io_ms)
        off = 0
        while off < total:
            try:
                k = self.s.write(mv[off:])
            except OSError as e:
                if e.args[0] not in _EAGAIN:
                    raise
                k = None
            if not k:
                left = ticks_diff(deadline, ticks_ms())
                if left <= 0 or not self._wait(select.POLLOUT, left):
                    raise _timeout()
                continue
            off += k
            self.tx_bytes += k
        return total

    def close(self):
        if self._closed:
            return
        self._closed = True
        try:
            self.s.close()
        except OSError:
            pass
        if self.s is not self.raw:
            try:
                self.raw.close()
            except OSError:
                pass


def socket(*args):
    return MqttSocket(*args)


# ---- payloads without a block of their whole size ---------------------------------------------
_DOC_BYTES = const(640)  # a charging `state` (~600 B) fits; a larger document grows the buffer once
_PART = const(127)  # with its terminating NUL a part fills 8 GC blocks exactly
_doc = None  # the io.BytesIO that dump_parts() serializes into (MicroPython), False on CPython


class Parts:
    """A payload held as a few small bytes objects (len() is its size): umqtt takes len(msg) and
    hands msg to write(), which writes the parts in turn."""

    def __init__(self, parts, n):
        self.parts = parts
        self.n = n

    def __len__(self):
        return self.n


def dump_parts(doc):
    """A JSON payload (UTF-8): doc is a dict, or a function that writes the document into the
    text stream it is given (protocol.Envelope.write). On MicroPython the JSON is written into one
    buffer allocated once (at the first message, early at boot) and the payload is copied out of it
    in 127-byte parts: a ~500-byte `state` needs neither a string grown by reallocation nor its
    encoded copy, the two blocks of that size that a small, fragmented heap runs out of first.
    CPython: bytes. Control thread only (the buffer is shared)."""
    global _doc
    b = _doc
    if b is None:
        try:
            b = io.BytesIO(_DOC_BYTES)  # MicroPython: empty, preallocated
        except TypeError:  # CPython: BytesIO takes initial bytes, json.dump writes str
            b = False
        _doc = b
    if b is False:
        s = io.StringIO()
        if callable(doc):
            doc(s)
        else:
            json.dump(doc, s)
        return s.getvalue().encode()
    b.seek(0)
    if callable(doc):
        doc(b)
    else:
        json.dump(doc, b)
    n = b.tell()
    b.seek(0)
    parts = []
    left = n
    while left > 0:
        k = left if left < _PART else _PART
        parts.append(b.read(k))
        left -= k
    return Parts(parts, n)


# ---- `ussl` for umqtt.simple 1.3.4 (ussl.wrap_socket(sock, **ssl_params)) -------------------
def wrap_socket(sock, ctx=None, server_hostname=None, **kw):
    if ctx is None:
        raise OSError(errno.EINVAL)
    return sock.wrap_tls(ctx, server_hostname)


class TlsContext:
    """What umqtt >= 1.4 expects as `ssl=`: an object with wrap_socket(sock, server_hostname=)."""

    def __init__(self, ctx):
        self.ctx = ctx

    def wrap_socket(self, sock, server_hostname=None, **kw):
        return sock.wrap_tls(self.ctx, server_hostname)


def pem_to_der(data):
    """The first certificate of a PEM text as DER (some mbedTLS builds, the unix port's among them,
    parse only DER)."""
    import binascii

    if isinstance(data, str):
        data = data.encode()
    start = data.find(b"-----BEGIN CERTIFICATE-----")
    if start < 0:
        return data  # DER already
    start = data.find(b"\n", start) + 1
    end = data.find(b"-----END CERTIFICATE-----", start)
    if start <= 0 or end < 0:
        raise ValueError("bad PEM")
    return binascii.a2b_base64(b"".join(data[start:end].split()))


def make_context(cadata, verify=True):
    """ssl.SSLContext for a client that verifies the broker against the provisioned CA."""
    try:
        import ssl
    except ImportError:  # `ssl` is a frozen wrapper; without `.frozen` on the path use `tls` itself
        import tls as ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ctx.verify_mode = ssl.CERT_REQUIRED
        der = pem_to_der(cadata)
        try:
            ctx.load_verify_locations(cadata=der)  # the `ssl` wrapper
        except TypeError:
            ctx.load_verify_locations(der)  # `tls` itself: positional only
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
