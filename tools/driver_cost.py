# Per-call cost of the drivers' sampling paths on the simulated board (not a test: prints numbers).
# Run on the unix port:  MICROPYPATH=.:host_tests .venv/bin/micropython -X heapsize=512K tools/driver_cost.py
# or on CPython:         PYTHONPATH=. .venv/bin/python tools/driver_cost.py
# The figures include the simulated plant behind the fake peripherals (each fake ADC read runs plant
# code), so they are an upper bound for the driver logic; on the ESP32 an ADC read itself costs ~20 us.
import time

from board.sim.board import SimBoard
from board.sim.clock import VirtualClock

try:
    _us = time.ticks_us
    _diff = time.ticks_diff
except AttributeError:
    def _us():
        return int(time.perf_counter() * 1000000)

    def _diff(a, b):
        return a - b


def measure(name, fn, n):
    t0 = _us()
    for _ in range(n):
        fn()
    dt = _diff(_us(), t0)
    print("%-34s %8d us/call  (%d calls)" % (name, dt // n, n))


def main():
    clock = VirtualClock(0)
    b = SimBoard(clock)
    b.plant.ev_op({"op": "plug", "cable_a": 32, "phases": 3, "max_a": 32})
    b.pwm_on(267)  # 16 A
    clock.advance(1000)
    b.contactor.set(True, clock.ticks_ms())
    clock.advance(3000)
    b.meter.begin()

    def tick():
        clock.advance(10)

    def pilot():
        clock.advance(10)
        b.pilot.sample()

    def contactor():
        clock.advance(10)
        b.contactor.update(clock.ticks_ms())

    def rcd():
        clock.advance(10)
        b.rcd.poll(clock.ticks_ms())

    def meter():
        clock.advance(1000)
        b.meter.read(clock.ticks_ms())

    def read_cp():
        b.plant.read_cp()

    measure("clock.advance (baseline)", tick, 2000)
    measure("plant.read_cp (one fake ADC read)", read_cp, 5000)
    measure("Pilot.sample (100 reads)", pilot, 500)
    measure("Contactor.update", contactor, 2000)
    measure("RCD.poll", rcd, 2000)
    measure("Proximity.read (4 reads)", b.pp.read, 500)
    measure("NTC.read (4 reads)", b.temp.read, 500)
    measure("ATM90E32.read (13 registers)", meter, 200)
    print("pilot:", b.pilot.state, b.pilot.high_mv, b.pilot.low_mv, "meter ok:", b.meter.ok)


main()
