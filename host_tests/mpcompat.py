# Helpers that work under both CPython and the MicroPython unix port (no pytest there).


def raises(exc_type, fn, *args):
    """Call fn(*args), assert it raises exc_type, return the exception."""
    try:
        fn(*args)
    except exc_type as e:
        return e
    raise AssertionError("%s not raised" % exc_type.__name__)


def heap_locked(fn):
    """fn() under micropython.heap_lock() on MicroPython, where any allocation raises MemoryError;
    a plain call on CPython (no heap lock there). fn takes no arguments: a call that unpacks
    arguments would allocate by itself. Returns fn's result."""
    try:
        import micropython
    except ImportError:
        return fn()
    micropython.heap_lock()
    try:
        return fn()
    finally:
        micropython.heap_unlock()


def approx(a, b, tol=1e-6):
    return abs(a - b) <= tol


class TempDir:
    """A fresh folder for a test's flash (no tempfile module on MicroPython)."""

    _n = 0

    def __init__(self, tag="t"):
        import os

        TempDir._n += 1
        base = "build/tmp"
        for p in ("build", base):
            try:
                os.mkdir(p)
            except OSError:
                pass
        self.path = "%s/%s-%d-%d" % (base, tag, TempDir._n, _pid())
        _rmtree(self.path)
        os.mkdir(self.path)


def _pid():
    try:
        import os

        return os.getpid()
    except (ImportError, AttributeError):
        import random

        return random.getrandbits(20)


def _rmtree(path):
    import os

    try:
        names = os.listdir(path)
    except OSError:
        return
    for n in names:
        p = path + "/" + n
        try:
            os.remove(p)
        except OSError:
            _rmtree(p)
    try:
        os.rmdir(path)
    except OSError:
        pass
