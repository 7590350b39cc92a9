# What only a 32-bit port shows, as on the ESP32: small ints end at 2**30 (larger values are heap
# objects), and ticks_ms wraps at 2**30. These run on CPython and on both 32-bit unix ports
# (host_tests/conftest.py); the heap_lock() proofs bite only on MicroPython.
#   - steady charging: App.fast_tick allocates nothing over a ticks wrap;
#   - the same with a lifetime energy register and Unix timestamps past 2**30 (the Wh of a
#     20-year-old 22 kW charger, seconds since 1970), and the session record computed right.
import sys

import simrig

from firmware.storage import Storage
from firmware.ticks import PERIOD, ticks_diff
from mpcompat import TempDir, heap_locked

MP = sys.implementation.name == "micropython"
TICK = 10
LIFETIME_WH = 3_900_000_000  # 22 kW around the clock for 20 years: > 2**31
UNIX_S = 1_800_000_000  # 2027: Unix seconds are past 2**30 since 2004


def _rig(**kw):
    return simrig.Rig(**kw)


def _charge(r):
    r.plug_and_charge(max_a=16)
    r.run(10000, until=lambda: r.contactor_out() and r.app.meter.i_a[0] > 1)
    assert r.contactor_out() and r.ch.mode == "connected_charging", r.ch.mode


def _locked_ticks(r, n):
    app = r.app
    clock = r.clock

    def ticks():
        for _ in range(n):
            app.fast_tick(clock.ticks_ms())
            clock.advance(TICK)

    heap_locked(ticks)


def test_ports_are_32_bit_with_the_simulator_frozen():
    if not MP:
        return  # the CPython leg has nothing 32-bit to show
    assert sys.maxsize == 2**31 - 1
    assert PERIOD == 2**30  # ticks_ms wraps where the ESP32's does
    import board.sim

    assert board.sim.__path__ == ".frozen/board/sim"  # simulator code is not counted as device heap


def test_steady_charging_allocates_nothing_across_the_ticks_wrap():
    r = _rig(start_ms=PERIOD - 20000)
    _charge(r)
    before = r.now()
    _locked_ticks(r, 3000)  # 30 s of 10 ms ticks
    after = r.now()
    assert after < before and ticks_diff(after, before) == 30000  # the wrap is inside the locked run
    assert r.contactor_out() and r.board.contactor.commanded


def test_energy_and_timestamps_past_2_30():
    root = TempDir("e30").path
    Storage(root).write_json("energy.json", {"wh": LIFETIME_WH})  # a long life before this boot
    r = _rig(storage_root=root)
    clock0 = r.now()
    r.board.unix_time = lambda: UNIX_S + ticks_diff(r.now(), clock0) // 1000
    assert r.app.station.energy_wh_persisted == LIFETIME_WH
    _charge(r)
    _locked_ticks(r, 500)  # big lifetime Wh and timestamps stay out of the fast path's arithmetic
    r.run(120000)
    r.ev({"op": "unplug"})
    r.run(3000)
    closed = r.app.sessions.pending()
    assert closed, "no closed session"
    rec = closed[-1]
    assert rec["meter_start_wh"] >= LIFETIME_WH
    assert rec["wh"] == rec["meter_end_wh"] - rec["meter_start_wh"]
    want = 3 * 230 * 16 * (rec["ts_end"] - rec["ts_start"]) / 3600  # 16 A on 3 phases, about 11 kW
    assert abs(rec["wh"] - want) <= 0.15 * want, (rec, want)
    assert UNIX_S <= rec["ts_start"] < rec["ts_end"] <= UNIX_S + 200, rec
    assert r.app.station.energy_wh_persisted >= LIFETIME_WH + rec["wh"]
