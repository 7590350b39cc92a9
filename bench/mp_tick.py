# Fast-loop micro benchmark on the MicroPython unix port (run by tools/bench.py; prints one JSON line).
#   MICROPYPATH=<bundle or repo>:<lib> micropython -X heapsize=512K bench/mp_tick.py STATE_DIR
# The real App on the simulated board in virtual time (VirtualClock): boot, plug, charge until the
# contactor is closed and the vehicle draws, then, in steady charging:
#   - allocation: gc disabled, gc.mem_alloc() before/after N fast ticks; then heap_lock() over N ticks
#     (MemoryError = the tick allocated);
#   - the whole loop with its slow work (no cloud): bytes allocated per second;
#   - time: time.ticks_us() around each App.fast_tick (CPU time of the tick, not the 10 ms period),
#     and separately around Charger.tick alone and Pilot.sample alone (the simulated plant's share).
import gc
import json
import sys
import time

import micropython

try:
    import _frozen_sim  # noqa: F401  (32-bit ports: the simulator from the binary's frozen image)
except ImportError:
    pass

from board.sim.board import SimBoard  # noqa: E402
from board.sim.clock import VirtualClock  # noqa: E402
from board.sim.plant import Plant  # noqa: E402
from firmware.app import App  # noqa: E402

N_ALLOC = 2000
N_TIME = 3000


class SimAlloc:
    """Counts the bytes allocated inside the simulated plant (entry points wrapped with fixed-arity
    closures, so the wrapping itself allocates nothing per call)."""

    def __init__(self, plant):
        self.bytes = 0
        self.depth = 0
        for name in ("sync", "update", "spi_xfer", "pin_write", "refresh"):
            f = getattr(plant, name)
            setattr(plant, name, self._wrap(name, f))
        f = plant.pwm_write

        def pwm_write(pin, freq, duty, active):
            self.depth += 1
            m0 = gc.mem_alloc()
            f(pin, freq, duty, active)
            self.depth -= 1
            if self.depth == 0:
                self.bytes += gc.mem_alloc() - m0

        plant.pwm_write = pwm_write
        f2 = plant.sync_now

        def sync_now():
            self.depth += 1
            m0 = gc.mem_alloc()
            f2()
            self.depth -= 1
            if self.depth == 0:
                self.bytes += gc.mem_alloc() - m0

        plant.sync_now = sync_now

    def _wrap(self, name, f):
        def w0():
            self.depth += 1
            m0 = gc.mem_alloc()
            f()
            self.depth -= 1
            if self.depth == 0:
                self.bytes += gc.mem_alloc() - m0

        def w1(a):
            self.depth += 1
            m0 = gc.mem_alloc()
            f(a)
            self.depth -= 1
            if self.depth == 0:
                self.bytes += gc.mem_alloc() - m0

        def w2(a, b):
            self.depth += 1
            m0 = gc.mem_alloc()
            f(a, b)
            self.depth -= 1
            if self.depth == 0:
                self.bytes += gc.mem_alloc() - m0

        def w3(a, b, c):
            self.depth += 1
            m0 = gc.mem_alloc()
            f(a, b, c)
            self.depth -= 1
            if self.depth == 0:
                self.bytes += gc.mem_alloc() - m0

        return {"sync": w1, "update": w0, "refresh": w0, "spi_xfer": w3, "pin_write": w2}[name]


def pct(xs, p):
    s = sorted(xs)
    i = (len(s) - 1) * p // 100
    return s[i]


def main():
    root = sys.argv[1]
    clock = VirtualClock(0)
    plant = Plant(clock)
    board = SimBoard(clock, plant, serial="BENCH1", storage_root=root)
    app = App(board, None, first_settings={"max_current_a": 16})
    plant.ev_op({"op": "plug", "cable_a": 32, "phases": 3, "max_a": 32})
    plant.ev_op({"op": "charge", "on": True})
    # run the whole app (slow work included) for 10 s of virtual time: charging, vehicle following
    for _ in range(1000):
        w = app.step(clock.ticks_ms())
        clock.sleep_ms(w if w > 0 else 1)
    ch = app.charger
    ok = board.contactor.closed and ch.mode == "connected_charging" and plant.draw_a[0] > 1
    res = {"charging": ok, "mode": ch.mode, "draw_a": plant.draw_a[0]}

    def ticks(n):
        for _ in range(n):
            clock.advance(10)
            app.fast_tick(clock.ticks_ms())

    ticks(10)
    gc.collect()
    gc.disable()
    a0 = gc.mem_alloc()
    ticks(N_ALLOC)
    a1 = gc.mem_alloc()
    gc.enable()
    res["alloc_bytes_total"] = a1 - a0
    res["alloc_ticks"] = N_ALLOC
    res["tick_alloc_bytes"] = (a1 - a0) / N_ALLOC
    gc.collect()
    try:
        micropython.heap_lock()
        try:
            ticks(N_ALLOC)
        finally:
            micropython.heap_unlock()
        res["heap_lock_ok"] = True
    except MemoryError:
        res["heap_lock_ok"] = False

    # timing: whole fast tick; core only; pilot sample only (the simulated ADC behind it)
    us = time.ticks_us
    diff = time.ticks_diff
    t_tick = []
    t_core = []
    t_pilot = []
    inp = app.inp
    gc.collect()
    for _ in range(N_TIME):
        clock.advance(10)
        now = clock.ticks_ms()
        t0 = us()
        app.fast_tick(now)
        t1 = us()
        t_tick.append(diff(t1, t0))
        t0 = us()
        ch.tick(now, inp)
        t1 = us()
        t_core.append(diff(t1, t0))
        t0 = us()
        board.pilot.sample()
        t1 = us()
        t_pilot.append(diff(t1, t0))
    res["tick_us_p50"] = pct(t_tick, 50)
    res["tick_us_p99"] = pct(t_tick, 99)
    res["tick_us_max"] = max(t_tick)
    res["core_us_p50"] = pct(t_core, 50)
    res["core_us_p99"] = pct(t_core, 99)
    res["pilot_sample_us_p50"] = pct(t_pilot, 50)
    res["pilot_sample_us_p99"] = pct(t_pilot, 99)
    # the whole loop (fast ticks + slow work: meter, temperature, PP, sessions, checkpoints; no cloud
    # link here): bytes allocated per second of steady charging, i.e. the GC pressure; and the same
    # without what the simulated plant behind the fake peripherals allocates (its float physics and
    # register model): the firmware's own share.
    sim = SimAlloc(plant)
    gc.collect()
    gc.disable()
    a0 = gc.mem_alloc()
    for _ in range(300):
        w = app.step(clock.ticks_ms())
        clock.sleep_ms(w if w > 0 else 1)
    a1 = gc.mem_alloc()
    gc.enable()
    res["loop_alloc_bytes_per_s"] = (a1 - a0) // 3
    res["loop_alloc_fw_bytes_per_s"] = (a1 - a0 - sim.bytes) // 3
    res["still_charging"] = board.contactor.closed
    # the ADC reads of one pilot sample, for scaling to the ESP32
    res["pilot_adc_reads"] = board.pilot.burst
    print("@result " + json.dumps(res))


main()
