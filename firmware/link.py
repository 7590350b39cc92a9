# The MQTT transport: umqtt.simple in its own thread (MicroPython `_thread`).
#
# Every call that can block (DNS, TCP connect, TLS handshake, CONNECT/CONNACK, SUBSCRIBE/SUBACK,
# a QoS 1 publish waiting for its PUBACK, a half-received packet) runs in the link thread. The
# control loop and the link share only what is below, always under one lock:
#   outbox  - bounded list of (topic, payload, retain, key); entries with a key coalesce (only the
#             newest `state` is kept), the rest drop their oldest past the bound (counted);
#   inbox   - bounded list of (topic, payload) received; payload None = discarded, too large;
#   status  - connected, connect_count, dropped counters, last error.
# Every socket read/write has a deadline (firmware/mqtt_socket.py), so the thread itself never
# hangs; it sends PINGREQs, detects a dead link, reconnects with exponential backoff and jitter,
# re-subscribes and says `online` (retained) after every connect, with `offline` as last will.
# See docs/mqtt.md for the numbers and why this keeps the 10 ms loop on time on the ESP32.
import sys
import time

try:
    import _thread
except ImportError:  # CPython without the MicroPython module: only the queues are usable
    _thread = None

from firmware import link_thread, mqtt_socket
from firmware.link_thread import LinkThread
from firmware.ticks import const, ticks_add, ticks_diff, ticks_ms

# Defaults (ms unless noted)
_KEEPALIVE_S = const(30)  # in CONNECT; the broker drops us after 1.5x this without a packet
POLL_MS = 25  # first-byte wait per round: inbound latency, no busy loop
IO_MS = 10000  # any read/write of a packet that has started
CONNECT_MS = 10000  # TCP connect
TLS_MS = 15000  # TLS handshake
BACKOFF_MIN_MS = 1000
BACKOFF_MAX_MS = 60000
_STABLE_MS = const(60000)  # a connection that lasted this long resets the backoff
MAX_PAYLOAD = 8192  # larger inbound payloads are drained, the app gets (topic, None)
OUTBOX_ITEMS = 24
_OUTBOX_BYTES = const(16384)
INBOX_ITEMS = 16

_V_LEGACY = const(1)  # umqtt.simple 1.3.x: ssl=bool, ssl_params=dict, imports ussl
_V_CONTEXT = const(2)  # umqtt.simple >= 1.4 (mip): ssl=SSLContext-like object


def backoff_ms(attempt, lo=BACKOFF_MIN_MS, hi=BACKOFF_MAX_MS, r=None):
    return link_thread.backoff_ms(attempt, lo, hi, r)


class Link(LinkThread):
    def __init__(self, client_id, host, port=None, subscriptions=None, user=None, password=None,
                 cadata=None, online_topic=None, server_hostname=None, keepalive_s=_KEEPALIVE_S,
                 umqtt=None, poll_ms=POLL_MS, io_ms=IO_MS, connect_ms=CONNECT_MS, tls_ms=TLS_MS,
                 backoff_min_ms=BACKOFF_MIN_MS, backoff_max_ms=BACKOFF_MAX_MS,
                 max_payload=MAX_PAYLOAD, outbox_items=OUTBOX_ITEMS, outbox_bytes=_OUTBOX_BYTES,
                 inbox_items=INBOX_ITEMS, stack_size=16384, log=None):
        """client_id: the serial. subscriptions: topics subscribed (QoS 1) after every connect.
        cadata: CA certificate(s), PEM or DER bytes: enables mqtts with the broker's certificate
        verified (server_hostname defaults to host). online_topic: `<p>/<id>/online` gets the
        last will `offline` and `online` after every connect (None: no will, nothing said)."""
        self.client_id = client_id
        self.host = host
        self.tls_ca = cadata
        self.port = port or (8883 if cadata else 1883)
        self.user = user or None
        self.password = password or ""
        self.server_hostname = server_hostname or host
        self.keepalive_s = keepalive_s
        ka = keepalive_s * 1000
        self.ping_ms = ka // 3  # PINGREQ after this long without anything received
        self.dead_ms = 2 * ka // 3  # no byte at all for this long: the link is dead
        self.online_topic = online_topic
        self.topics = list(subscriptions) if subscriptions else []
        self.umqtt = umqtt
        self.poll_ms = poll_ms
        self.io_ms = io_ms
        self.connect_ms = connect_ms
        self.tls_ms = tls_ms
        self.backoff_min_ms = backoff_min_ms
        self.backoff_max_ms = backoff_max_ms
        self.max_payload = max_payload
        self.outbox_items = outbox_items
        self.outbox_bytes = outbox_bytes
        self.inbox_items = inbox_items
        self.stack_size = stack_size
        self.log = log
        self.variant = 0

        self._lock = _thread.allocate_lock() if _thread else _NoLock()
        # shared state: touched only with self._lock held
        self._out = []
        self._out_bytes = 0
        self._in = []
        self._connected = False
        self._connect_count = 0
        self._dropped_out = 0
        self._dropped_in = 0
        self._oversized = 0
        self._attempts = 0
        self._last_error = None
        self._stop = False
        self._shutdown_deadline = None
        self._offline_sent = False
        self._running = False
        # link thread only
        self._c = None
        self._sock = None

    # ---- API for the control thread (never blocks on the network) ------------------------------
    def add_topic(self, topic):
        """Subscribe to topic (QoS 1) after every connect. Call before start()."""
        if topic not in self.topics:
            self.topics.append(topic)

    def publish(self, topic, payload, retain=False, qos=1, key=None):
        """Queue a message (QoS 0 or 1). Entries with the same `key` coalesce: only the newest is kept
        (use it for `state` and other retained snapshots). Returns False when something older was
        dropped to make room."""
        if isinstance(topic, str):
            topic = topic.encode()
        if isinstance(payload, str):
            payload = _buffer(payload)
        size = len(topic) + len(payload) + 16
        ok = True
        with self._lock:
            out = self._out
            if key is not None:
                for i in range(len(out)):
                    if out[i][3] == key:
                        self._out_bytes -= _size(out[i])
                        out.pop(i)
                        break
            out.append((topic, payload, retain, key, 1 if qos else 0))
            self._out_bytes += size
            while len(out) > 1 and (len(out) > self.outbox_items or self._out_bytes > self.outbox_bytes):
                self._out_bytes -= _size(out.pop(0))
                self._dropped_out += 1
                ok = False
        return ok

    def publish_json(self, topic, doc, retain=False, qos=1, key=None):
        """publish() of a document as JSON (a dict, or a function that writes it into the stream it
        is given), serialized as mqtt_socket.dump_parts() does: no block of the payload's size on
        the heap. Control thread only."""
        return self.publish(topic, mqtt_socket.dump_parts(doc), retain, qos, key)

    def recv(self):
        return self.get()

    def pending(self):
        with self._lock:
            return len(self._out)

    def status(self):
        with self._lock:
            return {
                "connected": self._connected, "connect_count": self._connect_count,
                "outbox": len(self._out), "dropped_out": self._dropped_out,
                "dropped_in": self._dropped_in, "oversized": self._oversized,
                "attempts": self._attempts, "error": self._last_error, "running": self._running,
                "variant": self.variant,
            }

    def shutdown(self, timeout_ms=2000, idle=None):
        """Deliberate disconnect (restart, update): flush the outbox, publish `offline` retained,
        send DISCONNECT. Waits at most timeout_ms, calling idle() every ~10 ms meanwhile (the app
        may keep its fast tick running there). Returns True when `offline` went out."""
        start = ticks_ms()
        with self._lock:
            if not self._running:
                return self._offline_sent
            self._shutdown_deadline = ticks_add(start, timeout_ms)
        self._wait_stopped(start, timeout_ms, idle)
        with self._lock:
            return self._offline_sent

    # ---- the link thread -----------------------------------------------------------------------
    def _flag(self):
        with self._lock:
            if self._stop:
                return "stop"
            if self._shutdown_deadline is not None:
                return "shutdown"
        return None

    def _run(self):
        attempt = 0
        try:
            while True:
                f = self._flag()
                if f is not None:
                    break
                with self._lock:
                    self._attempts += 1
                t0 = ticks_ms()
                try:
                    self._connect()
                except Exception as e:  # noqa: BLE001  every failure means: back off, retry
                    self._drop(e)
                    if self._sleep(backoff_ms(attempt, self.backoff_min_ms, self.backoff_max_ms)):
                        break
                    attempt += 1
                    continue
                try:
                    self._serve()
                except Exception as e:  # noqa: BLE001
                    self._drop(e)
                if self._flag() is not None:
                    break
                if ticks_diff(ticks_ms(), t0) >= _STABLE_MS:
                    attempt = 0
                if self._sleep(backoff_ms(attempt, self.backoff_min_ms, self.backoff_max_ms)):
                    break
                attempt += 1
            if self._flag() == "shutdown" and self._c is not None:
                self._goodbye()  # offline + DISCONNECT while still connected
        finally:
            self._close()
            with self._lock:
                self._connected = False
                self._running = False

    def start(self):
        if self.umqtt is None:
            # imported here, in the caller's thread: MicroPython has no import lock, so a second
            # link thread importing at the same moment would get the half-executed module
            from umqtt import simple

            self.umqtt = simple
        LinkThread.start(self)

    def _client(self):
        mod = self.umqtt
        mod.socket = mqtt_socket  # every socket umqtt opens is ours
        ctx = None
        if self.tls_ca:
            ctx = mqtt_socket.make_context(self.tls_ca)
        args = (self.client_id, self.host, self.port, self.user, self.password, self.keepalive_s)
        if self.variant != _V_CONTEXT:
            try:
                c = mod.MQTTClient(*args, ssl=bool(ctx),
                                   ssl_params={"ctx": ctx, "server_hostname": self.server_hostname})
                self.variant = _V_LEGACY
                sys.modules["ussl"] = mqtt_socket  # 1.3.x does `import ussl` in connect()
                return c
            except TypeError:
                self.variant = _V_CONTEXT
        return mod.MQTTClient(*args, ssl=mqtt_socket.TlsContext(ctx) if ctx else None)

    def _connect(self):
        self._close()
        m = mqtt_socket
        m.POLL_MS = self.poll_ms
        m.IO_MS = self.io_ms
        m.CONNECT_MS = self.connect_ms
        m.TLS_MS = self.tls_ms
        m.MAX_PAYLOAD = self.max_payload
        c = self._client()
        c.set_callback(self._on_msg)
        if self.online_topic:
            c.set_last_will(self.online_topic.encode(), b"offline", True, 1)
        self._c = c
        self._say("link: connecting", self.host, self.port)
        c.connect(True)
        self._sock = c.sock
        for t in self.topics:
            c.subscribe(t.encode() if isinstance(t, str) else t, 1)
        if self.online_topic:
            c.publish(self.online_topic.encode(), b"online", True, 1)
        with self._lock:
            self._connected = True
            self._connect_count += 1
            self._last_error = None
        self._say("link: connected")

    def _serve(self):
        c = self._c
        s = self._sock
        now = ticks_ms()
        last_rx = now
        last_tx = now
        last_ping = ticks_add(now, -self.ping_ms)
        rx = s.rx_bytes
        tx = s.tx_bytes
        half_ka = self.keepalive_s * 500
        while True:
            flag = self._flag()
            if flag == "stop":
                return
            item = None
            room = True
            with self._lock:
                if self._out:
                    item = self._out.pop(0)
                    self._out_bytes -= _size(item)
                room = len(self._in) < self.inbox_items
                if flag == "shutdown" and item is None:
                    return
            if item is not None:
                try:
                    c.publish(item[0], item[1], item[2], item[4])
                except Exception:
                    self._requeue(item)
                    raise
            elif room:
                c.check_msg()  # waits up to poll_ms for a first byte
            else:
                time.sleep_ms(self.poll_ms)  # the app is behind: let the broker hold the rest
            now = ticks_ms()
            if s.rx_bytes != rx:
                rx = s.rx_bytes
                last_rx = now
            if s.tx_bytes != tx:
                tx = s.tx_bytes
                last_tx = now
            if ticks_diff(now, last_rx) >= self.dead_ms:
                raise OSError(110)  # ETIMEDOUT: no PINGRESP, no traffic
            if (ticks_diff(now, last_rx) >= self.ping_ms or ticks_diff(now, last_tx) >= half_ka) and \
                    ticks_diff(now, last_ping) >= self.ping_ms:
                c.ping()
                last_ping = now
                last_tx = now

    def _requeue(self, item):
        with self._lock:
            if item[3] is not None:
                for e in self._out:
                    if e[3] == item[3]:
                        return  # a newer snapshot is already waiting
            self._out.insert(0, item)
            self._out_bytes += _size(item)

    def _goodbye(self):
        """Shutdown: the outbox has been flushed by _serve; now `offline` and DISCONNECT."""
        c = self._c
        try:
            with self._lock:
                connected = self._connected
            if connected:
                if self.online_topic:
                    c.publish(self.online_topic.encode(), b"offline", True, 1)
                with self._lock:
                    self._offline_sent = True
                c.disconnect()
        except Exception as e:  # noqa: BLE001
            self._say("link: goodbye failed", repr(e))

    def _on_msg(self, topic, msg):
        # runs in the link thread, called by umqtt
        if topic is mqtt_socket.OVERSIZED:
            with self._lock:
                self._oversized += 1
            return
        try:
            t = topic.decode() if not isinstance(topic, str) else topic
        except Exception:  # noqa: BLE001  not UTF-8: nobody we talk to sends that
            return
        if msg is mqtt_socket.OVERSIZED:
            msg = None
        with self._lock:
            if msg is None:
                self._oversized += 1
            if len(self._in) >= 2 * self.inbox_items:
                self._dropped_in += 1
                return
            self._in.append((t, msg))

    def _drop(self, e):
        err = repr(e)
        self._say("link: down:", err)
        with self._lock:
            self._connected = False
            self._last_error = err[:80]
        self._close()

    def _close(self):
        s = self._sock
        if s is None and self._c is not None:
            s = getattr(self._c, "sock", None)
        self._sock = None
        self._c = None
        if s is not None:
            try:
                s.close()
            except Exception:  # noqa: BLE001
                pass


def _size(item):
    return len(item[0]) + len(item[1]) + 16  # len() of a payload: its bytes on the wire


def _buffer(s):
    """A str payload as the socket writes it. MicroPython: a memoryview of the string's own UTF-8
    bytes (len() counts bytes, as MQTT does), so a ~500-byte `state` is not copied once more by
    encode(): in a small, fragmented heap the second block of that size is what runs out first.
    CPython: the encoded bytes."""
    try:
        return memoryview(s)
    except TypeError:
        return s.encode()


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False
