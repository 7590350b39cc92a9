"""The reference OCPP 1.6J central system for simulated (and real) chargers: `tools/csms --help`.

Built on the PyPI `ocpp` package (schema validation of every message both ways) and `websockets`:
- accepts chargers at ws://HOST:PORT/ANYPATH/ID (subprotocol ocpp1.6; HTTP Basic with --password);
- logs every frame in both directions as a JSON line (stdout or --log FILE);
- takes commands from stdin, one per line (`help` lists them): remote start/stop, reset,
  availability, configuration, charging profiles, composite schedule, trigger, local list;
- balances one circuit (--circuit-a A): the chargers with a running transaction share it equally,
  each as a TxDefaultProfile (connector 0, stack level 1, chargingProfileId 1000), as tools/cloud
  shares a circuit with leases; below 6 A each, the later ones get 0 (they pause).
"""

import argparse
import asyncio
import datetime
import itertools
import json
import sys
import threading
import time

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action, AuthorizationStatus, RegistrationStatus
from websockets.asyncio.server import basic_auth, serve

MIN_A = 6.0
PROFILE_ID = 1000


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def share(circuit_a, n):
    """Equal shares of circuit_a among n chargers; when a share would be below MIN_A, as many as fit
    get MIN_A and the rest 0."""
    if n == 0:
        return []
    each = circuit_a / n
    if each >= MIN_A:
        return [round(each, 1)] * n
    fit = int(circuit_a // MIN_A)
    return [MIN_A] * fit + [0.0] * (n - fit)


class Conn:
    """The websocket as the ocpp ChargePoint sees it, logging every frame."""

    def __init__(self, ws, cid, csms):
        self.ws = ws
        self.cid = cid
        self.csms = csms

    async def recv(self):
        m = await self.ws.recv()
        self.csms.log(self.cid, "in", m)
        return m

    async def send(self, m):
        self.csms.log(self.cid, "out", m)
        await self.ws.send(m)


class CP(ChargePoint):
    csms = None

    @on(Action.boot_notification)
    def on_boot(self, **kw):
        return call_result.BootNotification(current_time=now_iso(), interval=self.csms.heartbeat_s,
                                            status=RegistrationStatus.accepted)

    @on(Action.heartbeat)
    def on_heartbeat(self, **kw):
        return call_result.Heartbeat(current_time=now_iso())

    @on(Action.status_notification)
    def on_status(self, connector_id, status, **kw):
        if connector_id == 1:
            self.csms.state(self.id)["status"] = status
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, id_tag, **kw):
        ok = not self.csms.tags or id_tag in self.csms.tags
        return call_result.Authorize(id_tag_info={"status": AuthorizationStatus.accepted if ok else
                                                  AuthorizationStatus.invalid})

    @on(Action.start_transaction)
    def on_start(self, **kw):
        tid = next(self.csms.tx_ids)
        st = self.csms.state(self.id)
        st["tx"] = tid
        self.csms.rebalance_soon()
        return call_result.StartTransaction(transaction_id=tid, id_tag_info={"status": AuthorizationStatus.accepted})

    @on(Action.stop_transaction)
    def on_stop(self, transaction_id, **kw):
        st = self.csms.state(self.id)
        if st.get("tx") == transaction_id:
            st["tx"] = None
        self.csms.rebalance_soon()
        return call_result.StopTransaction()

    @on(Action.meter_values)
    def on_meter(self, meter_value, **kw):
        st = self.csms.state(self.id)
        for mv in meter_value:
            for sv in mv.get("sampled_value", []):
                m = sv.get("measurand", "Energy.Active.Import.Register")
                if m in ("Current.Offered", "Power.Active.Import", "Energy.Active.Import.Register"):
                    st[m] = sv.get("value")
        return call_result.MeterValues()

    @on(Action.diagnostics_status_notification)
    def on_diag(self, **kw):
        return call_result.DiagnosticsStatusNotification()

    @on(Action.firmware_status_notification)
    def on_fw(self, **kw):
        return call_result.FirmwareStatusNotification()


class Csms:
    def __init__(self, host="127.0.0.1", port=9000, password=None, circuit_a=None, balance_s=5.0,
                 heartbeat_s=60, out=None, tags=None):
        self.host = host
        self.port = port
        self.password = password
        self.circuit_a = circuit_a
        self.balance_s = balance_s
        self.heartbeat_s = heartbeat_s
        self.out = out or sys.stdout
        self.tags = set(tags or [])
        self.tx_ids = itertools.count(1)
        self.cps = {}
        self.states = {}
        self.sent_limit = {}
        self.loop = None
        self._wake = None
        self._lock = threading.Lock()

    def log(self, cid, direction, text):
        try:
            msg = json.loads(text)
        except ValueError:
            msg = text
        line = json.dumps({"t": round(time.time(), 3), "id": cid, "dir": direction, "msg": msg})
        with self._lock:
            self.out.write(line + "\n")
            self.out.flush()

    def note(self, text):
        with self._lock:
            self.out.write(json.dumps({"t": round(time.time(), 3), "note": text}) + "\n")
            self.out.flush()

    def state(self, cid):
        return self.states.setdefault(cid, {"status": None, "tx": None})

    # ---- server ------------------------------------------------------------------------------------
    async def _on_connect(self, ws):
        cid = ws.request.path.rstrip("/").split("/")[-1]
        cp = CP(cid, Conn(ws, cid, self))
        cp.csms = self
        self.cps[cid] = cp
        self.sent_limit.pop(cid, None)
        self.note("%s connected" % cid)
        try:
            await cp.start()
        except websockets.exceptions.ConnectionClosed:
            pass
        finally:
            if self.cps.get(cid) is cp:
                del self.cps[cid]
            self.note("%s disconnected" % cid)

    async def serve(self, ready=None):
        self.loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        kw = {"subprotocols": ["ocpp1.6"]}
        if self.password is not None:
            kw["process_request"] = basic_auth(realm="ocpp", check_credentials=lambda u, p: p == self.password)
        async with serve(self._on_connect, self.host, self.port, **kw) as server:
            self.note("listening on ws://%s:%d/ocpp/<id>" % (self.host, self.port))
            if ready is not None:
                ready.set()
            balancer = asyncio.ensure_future(self._balance_loop())
            try:
                await server.serve_forever()
            finally:
                balancer.cancel()

    # ---- balancing ---------------------------------------------------------------------------------
    def rebalance_soon(self):
        if self._wake is not None:
            self._wake.set()

    async def _balance_loop(self):
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.balance_s)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            if self.circuit_a is not None:
                try:
                    await self.balance()
                except Exception as e:  # noqa: BLE001  a charger that went away meanwhile
                    self.note("balance: %r" % e)

    async def balance(self):
        active = sorted(cid for cid, st in self.states.items() if st.get("tx") is not None and cid in self.cps)
        shares = share(self.circuit_a, len(active))
        plan = list(zip(active, shares, strict=True))
        # an idle charger is preset to the minimum: a transaction it starts draws at most 6 A until
        # the next round (at once, on its StartTransaction) gives it its share
        plan += [(cid, MIN_A) for cid in sorted(self.cps) if cid not in active]
        for cid, a in plan:
            if self.sent_limit.get(cid) != a:
                r = await self.cps[cid].call(call.SetChargingProfile(connector_id=0, cs_charging_profiles=profile(a)))
                if r.status == "Accepted":
                    self.sent_limit[cid] = a
                self.note("balance: %s gets %.1f A (%s)" % (cid, a, r.status))

    # ---- commands ----------------------------------------------------------------------------------
    def run_command(self, line, timeout=15):
        """One CLI line -> a printable result (runs the CALL on the server's loop)."""
        parts = line.split()
        if not parts:
            return ""
        op, args = parts[0], parts[1:]
        if op == "help":
            return HELP
        if op == "list":
            return json.dumps({cid: self.states.get(cid) for cid in sorted(self.cps)})
        if op == "circuit":
            self.circuit_a = float(args[0])
            self.rebalance_soon()
            return "circuit %.1f A" % self.circuit_a
        if not args or args[0] not in self.cps:
            return "unknown or disconnected charger"
        req = request(op, args[1:])
        if req is None:
            return "bad command (try help)"
        fut = asyncio.run_coroutine_threadsafe(self.cps[args[0]].call(req, suppress=False), self.loop)
        return repr(fut.result(timeout))


def profile(a, pid=PROFILE_ID, level=1, unit="A"):
    return {"chargingProfileId": pid, "stackLevel": level, "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": {"chargingRateUnit": unit, "chargingSchedulePeriod": [{"startPeriod": 0, "limit": a}]}}


def request(op, a):
    """The ocpp.v16.call request for a CLI command, or None."""
    try:
        if op == "remote_start":
            return call.RemoteStartTransaction(id_tag=a[0], connector_id=1)
        if op == "remote_stop":
            return call.RemoteStopTransaction(transaction_id=int(a[0]))
        if op == "reset":
            return call.Reset(type=a[0] if a else "Soft")
        if op == "availability":
            return call.ChangeAvailability(connector_id=0, type=a[0])
        if op == "get_config":
            return call.GetConfiguration(key=a or None)
        if op == "set_config":
            return call.ChangeConfiguration(key=a[0], value=a[1])
        if op == "limit":  # AMPS [W]
            unit = a[1] if len(a) > 1 else "A"
            return call.SetChargingProfile(connector_id=0, cs_charging_profiles=profile(float(a[0]), 1, 0, unit))
        if op == "clear":
            return call.ClearChargingProfile()
        if op == "composite":
            return call.GetCompositeSchedule(connector_id=1, duration=int(a[0]) if a else 3600)
        if op == "trigger":
            return call.TriggerMessage(requested_message=a[0])
        if op == "unlock":
            return call.UnlockConnector(connector_id=1)
        if op == "list_version":
            return call.GetLocalListVersion()
        if op == "send_list":  # VERSION TAG...
            return call.SendLocalList(list_version=int(a[0]), update_type="Full",
                                      local_authorization_list=[{"idTag": t, "idTagInfo": {"status": "Accepted"}}
                                                                for t in a[1:]])
    except (IndexError, ValueError):
        return None
    return None


HELP = """commands (ID = the charger's id):
  list | circuit AMPS | help
  remote_start ID TAG | remote_stop ID TXID | reset ID Soft|Hard | availability ID Operative|Inoperative
  get_config ID [KEY...] | set_config ID KEY VALUE | trigger ID MESSAGE | unlock ID
  limit ID AMPS [A|W] (TxDefaultProfile, level 0) | clear ID | composite ID [SECONDS]
  list_version ID | send_list ID VERSION TAG..."""


def main(argv=None):
    ap = argparse.ArgumentParser(description="Reference OCPP 1.6J central system (logs every message as JSON lines).")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9000)
    ap.add_argument("--password", help="HTTP Basic password the chargers must give (security profile 1)")
    ap.add_argument("--circuit-a", type=float, help="balance this many amperes among the charging chargers")
    ap.add_argument("--balance-s", type=float, default=5.0, help="balancing period (s), and at every Start/Stop")
    ap.add_argument("--heartbeat-s", type=int, default=60)
    ap.add_argument("--tag", action="append", default=[], help="accepted idTag (default: any)")
    ap.add_argument("--log", help="write the message log here instead of stdout")
    a = ap.parse_args(argv)
    out = open(a.log, "a") if a.log else sys.stdout
    cs = Csms(a.host, a.port, a.password, a.circuit_a, a.balance_s, a.heartbeat_s, out, a.tag)
    ready = threading.Event()

    def cli():
        ready.wait()
        for line in sys.stdin:
            try:
                res = cs.run_command(line.strip())
            except Exception as e:  # noqa: BLE001  a person's typo must not end the server
                res = "error: %r" % e
            if res:
                print(res, file=sys.stderr, flush=True)

    threading.Thread(target=cli, daemon=True).start()
    try:
        asyncio.run(cs.serve(ready))
    except KeyboardInterrupt:
        pass
    return 0
