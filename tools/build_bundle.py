"""Build the device image: every firmware, driver and board module compiled with mpy-cross.

    python tools/build_bundle.py OUT [--no-sim] [--lines] [--romfs IMAGE]

OUT gets firmware/, drivers/, board/ as .mpy (board/sim too unless --no-sim), lib/umqtt/simple.mpy,
bootsel.mpy (the A/B boot selector), and boot.py / main.py as source (the device runs those two by
name). Copy OUT to a board's flash root (`make deploy`), or run it on the unix port with MICROPYPATH=OUT:OUT/lib.

The modules are compiled with `mpy-cross -O3`, which leaves out the line-number tables: a .mpy is
loaded into the heap, and on the 32-bit port the tables cost about 4 KB of the 112 KB (bench/README.md).
Tracebacks then still name each file and function, but every line is `line 1`; the firmware has no
`assert` or `__debug__`, so -O3 changes nothing else. --lines keeps the tables (the MicroPython test
leg uses that, and a board with PSRAM can afford it); the frozen image keeps them, in flash.

--romfs IMAGE also writes a ROMFS image of the device modules (no boot.py/main.py, no board/sim
unless --romfs-with-sim, which the host tests use):
on a board whose MicroPython has a ROMFS partition (`make deploy-romfs`) the bytecode then runs in
place from flash instead of being loaded into the heap (bench/README.md has the numbers).
"""

import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("firmware", "drivers", "board")


def mpy_cross():
    local = os.path.join(ROOT, ".venv", "bin", "mpy-cross")
    return local if os.path.exists(local) else "mpy-cross"


# -O3: no line-number tables in the bytecode (see above); main() clears it for --lines
MPY_FLAGS = ["-O3"]


def compile_file(src, name, dst):
    # -s keeps the module path in tracebacks readable on the device
    subprocess.run([mpy_cross()] + MPY_FLAGS + ["-s", name, "-o", dst, src], check=True)


def compile_tree(src_root, rel, out, skip=()):
    n = 0
    for dirpath, dirnames, filenames in os.walk(os.path.join(src_root, rel)):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        relative = os.path.relpath(dirpath, src_root)
        if any(relative == s or relative.startswith(s + os.sep) for s in skip):
            continue
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            src = os.path.join(dirpath, name)
            dst = os.path.join(out, relative, name[:-3] + ".mpy")
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            compile_file(src, os.path.join(relative, name), dst)
            n += 1
    return n


def mpremote():
    local = os.path.join(ROOT, ".venv", "bin", "mpremote")
    return local if os.path.exists(local) else "mpremote"


def build_romfs(bundle, image, with_sim=False):
    """ROMFS image of the bundle's device modules (plus board/sim for host tests), built by mpremote's
    romfs writer."""
    stage = image + ".d"
    if os.path.exists(stage):
        shutil.rmtree(stage)
    skip = ("boot.py", "main.py") if with_sim else ("sim", "boot.py", "main.py")
    shutil.copytree(bundle, stage, ignore=shutil.ignore_patterns(*skip))
    subprocess.run([mpremote(), "romfs", "--no-mpy", "-o", image, "build", stage], check=True,
                   capture_output=True)
    shutil.rmtree(stage)
    print("romfs: %d bytes in %s" % (os.path.getsize(image), image))


def main(argv):
    argv = list(argv)
    romfs = None
    if "--romfs" in argv:
        i = argv.index("--romfs")
        romfs = os.path.abspath(argv[i + 1])
        del argv[i:i + 2]
    out = os.path.abspath(argv[0] if argv and not argv[0].startswith("--") else "build/bundle")
    skip = (os.path.join("board", "sim"),) if "--no-sim" in argv else ()
    if "--lines" in argv:
        del MPY_FLAGS[:]
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    n = 0
    for pkg in PACKAGES:
        n += compile_tree(ROOT, pkg, out, skip)
    lib = os.path.join(ROOT, "build", "lib")
    if not os.path.exists(os.path.join(lib, "umqtt", "simple.py")):
        sys.exit("umqtt.simple missing: run `make setup`")
    n += compile_tree(lib, "umqtt", os.path.join(out, "lib"))
    for name in ("boot.py", "main.py"):
        shutil.copy(os.path.join(ROOT, name), os.path.join(out, name))
    # the boot selector main.py imports (never part of an update's image: tools/release leaves it out)
    compile_file(os.path.join(ROOT, "bootsel.py"), "bootsel.py", os.path.join(out, "bootsel.mpy"))
    n += 1
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)
    print("bundle: %d modules compiled, %d bytes in %s" % (n, size, out))
    if romfs:
        build_romfs(out, romfs, "--romfs-with-sim" in argv)


if __name__ == "__main__":
    main(sys.argv[1:])
