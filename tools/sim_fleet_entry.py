# MicroPython entry of tools/sim-fleet: many chargers in this one process (board/sim/fleet.py).
from board.sim.fleet import main

main()
