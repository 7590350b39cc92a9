# MicroPython entry of tools/sim-charger: runs the firmware on the simulated board.
from board.sim.runner import main

main()
