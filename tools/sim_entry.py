# MicroPython entry of tools/sim-charger: runs the firmware on the simulated board. The boot selector
# (bootsel.py) picks the application slot in the state dir first, as main.py does on the device.
import os
import sys

import bootsel

# The simulated hardware watchdog (board/sim/watchdog.py) armed as boot.py arms machine.WDT, before
# anything of the application image is imported: a hang anywhere from here on resets the board.
# (Nothing of firmware/ or board/ yet: those must come from the slot bootsel.select() chooses.)
_wdt = os.getenv("SIM_WDT_FILE")
if _wdt:
    with open(_wdt, "wb") as _f:
        _f.write(b"8000\n")
_argv = sys.argv
if "--state-dir" in _argv:
    bootsel.select(_argv[_argv.index("--state-dir") + 1])

from board.sim.runner import main  # noqa: E402  (after the slot is on the path)

main()
