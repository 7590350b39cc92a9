# ruff: noqa: F821  (include is the manifest API, given by MicroPython's makemanifest)
# The 32-bit unix binary with the device image frozen in: the project's manifest (as a custom ESP32
# build uses it, minus the ESP32's own modules) plus the simulator.
include("../../manifest.py", stock=False)
include("sim.py")
