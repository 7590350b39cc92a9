# MicroPython's wrap-safe tick difference, so that a driver needs nothing beyond `time` and
# `machine` on a board; on CPython (host tests, the simulator) the same arithmetic with the ESP32's
# 2**30 ms period, which the simulated clock also uses. And `const` (below).
try:
    from time import ticks_diff  # noqa: F401  (MicroPython)
except ImportError:
    def ticks_diff(a, b):  # type: ignore[no-redef]
        return ((a - b + 0x20000000) & 0x3FFFFFFF) - 0x20000000


# `_NAME = const(n)`: folded into the code by MicroPython's compiler, so the name takes no room in
# the module's dict (heap); the identity on CPython
try:
    from micropython import const  # noqa: F401
except ImportError:
    def const(x):  # type: ignore[misc,no-redef]
        return x
