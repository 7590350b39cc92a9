# ruff: noqa: F821  (include/package/options are the manifest API, given by MicroPython's makemanifest)
# The firmware as a frozen image: firmware/, drivers/, board/ (without the simulator, board/sim) and
# umqtt.simple compiled into the MicroPython binary, so the bytecode stays in flash instead of being
# loaded into the ~112 KB heap (README "Frozen firmware image", bench/README.md for the figures).
#   ESP32:  make BOARD=ESP32_GENERIC FROZEN_MANIFEST=/abs/path/to/manifest.py   (in ports/esp32)
#   unix:   tools/build_micropython.py, through tools/unix32/frozen.py (stock=False)
# boot.py and main.py stay files on the board's flash: the port runs them by name.
import os

options.defaults(stock=True)

if options.stock:
    # A FROZEN_MANIFEST replaces the port's own; keep its modules (on the ESP32 asyncio, the
    # networking bundle and umqtt.simple, which the link uses).
    include("$(PORT_DIR)/boards/manifest.py")
else:
    # The pinned unix source has no micropython-lib: umqtt.simple 1.3.4 as tools/fetch_umqtt.py got it.
    package("umqtt", base_path="build/lib")

package("firmware")
package("drivers")
# the A/B boot selector main.py calls first (field updates install into /flash/slot_a|b, never here)
module("bootsel.py")
# listed, not globbed as a package: board/sim is the simulator, which no device loads
package("board", files=sorted(f for f in os.listdir("board") if f.endswith(".py")))
