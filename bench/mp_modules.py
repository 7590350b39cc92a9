# Heap taken by each loaded module of the bundle image on the MicroPython unix port (run by
# tools/bench.py; prints one JSON line). Imports in dependency order and measures gc.mem_alloc() after
# gc.collect() following each group: code loaded from .mpy (bytecode, constants, qstr tables, function
# and class objects) plus module-level data. On a device with frozen modules / ROMFS most of this stays
# in flash instead: with an argument (a ROMFS image) the modules are imported from a mounted VfsRom,
# bytecode executed in place, which measures that.
import gc
import json
import sys

GROUPS = (
    ("core", ("firmware.ticks", "firmware.units", "firmware.iec61851", "firmware.safety", "firmware.monitor",
              "firmware.lease", "firmware.arbitration", "firmware.pilot_machine", "firmware.session",
              "firmware.charger")),
    ("app", ("firmware.settings", "firmware.storage", "firmware.sessions", "firmware.app", "firmware.panel")),
    ("cloud", ("firmware.protocol", "firmware.cloud")),
    ("ha", ("firmware.ha",)),  # loaded only when Home Assistant discovery is provisioned
    ("link", ("firmware.mqtt_socket", "firmware.link", "umqtt.simple")),
    ("drivers", ("drivers.pilot", "drivers.contactor", "drivers.rcd", "drivers.atm90e32", "drivers.ntc",
                 "drivers.proximity", "drivers.button", "drivers.status_led", "drivers.pn532", "board.circuit")),
    ("sim_only", ("board.sim.machine", "board.sim.meter_model", "board.sim.plant_io", "board.sim.plant",
                  "board.sim.ev_ops", "board.sim.clock", "board.sim.neopixel", "board.sim.pn532_sim",
                  "board.sim.board", "board.sim.runner")),
)


def main():
    groups = GROUPS
    if len(sys.argv) > 1:
        # ROMFS: the image (built by tools/build_bundle.py --romfs) is mounted like a board's /rom;
        # its buffer is allocated before the baseline, as it lives in flash on the device
        import vfs

        with open(sys.argv[1], "rb") as f:
            img = f.read()
        vfs.mount(vfs.VfsRom(img), "/rom")
        sys.path.insert(0, "/rom/lib")
        sys.path.insert(0, "/rom")
        groups = GROUPS[:-1]  # the simulator is not in the device image
    try:
        # 32-bit ports: board.sim from the binary's frozen image (only its module data is counted);
        # after the mount, as it imports board from the path
        import _frozen_sim  # noqa: F401
    except ImportError:
        pass
    gc.collect()
    base = gc.mem_alloc()
    prev = base
    out = {}
    for name, mods in groups:
        for m in mods:
            __import__(m)
        gc.collect()
        a = gc.mem_alloc()
        out[name] = a - prev
        prev = a
    out["total"] = prev - base
    print("@modules " + json.dumps(out))


main()
