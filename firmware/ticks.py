# Wrap-safe millisecond ticks on both runtimes. On MicroPython the C functions are used (no
# allocation, the port's own period); on CPython a pure version with the ESP32's 2**30 period.
# Also `const` for the modules' constants: on MicroPython the compiler folds `_NAME = const(n)`
# into the code and leaves `_NAME` out of the module's dict (heap); on CPython it is the identity.
try:
    from micropython import const  # noqa: F401
except ImportError:
    def const(x):  # type: ignore[misc,no-redef]
        return x

try:
    from time import ticks_add, ticks_diff, ticks_ms  # noqa: F401  (MicroPython)

    PERIOD = ticks_add(0, -1) + 1
except ImportError:
    import time as _time

    PERIOD = 1 << 30
    _MASK = PERIOD - 1
    _HALF = PERIOD >> 1

    def ticks_add(t, delta):
        return (t + delta) & _MASK

    def ticks_diff(a, b):
        return ((a - b + _HALF) & _MASK) - _HALF

    def ticks_ms():
        return int(_time.monotonic() * 1000) & _MASK
