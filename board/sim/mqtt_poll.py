# A simulator-only MQTT 3.1.1 client without threads, for the one-process fleet (board/sim/fleet.py):
# every connection is a non-blocking socket, and one Hub polls all of them (select.poll) and is
# stepped from the fleet's loop. PollLink offers what the MQTT backend (firmware/cloud.py), the panel
# and the app use of firmware/link.py's Link: topics, add_topic, publish, get/recv, pending,
# connected, connect_count, status, start, stop, shutdown; with the same outbox (bounded, `key`
# entries coalesce), the same inbox (bounded; oversized payloads arrive as None), QoS 1 both ways,
# the retained `online` after every connect with `offline` as last will, keep-alive pings, a dead
# link detected after 2/3 of the keep-alive, and the jittered back-off of firmware/link_thread.py.
# A device keeps firmware/link.py: this is the simulator's transport, so that a thousand chargers
# do not need a thousand threads. Runs on the MicroPython unix port (and CPython).
import errno
import select
import socket

from firmware.link_thread import backoff_ms
from firmware.ticks import ticks_add, ticks_diff, ticks_ms

KEEPALIVE_S = 30
CONNECT_MS = 10000  # TCP connect + CONNACK + SUBACK
BACKOFF_MIN_MS = 1000
BACKOFF_MAX_MS = 60000
STABLE_MS = 60000
MAX_PAYLOAD = 8192
OUTBOX_ITEMS = 24
OUTBOX_BYTES = 16384
INBOX_ITEMS = 16
INFLIGHT = 8  # QoS 1 publishes sent and not yet acknowledged
RECV_BYTES = 4096

_DOWN = 0  # waiting for the next attempt
_CONNECTING = 1  # TCP connect in progress
_HANDSHAKE = 2  # CONNECT sent, waiting for CONNACK / SUBACK
_UP = 3
_CLOSING = 4  # shutdown: flushing, then offline + DISCONNECT
_OFF = 5  # not started, stopped or shut down

_EAGAIN = (errno.EAGAIN, getattr(errno, "EWOULDBLOCK", errno.EAGAIN))
_EINPROGRESS = (errno.EINPROGRESS, errno.EAGAIN)


def _u16(n):
    return bytes(((n >> 8) & 0xFF, n & 0xFF))


def _str(b):
    return _u16(len(b)) + b


def _packet(first, body):
    n = len(body)
    hdr = bytearray((first,))
    while True:
        d = n & 0x7F
        n >>= 7
        hdr.append(d | 0x80 if n else d)
        if not n:
            break
    return bytes(hdr) + body


def _b(x):
    return x.encode() if isinstance(x, str) else x


def _size(item):
    return len(item[0]) + len(item[1]) + 16


class Hub:
    """One select.poll over every PollLink's socket. step(timeout_ms) waits at most that long for
    socket events, handles them, then flushes what the links have queued and runs their timers."""

    def __init__(self, host="127.0.0.1", port=1883):
        self.host = host
        self.port = port
        self._addr = None
        self.poll = select.poll()
        self.links = []
        self._by_sock = {}
        self._dirty = []  # links with something new to send
        self._timers_at = ticks_ms()
        # counters for the fleet's statistics
        self.tx_msgs = 0
        self.rx_msgs = 0
        self.connects = 0
        self.drops = 0

    def addr(self):
        if self._addr is None:
            self._addr = socket.getaddrinfo(self.host, self.port)[0][-1]
        return self._addr

    def link(self, client_id, subscriptions=None, online_topic=None, **kw):
        lk = PollLink(self, client_id, subscriptions, online_topic, **kw)
        self.links.append(lk)
        return lk

    def remove(self, lk):
        lk._close()
        if lk in self.links:
            self.links.remove(lk)

    def _watch(self, lk, sock, out):
        self._by_sock[sock.fileno()] = lk
        self.poll.register(sock, select.POLLIN | (select.POLLOUT if out else 0))

    def _unwatch(self, sock):
        self._by_sock.pop(sock.fileno(), None)
        try:
            self.poll.unregister(sock)
        except (OSError, KeyError, ValueError):
            pass

    def _want_out(self, lk, on):
        if lk._sock is not None and lk._pollout != on:
            lk._pollout = on
            self._mask(lk)

    def _mask(self, lk):
        self.poll.modify(lk._sock, (0 if lk._rx_paused else select.POLLIN) | (select.POLLOUT if lk._pollout else 0))

    def mark(self, lk):
        if not lk._dirty:
            lk._dirty = True
            self._dirty.append(lk)

    def step(self, timeout_ms=0):
        now = ticks_ms()
        if self._dirty:
            timeout_ms = 0
        p = self.poll
        for ev in (p.ipoll(timeout_ms) if hasattr(p, "ipoll") else p.poll(timeout_ms)):
            o = ev[0]
            lk = self._by_sock.get(o if isinstance(o, int) else o.fileno())
            if lk is not None:
                lk._event(ev[1], now)
        now = ticks_ms()
        dirty = self._dirty
        if dirty:
            self._dirty = []
            for lk in dirty:
                lk._dirty = False
                lk._pump(now)
        if ticks_diff(now, self._timers_at) >= 100:
            self._timers_at = now
            for lk in self.links:
                lk._timer(now)

    def busy(self):
        """True while a link still has to connect, flush or say goodbye (for a clean stop)."""
        for lk in self.links:
            if lk._state == _CLOSING:
                return True
        return False


class PollLink:
    def __init__(self, hub, client_id, subscriptions=None, online_topic=None, user=None, password=None,
                 keepalive_s=KEEPALIVE_S, max_payload=MAX_PAYLOAD, outbox_items=OUTBOX_ITEMS,
                 outbox_bytes=OUTBOX_BYTES, inbox_items=INBOX_ITEMS, backoff_min_ms=BACKOFF_MIN_MS,
                 backoff_max_ms=BACKOFF_MAX_MS, log=None):
        self.hub = hub
        self.client_id = client_id
        self.topics = list(subscriptions) if subscriptions else []
        self.online_topic = online_topic
        self.user = user
        self.password = password
        self.keepalive_s = keepalive_s
        self.max_payload = max_payload
        self.outbox_items = outbox_items
        self.outbox_bytes = outbox_bytes
        self.inbox_items = inbox_items
        self.backoff_min_ms = backoff_min_ms
        self.backoff_max_ms = backoff_max_ms
        self.log = log
        self._out = []
        self._out_bytes = 0
        self._in = []
        self._inflight = {}  # packet id -> outbox item
        self._pid = 0
        self._connected = False
        self._connect_count = 0
        self._dropped_out = 0
        self._dropped_in = 0
        self._oversized = 0
        self._attempts = 0
        self._attempt = 0  # back-off step
        self._last_error = None
        self._offline_sent = False
        self._state = _OFF
        self._sock = None
        self._pollout = False
        self._rx_paused = False
        self._dirty = False
        self._tx = b""
        self._rx = bytearray()
        self._next_try = 0
        self._deadline = 0
        self._up_at = 0
        self._last_rx = 0
        self._last_tx = 0
        self._last_ping = 0
        self._sub_pid = None

    # ---- the interface of firmware/link.py Link --------------------------------------------------
    def add_topic(self, topic):
        if topic not in self.topics:
            self.topics.append(topic)

    def publish(self, topic, payload, retain=False, qos=1, key=None):
        topic = _b(topic)
        payload = _b(payload)
        out = self._out
        ok = True
        if key is not None:
            for i in range(len(out)):
                if out[i][3] == key:
                    self._out_bytes -= _size(out[i])
                    out.pop(i)
                    break
        item = (topic, payload, retain, key, 1 if qos else 0)
        out.append(item)
        self._out_bytes += _size(item)
        while len(out) > 1 and (len(out) > self.outbox_items or self._out_bytes > self.outbox_bytes):
            self._out_bytes -= _size(out.pop(0))
            self._dropped_out += 1
            ok = False
        if self._state == _UP:
            self.hub.mark(self)
        return ok

    def get(self):
        if self._in:
            m = self._in.pop(0)
            if len(self._in) < self.inbox_items and self._sock is not None:
                if self._rx:
                    self._parse(ticks_ms())  # what is buffered first
                if self._rx_paused and len(self._in) < self.inbox_items:
                    self._rx_paused = False  # room again: read the socket again
                    self.hub._mask(self)
            return m
        return None

    def recv(self):
        return self.get()

    def pending(self):
        return len(self._out)

    @property
    def connected(self):
        return self._connected

    @property
    def connect_count(self):
        return self._connect_count

    def status(self):
        return {"connected": self._connected, "connect_count": self._connect_count, "outbox": len(self._out),
                "dropped_out": self._dropped_out, "dropped_in": self._dropped_in, "oversized": self._oversized,
                "attempts": self._attempts, "error": self._last_error,
                "running": self._state not in (_OFF,), "variant": 0}

    def start(self):
        if self._state == _OFF:
            self._state = _DOWN
            self._next_try = ticks_ms()
            self.hub.mark(self)

    def stop(self):
        self._close()
        self._state = _OFF

    def shutdown(self, timeout_ms=2000, idle=None):
        """Deliberate disconnect: flush the outbox, `offline` retained, DISCONNECT. Never blocks (the
        hub goes on serving the other chargers): the Hub finishes it within timeout_ms; `closed()`
        tells when. Returns whether `offline` went out already (False here: it goes out later)."""
        if self._state in (_OFF, _CLOSING):
            return self._offline_sent
        if self._state != _UP:
            self.stop()
            return False
        self._state = _CLOSING
        self._deadline = ticks_add(ticks_ms(), timeout_ms)
        self.hub.mark(self)
        return False

    def closed(self):
        return self._state == _OFF

    # ---- the hub's side ----------------------------------------------------------------------------
    def _say(self, *a):
        if self.log:
            self.log(" ".join(str(x) for x in a))

    def _timer(self, now):
        st = self._state
        if st == _DOWN:
            if ticks_diff(now, self._next_try) >= 0:
                self._open(now)
        elif st == _CONNECTING or st == _HANDSHAKE:
            if ticks_diff(now, self._deadline) >= 0:
                self._fail(OSError(errno.ETIMEDOUT), now)
        elif st == _UP or st == _CLOSING:
            if st == _CLOSING and ticks_diff(now, self._deadline) >= 0:
                self._goodbye(now)
                return
            ka = self.keepalive_s * 1000
            if ticks_diff(now, self._last_rx) >= 2 * ka // 3:
                self._fail(OSError(errno.ETIMEDOUT), now)
                return
            if (ticks_diff(now, self._last_rx) >= ka // 3 or ticks_diff(now, self._last_tx) >= ka // 2) and \
                    ticks_diff(now, self._last_ping) >= ka // 3:
                self._last_ping = now
                self._send(b"\xc0\x00", now)

    def _open(self, now):
        self._attempts += 1
        self._rx = bytearray()
        self._tx = b""
        try:
            s = socket.socket()
            s.setblocking(False)
        except OSError as e:
            self._fail(e, now)
            return
        self._sock = s
        self._pollout = True
        self._rx_paused = False
        self.hub._watch(self, s, True)
        self._state = _CONNECTING
        self._deadline = ticks_add(now, CONNECT_MS)
        try:
            s.connect(self.hub.addr())
        except OSError as e:
            if e.errno not in _EINPROGRESS:
                self._fail(e, now)
                return
        self._say("link: connecting")

    def _connect_packet(self):
        flags = 0x02  # clean session, as the device's link
        body = b"\x00\x04MQTT\x04"
        pl = _str(_b(self.client_id))
        if self.online_topic:
            flags |= 0x04 | 0x08 | 0x20  # will, QoS 1, retained
            pl += _str(_b(self.online_topic)) + _str(b"offline")
        if self.user:
            flags |= 0x80
            pl += _str(_b(self.user))
            if self.password:
                flags |= 0x40
                pl += _str(_b(self.password))
        return _packet(0x10, body + bytes((flags,)) + _u16(self.keepalive_s) + pl)

    def _event(self, ev, now):
        st = self._state
        if st == _CONNECTING:
            if ev & (select.POLLERR | select.POLLHUP):
                self._fail(OSError(errno.ECONNREFUSED), now)
                return
            if ev & select.POLLOUT:
                self._state = _HANDSHAKE
                self._send(self._connect_packet(), now)
            return
        if ev & select.POLLIN:
            self._read(now)
            if self._sock is None:
                return
        elif ev & (select.POLLERR | select.POLLHUP):
            self._fail(OSError(errno.ECONNRESET), now)
            return
        if ev & select.POLLOUT:
            self._flush(now)
            if self._state == _UP or self._state == _CLOSING:
                self._pump(now)

    def _send(self, data, now):
        self._tx = self._tx + data if self._tx else data
        self._flush(now)

    def _flush(self, now):
        s = self._sock
        if s is None:
            return
        tx = self._tx
        if tx:
            try:
                n = s.send(tx)
            except OSError as e:
                if e.errno in _EAGAIN:
                    n = 0
                else:
                    self._fail(e, now)
                    return
            if n:
                self._last_tx = now
            self._tx = tx[n:] if n < len(tx) else b""
        self.hub._want_out(self, bool(self._tx))

    def _pump(self, now):
        """Send what the outbox holds, within the in-flight window."""
        st = self._state
        if st != _UP and st != _CLOSING:
            return
        out = self._out
        while out and len(self._inflight) < INFLIGHT:
            if len(self._tx) >= 8192:
                self._flush(now)
                if self._sock is None:
                    return
                if len(self._tx) >= 8192:
                    break  # the socket is full: POLLOUT resumes the pump
            item = out.pop(0)
            self._out_bytes -= _size(item)
            self._publish(item, now)
        if st == _CLOSING and not out and not self._inflight and not self._tx:
            self._goodbye(now)
        elif self._tx:
            self._flush(now)

    def _publish(self, item, now):
        topic, payload, retain, _key, qos = item
        first = 0x30 | (0x02 if qos else 0) | (0x01 if retain else 0)
        body = _str(topic)
        if qos:
            pid = self._next_pid()
            self._inflight[pid] = item
            body += _u16(pid)
        self.hub.tx_msgs += 1
        self._tx = self._tx + _packet(first, body + payload) if self._tx else _packet(first, body + payload)

    def _next_pid(self):
        p = self._pid % 65535 + 1
        while p in self._inflight or p == self._sub_pid:
            p = p % 65535 + 1
        self._pid = p
        return p

    def _goodbye(self, now):
        if self._sock is not None and self._connected:
            data = b""
            if self.online_topic:
                data = _packet(0x31, _str(_b(self.online_topic)) + b"offline")  # QoS 0: no ack awaited
                self._offline_sent = True
            data += b"\xe0\x00"
            self._tx = self._tx + data if self._tx else data
            try:
                self._sock.send(self._tx)  # a few bytes into an idle socket buffer: taken at once
            except OSError:
                pass
        self._close()
        self._state = _OFF

    def _read(self, now):
        if len(self._in) >= self.inbox_items:
            # the app is behind: let the broker hold the rest (TCP back-pressure), and stop polling
            # this socket for input until get() made room (no busy wake-ups meanwhile)
            self._rx_paused = True
            self.hub._mask(self)
            return
        try:
            data = self._sock.recv(RECV_BYTES)
        except OSError as e:
            if e.errno in _EAGAIN:
                return
            self._fail(e, now)
            return
        if not data:
            self._fail(OSError(errno.ECONNRESET), now)
            return
        self._last_rx = now
        self._rx.extend(data)
        self._parse(now)

    def _parse(self, now):
        """Handle the complete packets received; a PUBLISH only while the inbox has room (the rest
        waits in the buffer, unacknowledged, as with a device whose app is behind)."""
        rx = self._rx
        pos = 0
        n = len(rx)
        while n - pos >= 2:
            first = rx[pos]
            if first & 0xF0 == 0x30 and len(self._in) >= self.inbox_items:
                break
            mult = 1
            length = 0
            i = pos + 1
            while True:
                if i >= n:
                    length = -1
                    break
                d = rx[i]
                length += (d & 0x7F) * mult
                mult <<= 7
                i += 1
                if not d & 0x80:
                    break
            if length < 0 or n - i < length:
                break
            self._packet_in(first, rx, i, length, now)
            if self._sock is None:
                return
            pos = i + length
        if pos:
            rx[0:pos] = b""

    def _packet_in(self, first, rx, i, length, now):
        kind = first & 0xF0
        if kind == 0x30:  # PUBLISH
            qos = (first >> 1) & 0x03
            tl = (rx[i] << 8) | rx[i + 1]
            topic = bytes(rx[i + 2:i + 2 + tl])
            j = i + 2 + tl
            if qos:
                pid = (rx[j] << 8) | rx[j + 1]
                j += 2
                self._send(b"\x40\x02" + _u16(pid), now)
            plen = i + length - j
            payload = bytes(rx[j:i + length]) if plen <= self.max_payload else None
            self.hub.rx_msgs += 1
            try:
                t = topic.decode()
            except UnicodeError:
                return
            if payload is None:
                self._oversized += 1
            if len(self._in) >= 2 * self.inbox_items:
                self._dropped_in += 1
                return
            self._in.append((t, payload))
        elif kind == 0x40:  # PUBACK
            pid = (rx[i] << 8) | rx[i + 1]
            self._inflight.pop(pid, None)
            self._pump(now)
        elif kind == 0x20:  # CONNACK
            rc = rx[i + 1] if length >= 2 else 255
            if rc != 0:
                self._fail(OSError("CONNACK %d" % rc), now)
                return
            if self.topics:
                self._sub_pid = self._next_pid()
                body = _u16(self._sub_pid)
                for t in self.topics:
                    body += _str(_b(t)) + b"\x01"
                self._send(_packet(0x82, body), now)
            else:
                self._up(now)
        elif kind == 0x90:  # SUBACK
            self._sub_pid = None
            self._up(now)
        # PINGRESP (0xd0): nothing to do, _last_rx was updated

    def _up(self, now):
        self._state = _UP
        self._up_at = now
        self._last_ping = now
        self._connected = True
        self._connect_count += 1
        self._last_error = None
        self.hub.connects += 1
        if self.online_topic:
            self._out.insert(0, (_b(self.online_topic), b"online", True, None, 1))
            self._out_bytes += len(self.online_topic) + 22
        self._say("link: connected")
        self._pump(now)

    def _fail(self, e, now):
        err = repr(e)
        self._say("link: down:", err)
        self._last_error = err[:80]
        was_up = self._connected
        self._close()
        if was_up:
            self.hub.drops += 1
        if self._state == _CLOSING or self._state == _OFF:
            self._state = _OFF
            return
        if was_up and ticks_diff(now, self._up_at) >= STABLE_MS:
            self._attempt = 0
        self._state = _DOWN
        self._next_try = ticks_add(now, backoff_ms(self._attempt, self.backoff_min_ms, self.backoff_max_ms))
        self._attempt += 1

    def _close(self):
        s = self._sock
        self._sock = None
        self._connected = False
        self._sub_pid = None
        # unacknowledged QoS 1 messages go out again after the reconnect (oldest first)
        if self._inflight:
            pids = sorted(self._inflight)
            items = [self._inflight[p] for p in pids]
            self._inflight = {}
            for item in reversed(items):
                key = item[3]
                if key is not None and any(e[3] == key for e in self._out):
                    continue
                self._out.insert(0, item)
                self._out_bytes += _size(item)
        if s is not None:
            self.hub._unwatch(s)
            try:
                s.close()
            except OSError:
                pass
        self._tx = b""
