# Many simulated chargers in one MicroPython process (tools/sim-fleet starts one or more of these):
# each its own real App (firmware/app.py: Station, Charger, Cloud, Panel) on its own simulated board,
# plant and vehicle, with its own MQTT connection to the broker; only the scheduling and the
# transport are the simulator's:
#
# - one loop instead of one App.run per charger: every `tick_ms` each charger gets its fast tick
#   (App.fast_tick, as App._idle does), and every `slow_ms` App.step (fast tick + slow work: PP,
#   meter, events, sessions, the cloud backend). The slow work of the chargers is spread over the
#   rounds so that each round carries the same share. Defaults 250 ms / 1000 ms (the device: 10 / 50);
#   what that means is in README ("Many chargers in one process").
# - the board is board/sim/board.py's SimBoard with the cheaper twins: the pilot's plateaus straight
#   from the plant (board/sim/direct_pilot.py, no 100 ADC conversions per tick), the meter's values
#   straight from the plant (board/sim/direct_meter.py, no SPI register frames), and no RFID reader
#   (a board without one: board/support.py allows it). Same plant, same vehicle, same CP plateaus.
# - the MQTT link is board/sim/mqtt_poll.py's PollLink: non-blocking, no thread, all sockets polled
#   by one Hub; Cloud sees the same interface as firmware/link.py's Link.
# - the vehicles of this process share one MQTT connection (`<name>-ev`): they take `sim/<id>/ev`
#   ops and publish `sim/<id>/ev/state` (on change and every EV_STATE_MS), as tools/sim-charger does.
# - a commanded restart (board.reset()) reboots that charger alone (reset cause `soft`) after its
#   link said goodbye; an exception out of a charger's tick reboots it too (and is printed).
#
# Control: `{"op":"_quit"}` on stdin stops every charger cleanly (offline, DISCONNECT). Once a second
# an `@fleet` JSON line on stdout: chargers, connected links, round time, the longest gap between
# two fast ticks of any charger, messages sent / received, heap.
import gc
import json
import select
import sys
import time

from board.sim.board import RESET_EXIT_CODE, SimBoard
from board.sim.clock import RealClock
from board.sim.direct_meter import DirectMeter
from board.sim.mqtt_poll import Hub
from board.sim.plant import Plant
from firmware import protocol
from firmware.app import App
from firmware.ticks import ticks_add, ticks_diff

ticks_us = time.ticks_us  # type: ignore[attr-defined]  (MicroPython)

TICK_MS = 250
SLOW_MS = 1000
EV_STATE_MS = 1000  # sim/<id>/ev/state at least this often, as sim-charger (refcloud.fleet: 3 s is stale)
STATS_MS = 1000
REBOOT_WAIT_MS = 2500  # a restarting charger's link may say goodbye this long
HUB_EVERY = 64  # chargers stepped between two polls of the sockets


class FleetBoard(SimBoard):
    """SimBoard with the fleet's cheaper twins of the pilot's ADC burst and the meter's SPI."""

    def __init__(self, clock, plant, serial, storage_root, reset_cause, unix_time):
        SimBoard.__init__(self, clock, plant, serial=serial, reset_cause=reset_cause, storage_root=storage_root,
                          direct_pilot=True, unix_time=unix_time)
        m = self.meter
        self.meter = DirectMeter(m.spi, m.cs, plant)

    def make_rfid(self, machine):
        return None  # no reader on this board (board/support.py): no PN532 twin per charger


def _unix_time():
    return int(time.time())


class Unit:
    """One charger of the fleet: its plant (the vehicle survives the charger's reboots), board, link, app."""

    def __init__(self, fleet, index, spec):
        self.fleet = fleet
        self.index = index
        self.serial = spec["id"]
        self.state_dir = spec["state_dir"]
        self.settings = spec.get("settings")
        self.plant = Plant(fleet.clock, seed=index + 1)
        self.app = None
        self.link = None
        self.old_link = None
        self.reboot_at = None
        self.cause = "power_on"
        self.boots = 0
        self.ev_changes = -1
        self.ev_pub = 0
        self.last = None
        self.topic_ev_state = "sim/" + self.serial + "/ev/state"

    def boot(self, now):
        f = self.fleet
        board = FleetBoard(f.clock, self.plant, self.serial, self.state_dir, self.cause, _unix_time)
        t = protocol.Topics(f.prefix, self.serial)
        self.link = f.hub.link(self.serial, t.inbound(), t.online)
        self.app = App(board, self.link, serial=self.serial, prefix=f.prefix, first_settings=self.settings)
        self.app.cloud.start(now)  # queues boot event, config/reported, state; starts the link
        self.boots += 1
        self.last = now

    def reboot(self, now, cause):
        self.app = None
        self.old_link = self.link
        self.link = None
        self.cause = cause
        self.reboot_at = ticks_add(now, REBOOT_WAIT_MS)
        self.fleet.reboots += 1

    def waiting(self, now):
        """During a reboot: the old link says goodbye first (same client id), then the charger boots."""
        old = self.old_link
        if old is not None and not old.closed() and ticks_diff(now, self.reboot_at) < 0:
            return True
        if old is not None:
            self.fleet.hub.remove(old)
            self.old_link = None
        self.boot(now)
        return False

    def step(self, now, slow):
        app = self.app
        try:
            if slow:
                app.step(now)
                self.vehicle(now)
            else:
                app.fast_tick(now)
                app.board.wdt.feed()
        except SystemExit as e:
            code = e.args[0] if e.args else None
            if code != RESET_EXIT_CODE:
                raise
            self.reboot(now, "soft")
        except Exception as e:  # noqa: BLE001  a crash of one charger reboots that charger, like the device
            print("fleet: %s crashed: %r" % (self.serial, e))
            sys.print_exception(e)  # type: ignore[attr-defined]
            self.fleet.crashes += 1
            if self.link is not None:
                self.link.stop()
            self.reboot(now, "soft")

    def vehicle(self, now):
        p = self.plant
        if p.changes == self.ev_changes and ticks_diff(now, self.ev_pub) < EV_STATE_MS:
            return
        self.ev_changes = p.changes
        self.ev_pub = now
        st = p.ev_state()
        st["t_ms"] = p.t_ms
        self.fleet.ev_link.publish(self.topic_ev_state, json.dumps(st), False, 0)


class Fleet:
    def __init__(self, specs, host, port, name="fleet", prefix="evse", tick_ms=TICK_MS, slow_ms=SLOW_MS):
        self.clock = RealClock()
        self.prefix = prefix
        self.name = name
        self.tick_ms = tick_ms
        self.slow_every = max(1, slow_ms // tick_ms)
        self.hub = Hub(host, port)
        self.units = [Unit(self, i, s) for i, s in enumerate(specs)]
        self.by_serial = {}
        for u in self.units:
            self.by_serial[u.serial] = u
        self.ev_link = self.hub.link(name + "-ev", ["sim/" + u.serial + "/ev" for u in self.units], None,
                                     outbox_items=1 << 20, outbox_bytes=1 << 30, inbox_items=1 << 16)
        self.stopping = False
        self.reboots = 0
        self.crashes = 0
        self.rounds = 0
        self.gc_ms = 0
        self.acc = [0, 0, 0, 0, 0]  # us in fast-only steps, in slow steps, their counts, us in the hub
        self._stdin = select.poll()
        self._stdin.register(sys.stdin, select.POLLIN)
        self._stdin_open = True

    def ev_ops(self):
        lk = self.ev_link
        while True:
            m = lk.get()
            if m is None:
                break
            parts = m[0].split("/")
            u = self.by_serial.get(parts[1]) if len(parts) == 3 else None
            if u is None or m[1] is None:
                continue
            try:
                doc = protocol.loads(m[1])
            except protocol.ProtocolError:
                print("fleet: %s: ev op is not JSON" % u.serial)
                continue
            err = u.plant.ev_op(doc)
            if err:
                print("fleet: %s: ev op refused: %s" % (u.serial, err))

    def control(self):
        while self._stdin_open and self._stdin.poll(0):
            line = sys.stdin.readline()
            if not line:
                self._stdin.unregister(sys.stdin)
                self._stdin_open = False
                break
            line = line.strip()
            if line:
                try:
                    doc = json.loads(line)
                except ValueError:
                    continue
                if isinstance(doc, dict) and doc.get("op") == "_quit":
                    self.stopping = True

    def run(self):
        clock = self.clock
        hub = self.hub
        now = clock.ticks_ms()
        self.ev_link.start()
        for u in self.units:
            u.boot(now)
            if u.index % HUB_EVERY == HUB_EVERY - 1:
                hub.step(0)
        nxt = clock.ticks_ms()
        stats_at = nxt
        round_max = 0
        round_sum = 0
        rounds = 0
        k = self.slow_every
        n = len(self.units)
        while not self.stopping:
            t0 = clock.ticks_ms()
            r = self.rounds
            self.rounds += 1
            hub.step(0)
            self.ev_ops()
            acc = self.acc
            for u in self.units:
                now = clock.ticks_ms()
                if u.app is None:
                    if u.waiting(now):
                        continue
                slow = (u.index + r) % k == 0
                t1 = ticks_us()
                u.step(now, slow)
                t2 = ticks_us()
                acc[slow] += ticks_diff(t2, t1)
                acc[slow + 2] += 1
                if u.index % HUB_EVERY == HUB_EVERY - 1:
                    hub.step(0)
                    acc[4] += ticks_diff(ticks_us(), t2)
            t1 = ticks_us()
            hub.step(0)
            acc[4] += ticks_diff(ticks_us(), t1)
            now = clock.ticks_ms()
            d = ticks_diff(now, t0)
            round_sum += d
            rounds += 1
            if d > round_max:
                round_max = d
            if ticks_diff(now, stats_at) >= STATS_MS:
                # one collection a second, timed: a short pause now instead of a long one when a large
                # heap runs full (its mark phase is proportional to the live data: every charger)
                t1 = clock.ticks_ms()
                gc.collect()
                self.gc_ms = ticks_diff(clock.ticks_ms(), t1)
                self.stats(now, n, round_max, round_sum // max(1, rounds))
                stats_at = now
                round_max = round_sum = rounds = 0
                self.control()
            nxt = ticks_add(nxt, self.tick_ms)
            wait = ticks_diff(nxt, clock.ticks_ms())
            if wait < 0:
                nxt = clock.ticks_ms()  # overran: no burst of catch-up rounds
                wait = 0
            # the sockets are the sleep: inbound messages are taken as they come
            end = ticks_add(clock.ticks_ms(), wait)
            while True:
                hub.step(max(0, ticks_diff(end, clock.ticks_ms())))
                if ticks_diff(end, clock.ticks_ms()) <= 0:
                    break
        self.shutdown()

    def stats(self, now, n, round_max, round_mean):
        gap = 0
        up = 0
        for u in self.units:
            a = u.app
            if a is None:
                continue
            g = a.take_max_gap()
            if g > gap:
                gap = g
            if u.link.connected:
                up += 1
        hub = self.hub
        acc = self.acc
        doc = {"name": self.name, "n": n, "connected": up, "ev_connected": self.ev_link.connected,
               "round_ms_max": round_max, "round_ms_mean": round_mean, "gap_ms_max": gap,
               "tick_ms": self.tick_ms, "slow_ms": self.tick_ms * self.slow_every,
               "tx_msgs": hub.tx_msgs, "rx_msgs": hub.rx_msgs, "connects": hub.connects, "drops": hub.drops,
               "reboots": self.reboots, "crashes": self.crashes, "gc_ms": self.gc_ms,
               "fast_us": acc[0] // max(1, acc[2]), "slow_us": acc[1] // max(1, acc[3]), "hub_ms": acc[4] // 1000,
               "mem_alloc": gc.mem_alloc(),
               "mem_free": gc.mem_free()}
        print("@fleet " + json.dumps(doc))
        for i in range(5):
            acc[i] = 0

    def shutdown(self):
        clock = self.clock
        for u in self.units:
            if u.app is not None:
                try:
                    u.app.shutdown()  # persist, say offline through the link, disconnect
                except Exception as e:  # noqa: BLE001
                    print("fleet: %s: shutdown: %r" % (u.serial, e))
        self.ev_link.stop()
        end = ticks_add(clock.ticks_ms(), 3000)
        while self.hub.busy() and ticks_diff(end, clock.ticks_ms()) > 0:
            self.hub.step(10)
        print("@fleet_stopped")


def parse_args(argv):
    opts = {"prefix": "evse", "name": "fleet", "tick-ms": str(TICK_MS), "slow-ms": str(SLOW_MS)}
    i = 0
    while i + 1 < len(argv):
        if not argv[i].startswith("--"):
            raise SystemExit("unexpected argument " + argv[i])
        opts[argv[i][2:]] = argv[i + 1]
        i += 2
    if i < len(argv):
        raise SystemExit("missing value for " + argv[i])
    return opts


def main(argv=None):
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    with open(opts["spec"]) as f:
        specs = json.load(f)["chargers"]
    host, _, port = opts["broker"].rpartition(":")
    fleet = Fleet(specs, host or "127.0.0.1", int(port), opts["name"], opts["prefix"], int(opts["tick-ms"]),
                  int(opts["slow-ms"]))
    print("@fleet_boot " + json.dumps({"name": fleet.name, "n": len(specs), "tick_ms": fleet.tick_ms,
                                       "slow_ms": fleet.tick_ms * fleet.slow_every}))
    fleet.run()
