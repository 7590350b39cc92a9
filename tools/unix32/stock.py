# ruff: noqa: F821  (include/package are the manifest API, given by MicroPython's makemanifest)
# The 32-bit unix binary that stands in for stock MicroPython firmware (`make deploy` copies .mpy
# files onto it): the simulator, plus umqtt.simple, which the stock ESP32 firmware freezes through
# its boards/manifest.py, so that a device imports that one and not the copy under /lib.
include("sim.py")
package("umqtt", base_path="../../build/lib")
