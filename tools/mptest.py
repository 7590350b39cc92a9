# Runs the test functions of one host_tests module under the MicroPython unix port.
# Usage: micropython tools/mptest.py MODULE [TEST ...]
# Prints one "@@MPTEST <ok|fail> <name> <json traceback>" line per test for host_tests/conftest.py.
import gc
import io
import json
import sys


def run(modname, names):
    try:
        import _frozen_sim  # noqa: F401  (32-bit binaries: the simulator from the frozen image)
    except ImportError:
        pass
    mod = __import__(modname)
    if not names:
        names = sorted(n for n in dir(mod) if n.startswith("test_"))
    for name in names:
        gc.collect()
        try:
            getattr(mod, name)()
            print("@@MPTEST ok " + name)
        except BaseException as e:  # MemoryError and friends are results too
            buf = io.StringIO()
            sys.print_exception(e, buf)
            print("@@MPTEST fail " + name + " " + json.dumps(buf.getvalue()))


run(sys.argv[1], sys.argv[2:])
