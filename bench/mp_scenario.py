# The reference scenario's charger as a device loads it, on a 32-bit unix port (run by tools/bench.py):
#
#   MICROPYPATH=<image path> micropython -X heapsize=NK bench/mp_scenario.py ID HOST:PORT STATE_DIR SETTINGS [ROMFS]
#
# The real App with its one MQTT link (firmware/link.py) on the simulated board in real time, like
# tools/sim-charger, except that the vehicle has no MQTT connection of its own: tools/sim-charger
# gives it a second Link (thread, socket, umqtt client, buffers) whose heap a device does not have, so
# here the bench sends the vehicle ops as JSON lines on stdin (board/sim/runner.py Vehicle reads them).
# The simulator's code is frozen into the 32-bit binaries (tools/unix32/sim.py); its data (plant,
# fake peripherals) is on the heap and printed once as `@simheap BYTES`, after gc.collect().
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

from board.sim.board import SimBoard  # noqa: E402
from board.sim.clock import RealClock  # noqa: E402
from board.sim.runner import BenchProbe, TimedPlant, Vehicle, _unix_time, make_link  # noqa: E402
from firmware.app import App  # noqa: E402
from firmware.protocol import Topics  # noqa: E402


def main():
    sid, broker, state_dir, settings = sys.argv[1:5]
    with open(settings) as f:
        first = json.load(f)
    gc.collect()
    m0 = gc.mem_alloc()
    clock = RealClock()
    plant = TimedPlant(clock)
    board = SimBoard(clock, plant, serial=sid, reset_cause="power_on", storage_root=state_dir,
                     unix_time=_unix_time)
    gc.collect()
    print("@simheap %d" % (gc.mem_alloc() - m0))
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
