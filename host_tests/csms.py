"""A real OCPP 1.6 central system for the tests (CPython only; not a test module).

Built on the PyPI `ocpp` package (mobilityhouse) and `websockets`, pinned in requirements-dev.txt,
running its asyncio loop in a thread of the test process on a free 127.0.0.1 port. The `ocpp`
package validates every message against the OCPP 1.6 JSON schemas in both directions: what the
charger sends in its CALLs and CALLRESULTs, and what we send.

- Csms(port=None, password=None, boot_status="Accepted", interval=...): start()/stop(); stop() and
  start() again keep the port (a central system that goes down and comes back).
- every frame in both directions is recorded raw (`frames`: (t, charger id, "in"/"out", text)) and
  every CALL from a charger as (t, id, action, payload dict) in `calls`.
- call(cid, request, timeout): send one of `ocpp.v16.call.*` to a connected charger, returns the
  call_result; raw(cid, text): send a raw frame (malformed CALLs).
- wait_call(action, pred, timeout, since): the first matching CALL from a charger.
"""

import asyncio
import datetime
import itertools
import json
import logging
import threading
import time

import websockets
from broker import free_port
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import Action, AuthorizationStatus, RegistrationStatus
from websockets.asyncio.server import basic_auth, serve

logging.getLogger("ocpp").setLevel(logging.CRITICAL)  # schema errors are asserted on, not logged


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


class Tap:
    """The websocket connection as the ocpp ChargePoint sees it, recording every frame."""

    def __init__(self, ws, cid, csms):
        self.ws = ws
        self.cid = cid
        self.csms = csms

    async def recv(self):
        m = await self.ws.recv()
        self.csms._frame(self.cid, "in", m)
        return m

    async def send(self, m):
        self.csms._frame(self.cid, "out", m)
        await self.ws.send(m)


class CP(ChargePoint):
    csms = None  # set per instance

    def _note(self, action, payload):
        self.csms._call(self.id, action, payload)

    @on(Action.boot_notification)
    def on_boot(self, **kw):
        self._note("BootNotification", kw)
        return call_result.BootNotification(current_time=now_iso(), interval=self.csms.interval,
                                            status=self.csms.boot_status)

    @on(Action.heartbeat)
    def on_heartbeat(self, **kw):
        self._note("Heartbeat", kw)
        return call_result.Heartbeat(current_time=now_iso())

    @on(Action.status_notification)
    def on_status(self, **kw):
        self._note("StatusNotification", kw)
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, id_tag, **kw):
        self._note("Authorize", dict(kw, id_tag=id_tag))
        ok = id_tag in self.csms.accepted_tags
        return call_result.Authorize(id_tag_info={"status": AuthorizationStatus.accepted if ok else
                                                  AuthorizationStatus.invalid})

    @on(Action.start_transaction)
    def on_start(self, **kw):
        self._note("StartTransaction", kw)
        tid = next(self.csms.tx_ids)
        return call_result.StartTransaction(transaction_id=tid, id_tag_info={"status": AuthorizationStatus.accepted})

    @on(Action.stop_transaction)
    def on_stop(self, **kw):
        self._note("StopTransaction", kw)
        return call_result.StopTransaction()

    @on(Action.meter_values)
    def on_meter(self, **kw):
        self._note("MeterValues", kw)
        return call_result.MeterValues()

    @on(Action.diagnostics_status_notification)
    def on_diag(self, **kw):
        self._note("DiagnosticsStatusNotification", kw)
        return call_result.DiagnosticsStatusNotification()

    @on(Action.firmware_status_notification)
    def on_fw(self, **kw):
        self._note("FirmwareStatusNotification", kw)
        return call_result.FirmwareStatusNotification()


class Csms:
    def __init__(self, port=None, password=None, interval=30, boot_status=RegistrationStatus.accepted, ssl=None):
        self.port = port or free_port()
        self.password = password
        self.interval = interval
        self.boot_status = boot_status
        self.ssl = ssl
        self.accepted_tags = set()
        self.tx_ids = itertools.count(101)
        self.frames = []
        self.calls = []
        self.paths = []
        self.handshake_headers = []
        self.cps = {}
        self.cond = threading.Condition()
        self.loop = None
        self._server = None
        self._thread = None

    # ---- recording --------------------------------------------------------------------------------------
    def _frame(self, cid, direction, text):
        with self.cond:
            self.frames.append((time.monotonic(), cid, direction, text))
            self.cond.notify_all()

    def _call(self, cid, action, payload):
        with self.cond:
            self.calls.append((time.monotonic(), cid, action, payload))
            self.cond.notify_all()

    def mark(self):
        with self.cond:
            return len(self.calls)

    def all_calls(self, action=None, since=0, cid=None):
        with self.cond:
            return [c for c in self.calls[since:] if (action is None or c[2] == action) and
                    (cid is None or c[1] == cid)]

    def wait_call(self, action, pred=None, timeout=15.0, since=0, cid=None):
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                for c in self.calls[since:]:
                    if c[2] == action and (cid is None or c[1] == cid) and (pred is None or pred(c[3])):
                        return c[3]
                left = end - time.monotonic()
                if left <= 0:
                    seen = [(c[2], c[3]) for c in self.calls[since:]][-15:]
                    raise AssertionError("no %s within %g s; last calls: %r" % (action, timeout, seen))
                self.cond.wait(min(left, 0.2))

    def wait_frame(self, pred, timeout=10.0, since=0):
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                for f in self.frames[since:]:
                    if pred(f):
                        return f
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError("no such frame within %g s; last: %r" % (timeout, self.frames[-5:]))
                self.cond.wait(min(left, 0.2))

    def frame_mark(self):
        with self.cond:
            return len(self.frames)

    def connected(self, cid):
        return cid in self.cps

    def wait_connected(self, cid, timeout=15.0):
        end = time.monotonic() + timeout
        while cid not in self.cps:
            if time.monotonic() > end:
                raise AssertionError("charger %s did not connect within %g s" % (cid, timeout))
            time.sleep(0.05)

    # ---- server ---------------------------------------------------------------------------------------------
    async def _on_connect(self, ws):
        path = ws.request.path
        self.paths.append(path)
        self.handshake_headers.append(dict(ws.request.headers))
        cid = path.rstrip("/").split("/")[-1]
        cp = CP(cid, Tap(ws, cid, self))
        cp.csms = self
        self.cps[cid] = cp
        try:
            await cp.start()
        except websockets.exceptions.ConnectionClosed:
            pass
        finally:
            if self.cps.get(cid) is cp:
                del self.cps[cid]

    async def _serve(self, started):
        kw = {"subprotocols": ["ocpp1.6"], "ssl": self.ssl}
        if self.password is not None:
            kw["process_request"] = basic_auth(realm="ocpp", check_credentials=lambda u, p: p == self.password)
        self._server = await serve(self._on_connect, "127.0.0.1", self.port, **kw)
        started.set()
        await self._server.wait_closed()

    def start(self):
        started = threading.Event()
        self.loop = asyncio.new_event_loop()

        def run():
            asyncio.set_event_loop(self.loop)
            try:
                self.loop.run_until_complete(self._serve(started))
            finally:
                self.loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("central system did not start")
        return self

    def stop(self):
        if self.loop is None:
            return

        async def close():
            self._server.close()
            await self._server.wait_closed()

        try:
            asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        except Exception:  # noqa: BLE001
            pass
        self._thread.join(10)
        self.cps.clear()
        self.loop = None

    # ---- talking to a charger --------------------------------------------------------------------------------
    def call(self, cid, request, timeout=10.0):
        cp = self.cps[cid]
        fut = asyncio.run_coroutine_threadsafe(cp.call(request, suppress=False), self.loop)
        return fut.result(timeout)

    def raw(self, cid, text):
        cp = self.cps[cid]
        fut = asyncio.run_coroutine_threadsafe(cp._connection.send(text), self.loop)
        return fut.result(5)

    def answers(self, mid=None, since=0, cid=None):
        """Frames from the charger (cid: from that one) that answer our message id mid, or any of
        ours with mid None (parsed CALLRESULTs and CALLERRORs)."""
        out = []
        with self.cond:
            frames = self.frames[since:]
        for f in frames:
            if f[2] != "in" or (cid is not None and f[1] != cid):
                continue
            try:
                m = json.loads(f[3])
            except ValueError:
                continue
            if isinstance(m, list) and len(m) >= 2 and m[0] in (3, 4) and (mid is None or m[1] == mid):
                out.append(m)
        return out
