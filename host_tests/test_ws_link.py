"""The WebSocket client's connection thread (firmware/ws.py WsLink) against real local servers on
127.0.0.1, written here byte by byte so that they can do what a library server would not:
fragment a message with a ping between the fragments, answer the handshake wrongly, close with a
code, go silent (blackhole). Checks what goes over the wire and that the caller's side never blocks.
"""

import base64
import hashlib
import socket
import threading
import time

from broker import free_port
from test_ws import server_frame, unmask

from firmware import ws

CPYTHON_ONLY = "threads and sockets of a test server"


def _read_frame(conn):
    """One client frame from the socket: (fin, op, payload)."""
    buf = b""
    while True:
        try:
            fin, op, body = unmask(buf)
            return fin, op, body
        except (AssertionError, IndexError):
            pass
        chunk = conn.recv(65536)
        if not chunk:
            raise EOFError
        buf += chunk


class RawServer:
    """Accepts connections; `script(conn, request_text)` runs per connection in a thread."""

    def __init__(self, script, answer="good"):
        self.port = free_port()
        self.script = script
        self.answer = answer
        self.requests = []
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", self.port))
        self.srv.listen(4)
        self.errors = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self._conn, args=(c,), daemon=True).start()

    def _conn(self, c):
        try:
            req = b""
            while b"\r\n\r\n" not in req:
                req += c.recv(4096)
            text = req.decode()
            self.requests.append(text)
            if self.answer == "silent":
                time.sleep(30)
                return
            key = [ln.split(":", 1)[1].strip() for ln in text.split("\r\n")
                   if ln.lower().startswith("sec-websocket-key")][0]
            acc = base64.b64encode(hashlib.sha1((key + ws.GUID.decode()).encode()).digest()).decode()
            proto = "Sec-WebSocket-Protocol: ocpp1.6\r\n"
            if self.answer == "bad_accept":
                acc = base64.b64encode(b"x" * 20).decode()
            elif self.answer == "no_protocol":
                proto = ""
            c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Accept: %s\r\n%s\r\n" % (acc, proto)).encode())
            self.script(c, text)
        except Exception as e:  # noqa: BLE001
            self.errors.append(repr(e))
        finally:
            c.close()

    def close(self):
        self.srv.close()


def _wait(pred, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.01)
    raise AssertionError("timed out")


def test_fragments_ping_mid_message_echo_and_close_code():
    seen = {}

    def script(c, req):
        c.sendall(server_frame(ws.OP_TEXT, '[2,"a",', fin=False))
        c.sendall(server_frame(ws.OP_PING, b"mid"))
        seen["pong"] = _read_frame(c)  # the pong comes while the message is still open
        c.sendall(server_frame(ws.OP_CONT, '"Heartbeat",', fin=False))
        c.sendall(server_frame(ws.OP_CONT, "{}]"))
        seen["text"] = _read_frame(c)  # what the client sends back
        c.sendall(server_frame(ws.OP_CLOSE, bytes((0x03, 0xE9)) + b"going"))
        seen["close"] = _read_frame(c)

    srv = RawServer(script)
    link = ws.WsLink("ws://127.0.0.1:%d/ocpp/CP7" % srv.port, user="CP7", password="pw", backoff_min_ms=5000)
    try:
        link.start()
        msg = _wait(link.get)
        assert msg == '[2,"a","Heartbeat",{}]'
        assert seen["pong"] == (True, ws.OP_PONG, b"mid")
        link.send('[3,"a",{}]')
        _wait(lambda: "close" in seen)
        assert seen["text"] == (True, ws.OP_TEXT, b'[3,"a",{}]')
        assert seen["close"][1] == ws.OP_CLOSE and seen["close"][2][:2] == b"\x03\xe9"  # the code echoed
        _wait(lambda: link.status()["close_code"] == 1001)
        req = srv.requests[0]
        assert req.startswith("GET /ocpp/CP7 HTTP/1.1\r\n") and "Sec-WebSocket-Protocol: ocpp1.6" in req
        assert "Authorization: Basic " + base64.b64encode(b"CP7:pw").decode() in req
        assert not srv.errors, srv.errors
    finally:
        link.stop()
        srv.close()


def test_a_wrong_handshake_answer_never_connects():
    for answer in ("bad_accept", "no_protocol"):
        srv = RawServer(lambda c, r: time.sleep(2), answer)
        link = ws.WsLink("ws://127.0.0.1:%d/x" % srv.port, backoff_min_ms=200, backoff_max_ms=400)
        try:
            link.start()
            _wait(lambda lk=link: lk.status()["attempts"] >= 2)
            assert link.connect_count == 0 and not link.connected
            assert "Accept" in link.status()["error"] or "subprotocol" in link.status()["error"], link.status()
        finally:
            link.stop()
            srv.close()


def test_the_caller_never_waits_on_a_silent_or_dead_server():
    # a server that accepts TCP and never answers the handshake, and a port nobody listens on
    silent = RawServer(lambda c, r: None, "silent")
    dead = free_port()
    for url in ("ws://127.0.0.1:%d/x" % silent.port, "ws://127.0.0.1:%d/x" % dead):
        link = ws.WsLink(url, handshake_ms=1500, backoff_min_ms=100, backoff_max_ms=200)
        try:
            link.start()
            worst = 0.0
            end = time.monotonic() + 2.5
            while time.monotonic() < end:
                t0 = time.perf_counter()
                link.send("[2,\"1\",\"Heartbeat\",{}]")
                link.get()
                _ = link.connected, link.connect_count, link.status()
                worst = max(worst, time.perf_counter() - t0)
                time.sleep(0.005)
            # the control loop's calls return at once: a call that waited on the network would take
            # at least the 100 ms back-off or the 1.5 s handshake; a loaded host adds a few ms
            assert worst < 0.05, worst
            assert link.status()["outbox"] <= ws.OUTBOX_ITEMS  # bounded while nobody takes them
            assert link.connect_count == 0
        finally:
            link.stop()
    silent.close()


def test_dead_server_detected_by_missing_pongs():
    def script(c, req):
        time.sleep(5)  # connected, then silent: no pong

    srv = RawServer(script)
    link = ws.WsLink("ws://127.0.0.1:%d/x" % srv.port, ping_s=1, backoff_min_ms=5000)
    try:
        link.start()
        _wait(lambda: link.connected)
        t0 = time.monotonic()
        _wait(lambda: not link.connected, 6)
        took = time.monotonic() - t0
        assert 2.0 <= took <= 4.5, took  # DEAD_FACTOR (3) ping intervals
        assert link.pings >= 1
    finally:
        link.stop()
        srv.close()
