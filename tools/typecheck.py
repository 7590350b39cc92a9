#!/usr/bin/env python3
"""Type-check the device-side hardware code against the ESP32 port's API (`make typecheck`).

mypy runs on drivers/ and board/esp32_ref.py (+ board/circuit.py) with the installed
`micropython-esp32-stubs` (machine, esp32, time, ...) and `micropython-stdlib-stubs` (MicroPython's
own builtins/stdlib as a custom typeshed), so that every machine call (PWM.duty_u16, ADC.read_uv,
SPI.write_readinto, Pin(..., value=...), WDT(timeout=...)) must match the port's signatures.

The stubs are installed into the venv's site-packages as top-level .pyi files; mypy refuses a
site-packages folder on MYPYPATH, so the stub files listed in the two distributions' RECORDs are
copied into build/typings first. Exit status: 0 clean, 1 type errors, 2 setup problem.
"""

import glob
import os
import shutil
import subprocess
import sys
import sysconfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TYPINGS = os.path.join(ROOT, "build", "typings")
DISTS = ("micropython_esp32_stubs", "micropython_stdlib_stubs")
TARGETS = ["drivers", "board/esp32_ref.py", "board/circuit.py"]

CONFIG = """[mypy]
python_version = 3.11
custom_typeshed_dir = {typings}
mypy_path = {typings}:{root}
explicit_package_bases = True
namespace_packages = True
check_untyped_defs = True
warn_unused_ignores = False
no_site_packages = True
cache_dir = {root}/build/.mypy_cache

# the shared tick helpers have a CPython fallback branch that redefines the MicroPython names
[mypy-firmware.*]
ignore_errors = True
"""


def site_packages():
    import mypy  # noqa: F401  (fail early when mypy is missing)

    return sysconfig.get_paths()["purelib"]


def build_typings(sp):
    if os.path.isdir(TYPINGS):
        shutil.rmtree(TYPINGS)
    os.makedirs(TYPINGS)
    n = 0
    for dist in DISTS:
        records = glob.glob(os.path.join(sp, dist + "-*.dist-info", "RECORD"))
        if not records:
            print("typecheck: %s is not installed (make setup)" % dist.replace("_", "-"))
            sys.exit(2)
        with open(records[0]) as f:
            for line in f:
                rel = line.split(",", 1)[0]
                if not (rel.endswith(".pyi") or os.path.basename(rel) == "VERSIONS"):
                    continue
                if ".dist-info" in rel or rel.startswith(".."):
                    continue
                src = os.path.join(sp, rel)
                dst = os.path.join(TYPINGS, rel)
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                shutil.copyfile(src, dst)
                n += 1
    if not os.path.exists(os.path.join(TYPINGS, "stdlib", "VERSIONS")):
        print("typecheck: micropython-stdlib-stubs has no stdlib/VERSIONS")
        sys.exit(2)
    return n


def main():
    sp = site_packages()
    n = build_typings(sp)
    cfg = os.path.join(ROOT, "build", "mypy-micropython.ini")
    with open(cfg, "w") as f:
        f.write(CONFIG.format(typings=TYPINGS, root=ROOT))
    env = dict(os.environ)
    env.pop("MYPYPATH", None)
    cmd = [sys.executable, "-m", "mypy", "--config-file", cfg] + TARGETS
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    out = (proc.stdout + proc.stderr).strip()
    if out and "-v" in sys.argv:
        print(out)
    errors = []
    stub_errors = []
    for ln in out.splitlines():
        if ": error:" not in ln:
            continue
        (stub_errors if ln.startswith("build/typings/") else errors).append(ln)
    print()
    for ln in errors:
        print(ln)
    print("typecheck: %d stub files (ESP32 port + MicroPython stdlib); checked %s: %d error(s)"
          % (n, " ".join(TARGETS), len(errors)))
    if stub_errors:
        print("typecheck: %d complaint(s) inside the third-party stubs themselves (not counted)" % len(stub_errors))
    if proc.returncode not in (0, 1) and not errors:
        print("typecheck: mypy failed to run (exit %d)" % proc.returncode)
        return 2
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
