# The device image (`make bundle`: mpy-cross output, no sources) runs on the MicroPython unix port:
# every module imports from .mpy, and the app charges a simulated vehicle from that image alone.
import os
import subprocess
import sys

from conftest import MICROPYTHON, ROOT

CPYTHON_ONLY = "builds the image with mpy-cross and runs it in a subprocess"

CHARGE = """
from board.sim.board import SimBoard
from board.sim.clock import VirtualClock
from board.sim.plant import Plant
from firmware.app import App
clock = VirtualClock(0)
plant = Plant(clock)
board = SimBoard(clock, plant, storage_root=sys.argv[-1])
app = App(board, None)
plant.ev_op({"op": "plug", "cable_a": 32, "phases": 3, "max_a": 16})
for _ in range(1000):
    clock.sleep_ms(app.step(clock.ticks_ms()) or 1)
print("RESULT", app.charger.mode, board.contactor.closed, app.meter.i_a[0])
"""

SCRIPT = """
import sys
import firmware.app, firmware.link, firmware.cloud, umqtt.simple
assert firmware.app.__file__.endswith('.mpy'), firmware.app.__file__
""" + CHARGE


def test_bundle_image_runs_on_the_unix_port(tmp_path):
    out = tmp_path / "bundle"
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "build_bundle.py"), str(out)], check=True)
    names = {os.path.relpath(os.path.join(d, f), out) for d, _, fs in os.walk(out) for f in fs}
    assert "boot.py" in names and "main.py" in names and "lib/umqtt/simple.mpy" in names
    assert not any(n.endswith(".py") for n in names - {"boot.py", "main.py"})
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    flash = tmp_path / "flash"
    flash.mkdir()
    env = dict(os.environ, MICROPYPATH="%s:%s:.frozen" % (out, out / "lib"))
    p = subprocess.run([MICROPYTHON, "-X", "heapsize=256K", str(script), str(flash)], cwd=str(tmp_path),
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    line = [x for x in p.stdout.splitlines() if x.startswith("RESULT")][0].split()
    assert line[1] == "connected_charging" and line[2] == "True" and abs(float(line[3]) - 16) < 0.6, line


ROM_SCRIPT = """
import sys, vfs
with open(sys.argv[1], 'rb') as f:
    vfs.mount(vfs.VfsRom(f.read()), '/rom')
sys.path.insert(0, '/rom/lib')
sys.path.insert(0, '/rom')
import firmware.app, firmware.link, firmware.cloud, drivers.pilot, umqtt.simple
print("FROM", firmware.app.__file__, drivers.pilot.__file__, umqtt.simple.__file__)
""" + CHARGE


def test_romfs_image_runs_in_place_on_the_unix_port(tmp_path):
    out, image = tmp_path / "bundle", tmp_path / "firmware.romfs"
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "build_bundle.py"), str(out), "--romfs", str(image),
                    "--romfs-with-sim"],
                   check=True)
    script = tmp_path / "run.py"
    script.write_text(ROM_SCRIPT)
    flash = tmp_path / "flash"
    flash.mkdir()
    env = dict(os.environ, MICROPYPATH=".frozen")  # nothing but the image
    # the unix port reads the whole image (firmware and simulator, ~120 KB) into its heap, where a
    # board maps it from flash: this checks that it runs in place, not how small a heap it needs
    # (make bench measures that on 32 bits)
    p = subprocess.run([MICROPYTHON, "-X", "heapsize=512K", str(script), str(image), str(flash)], cwd=str(tmp_path),
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    frm = [x for x in p.stdout.splitlines() if x.startswith("FROM")][0].split()[1:]
    assert frm == ["/rom/firmware/app.mpy", "/rom/drivers/pilot.mpy", "/rom/lib/umqtt/simple.mpy"], frm
    line = [x for x in p.stdout.splitlines() if x.startswith("RESULT")][0].split()
    assert line[1] == "connected_charging" and line[2] == "True", line
