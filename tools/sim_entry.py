# MicroPython entry of tools/sim-charger: runs the firmware on the simulated board. The boot selector
# (bootsel.py) picks the application slot in the state dir first, as main.py does on the device.
import sys

import bootsel

_argv = sys.argv
if "--state-dir" in _argv:
    bootsel.select(_argv[_argv.index("--state-dir") + 1])

from board.sim.runner import main  # noqa: E402  (after the slot is on the path)

main()
