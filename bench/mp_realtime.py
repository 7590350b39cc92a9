# Real-time benchmarks on the MicroPython unix port (run by tools/bench.py, not a test).
#
#   MICROPYPATH=build/bundle:build/bundle/lib:.frozen micropython -X heapsize=256K bench/mp_realtime.py \
#       MODE ID HOST:PORT STATE_DIR SEED
#
# One process = the real App (bundle image) on the simulated board in real time (RealClock) with its
# MQTT link (firmware/link.py thread) to a real broker, plus an in-process vehicle. This loop replaces
# App.run() only to be able to act at arbitrary instants between two ticks; each iteration is exactly
# App.run()'s: now = ticks_ms(); wait = app.step(now); sleep(wait).
#
# MODE safety: the vehicle charges; in each trial, at a random instant 50..300 ms after charging was
#   seen, one of three things happens physically in the plant: the vehicle opens S2 (C->B), the RCD
#   module asserts its AC trip line, or the CP is shorted (state E). The time is taken (ticks_us) right
#   after the plant changed and again when the firmware writes 0 to the contactor drive pin (a wrapper
#   around plant.pin_write, i.e. at the simulated GPIO). The fault is then cleared and the next trial
#   starts once the contactor has closed again. To make a trial take ~1 s instead of ~40 s, the bench
#   patches three core constants in the running firmware (see bench/README.md): MIN_OFF_MS 10000 -> 300,
#   RETRY_MS 30000 -> 300, MAX_RETRIES 3 -> 10**6; and the vehicle's S2 delay 500 -> 50 ms. None of
#   them is on the path from the event to the open command.
#   Control on stdin: `phase NAME N MAX_S` runs N trials (or MAX_S seconds); `quit`.
#   Output: `@ready`, `@trial NAME KIND US`, `@miss NAME KIND` (no open within 2 s), `@phase {...}`.
#
# MODE limit: cloud mode (standalone false, fallback 16 A), the vehicle plugged but not asking for
#   current (state B2: PWM offered, contactor open, so the 5 s raise interval does not apply). Every
#   change of the CP PWM duty at the simulated PWM peripheral prints `@pwm TIME_NS DUTY_U16`
#   (time.time_ns(): the same CLOCK_REALTIME that the CPython side stamps its paho publish with).
import json
import select
import sys
import time

import firmware.pilot_machine as pilot_mod  # the contactor rest time lives here since the redesign
import firmware.safety as safety_mod
from board import circuit as C
from board.sim.board import SimBoard
from board.sim.clock import RealClock
from board.sim.plant import Plant
from firmware.app import App
from firmware.link import Link
from firmware.ticks import ticks_diff

ticks_us = time.ticks_us
us_diff = time.ticks_diff
KINDS = ("cb", "rcd", "e")
MISS_US = 2000000
STUCK_MS = 20000


class Rng:
    def __init__(self, seed):
        self.s = (seed * 2654435761 + 1) & 0x7FFFFFFF

    def below(self, n):
        self.s = (self.s * 1103515245 + 12345) & 0x7FFFFFFF
        return (self.s >> 8) % n


class Trials:
    def __init__(self, app, board, plant, seed):
        self.app = app
        self.board = board
        self.plant = plant
        self.rng = Rng(seed)
        self.state = "wait"  # wait (for charging) | armed | fired | recover | off
        self.fire_at = None
        self.kind = None
        self.t_fire = None
        self.t_open = None
        self.k = 0
        self.phase = None
        self.left = 0
        self.phase_end = None
        self.ready = False
        self.n_ok = 0
        self.n_miss = 0
        self.worst = 0
        self.since = None
        self.stuck = 0
        self.poll = select.poll()
        self.poll.register(sys.stdin, select.POLLIN)
        orig = plant.pin_write

        def pin_write(pin, v):
            if pin == C.PIN_CONTACTOR and not v and self.t_open is None and self.state == "fired":
                self.t_open = ticks_us()
            orig(pin, v)

        plant.pin_write = pin_write

    def charging(self):
        con = self.board.contactor
        return con.commanded and con.closed and self.plant.draw_a[0] > 0

    def fire(self):
        p = self.plant
        k = self.kind
        if k == "cb":
            p.ev_op({"op": "charge", "on": False})
        elif k == "rcd":
            p.ev_op({"op": "fault", "kind": "rcd_ac", "on": True})
        else:
            p.ev_op({"op": "fault", "kind": "cp_short", "on": True})
        self.t_fire = ticks_us()
        self.fire_at = None
        self.state = "fired"

    def clear(self):
        p = self.plant
        k = self.kind
        if k == "cb":
            p.ev_op({"op": "charge", "on": True})
        elif k == "rcd":
            p.ev_op({"op": "fault", "kind": "rcd_ac", "on": False})
        else:
            p.ev_op({"op": "fault", "kind": "cp_short", "on": False})

    def command(self, line):
        w = line.split()
        if not w:
            return
        if w[0] == "quit":
            self.app.stopping = True
        elif w[0] == "phase":
            self.phase = w[1]
            self.left = int(w[2])
            self.phase_end = time.ticks_add(time.ticks_ms(), int(float(w[3]) * 1000))
            self.n_ok = self.n_miss = self.worst = self.stuck = 0
            self.app.max_gap_ms = 0

    def end_phase(self):
        link = self.app.link
        doc = {"name": self.phase, "trials": self.n_ok, "missed": self.n_miss, "stuck": self.stuck,
               "worst_us": self.worst, "gap_max_ms": self.app.max_gap_ms, "link": link.status()}
        print("@phase " + json.dumps(doc))
        self.phase = None

    def __call__(self, now):
        while self.poll.poll(0):
            line = sys.stdin.readline()
            if not line:
                self.poll.unregister(sys.stdin)
                self.app.stopping = True
                break
            self.command(line)
        if not self.ready:
            if self.app.link.connected and self.charging():
                self.ready = True
                print("@ready")
            return
        st = self.state
        if st == "fired":
            if self.t_open is not None:
                dt = us_diff(self.t_open, self.t_fire)
                if self.phase is not None:
                    print("@trial %s %s %d" % (self.phase, self.kind, dt))
                    self.n_ok += 1
                    if dt > self.worst:
                        self.worst = dt
                    self.left -= 1
                self.clear()
                self.state = "recover"
                self.since = now
            elif us_diff(ticks_us(), self.t_fire) > MISS_US:
                if self.phase is not None:
                    print("@miss %s %s" % (self.phase, self.kind))
                    self.n_miss += 1
                    self.left -= 1
                self.clear()
                self.state = "recover"
                self.since = now
        elif st == "recover" or st == "wait":
            if self.charging():
                self.state = "wait"
                if self.phase is not None:
                    self.kind = KINDS[self.k % 3]
                    self.k += 1
                    self.t_open = None
                    self.fire_at = time.ticks_add(ticks_us(), 50000 + self.rng.below(250000))
                    self.state = "armed"
            elif ticks_diff(now, self.since or now) > STUCK_MS:
                # should not happen: get the vehicle charging again and count it
                self.stuck += 1
                self.app.charger.resume(now)
                self.plant.ev_op({"op": "plug", "cable_a": 32, "phases": 3, "max_a": 32})
                self.since = now
        if self.phase is not None and self.state != "armed" and self.state != "fired":
            if self.left <= 0 or ticks_diff(now, self.phase_end) >= 0:
                self.end_phase()


class PwmTap:
    """MODE limit: prints every change of the CP PWM duty with time.time_ns()."""

    def __init__(self, app, plant):
        self.app = app
        self.ready = False
        self.poll = select.poll()
        self.poll.register(sys.stdin, select.POLLIN)
        orig = plant.pwm_write
        last = [None]

        def pwm_write(pin, freq, duty, active):
            if pin == C.PIN_CP_PWM and duty != last[0]:
                last[0] = duty
                if self.ready:
                    print("@pwm %d %d" % (time.time_ns(), duty))
            orig(pin, freq, duty, active)

        plant.pwm_write = pwm_write

    def __call__(self, now):
        while self.poll.poll(0):
            line = sys.stdin.readline()
            if not line or line.strip() == "quit":
                self.app.stopping = True
                return
        if not self.ready and self.app.link.connected and self.app.board.pilot.mode == "pwm":
            self.ready = True
            print("@ready")


def main():
    mode, sid, broker, root, seed = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    host, _, port = broker.rpartition(":")
    clock = RealClock()
    plant = Plant(clock)
    if mode == "safety":
        pilot_mod.MIN_OFF_MS = 300
        safety_mod.RETRY_MS = 300
        safety_mod.MAX_RETRIES = 1000000
        plant.s2_delay_ms = 50
        plant.charge_off_ms = 0
        first = {"max_current_a": 16}
    else:
        first = {"standalone": False, "fallback_current_a": 16, "max_current_a": 32}
    board = SimBoard(clock, plant, serial=sid, storage_root=root)
    base = "evse/" + sid + "/"
    link = Link(sid, host, int(port), subscriptions=[], online_topic=base + "online")
    app = App(board, link, serial=sid, first_settings=first)
    if mode == "safety":
        hook = Trials(app, board, plant, seed)
        plant.ev_op({"op": "plug", "cable_a": 32, "phases": 3, "max_a": 32})
    else:
        hook = PwmTap(app, plant)
        plant.ev_op({"op": "plug", "cable_a": 32, "phases": 3, "max_a": 32, "charge": False})
    app.hooks.append(hook)
    app.cloud.start(board.ticks_ms())
    fire = mode == "safety"
    while not app.stopping:
        wait = app.step(board.ticks_ms())
        if wait <= 0:
            continue
        end = time.ticks_add(ticks_us(), wait * 1000)
        if fire and hook.fire_at is not None and us_diff(hook.fire_at, end) < 0:
            d = us_diff(hook.fire_at, ticks_us())
            if d > 0:
                time.sleep_us(d)
            hook.fire()
        d = us_diff(end, ticks_us())
        if d > 0:
            time.sleep_us(d)
    link.shutdown(1000)


main()
