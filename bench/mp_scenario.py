# The reference scenario's charger as a device loads it, on a 32-bit unix port (run by tools/bench.py):
#
#   MICROPYPATH=<image path> micropython -X heapsize=NK bench/mp_scenario.py ID HOST:PORT STATE_DIR SETTINGS [ROMFS]
#
# The real App with its one MQTT link (firmware/link.py) on the simulated board in real time, like
# tools/sim-charger, except that the vehicle has no MQTT connection of its own: tools/sim-charger
# gives it a second Link (thread, socket, umqtt client, buffers) whose heap a device does not have, so
# here the bench sends the vehicle ops as JSON lines on stdin (board/sim/runner.py Vehicle reads them).
# The simulator is frozen into the 32-bit binaries (tools/unix32/sim.py), but a frozen module still
# puts its dict, function and class objects on the heap, and the plant's data lives there too. A
# device has none of it, so this script measures it: the device modules the simulator builds on are
# imported first, then the simulator's modules, then the clock and plant are made; the growth of the
# live heap over those two steps is printed once as `@simheap BYTES` and tools/bench.py gives the
# process that much heap on top of the figure it reports. The RFID reader's twin is made here too; the
# other fake peripherals inside SimBoard are not separated from the drivers and stay counted.
# ROMFS: the image is read into the heap first (on a board it is in flash); tools/bench.py gives the
# process that many bytes of heap on top of the figure it reports.
import gc
import json
import sys

if len(sys.argv) > 5:
    import vfs

    with open(sys.argv[5], "rb") as f:
        _img = f.read()
    vfs.mount(vfs.VfsRom(_img), "/rom")

try:
    import _frozen_sim  # noqa: F401  (the simulator from the binary's frozen image)
except ImportError:
    pass

# the device's own modules that the simulator imports (a device loads them all too)
import board.support  # noqa: E402, F401
import firmware.app  # noqa: E402, F401
import firmware.protocol  # noqa: E402, F401

gc.collect()
_m0 = gc.mem_alloc()

from board.sim.board import SimBoard  # noqa: E402
from board.sim.clock import RealClock  # noqa: E402
from board.sim.pn532_sim import PN532Sim  # noqa: E402
from board.sim.runner import BenchProbe, TimedPlant, Vehicle, _unix_time, make_link  # noqa: E402
from firmware.app import App  # noqa: E402
from firmware.protocol import Topics  # noqa: E402


def main():
    sid, broker, state_dir, settings = sys.argv[1:5]
    clock = RealClock()
    plant = TimedPlant(clock)
    chip = PN532Sim(clock, tag_source=plant.pop_tag)
    gc.collect()
    print("@simheap %d" % (gc.mem_alloc() - _m0))
    with open(settings) as f:
        first = json.load(f)
    board = SimBoard(clock, plant, serial=sid, reset_cause="power_on", storage_root=state_dir,
                     unix_time=_unix_time, rfid_chip=chip)
    t = Topics("evse", sid)
    link = make_link({"broker": broker}, sid, t.inbound(), t.online)
    app = App(board, link, serial=sid, prefix="evse", first_settings=first)
    app.hooks.append(Vehicle(app, plant, None, None))
    mem = None
    try:
        import os

        mem = os.getenv("SIM_BENCH")
    except (ImportError, AttributeError):
        pass
    if mem:
        app.hooks.append(BenchProbe(app, mem == "mem"))
    app.run()


main()
