# ruff: noqa: F821  (package/module are the manifest API, given by MicroPython's makemanifest)
# Frozen into both 32-bit unix binaries: the simulated board (board/sim, with the fake `machine`),
# which a device never loads, so that heap figures count only the device's modules.
import os

package("board", files=sorted("sim/" + f for f in os.listdir("../../board/sim") if f.endswith(".py")),
        base_path="../..")
module("_frozen_sim.py")
