"""Copy the device image to an ESP32 running MicroPython, with mpremote, and reset it.

    python tools/deploy.py --port /dev/ttyUSB0 build/bundle
    python tools/deploy.py --port /dev/ttyUSB0 --romfs build/firmware.romfs build/bundle

With --romfs the modules go into the board's ROMFS partition (bytecode runs from flash) and only
boot.py and main.py are copied to the filesystem; module copies left there by an earlier plain
deploy are removed, since they would shadow the ROMFS on sys.path.

The simulated board (board/sim) stays on the host. provision.json (serial, broker, WiFi) is
not touched: write it once per board (see README).
"""

import argparse
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def mpremote():
    local = os.path.join(ROOT, ".venv", "bin", "mpremote")
    return local if os.path.exists(local) else "mpremote"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", required=True)
    ap.add_argument("--romfs", help="ROMFS image to deploy instead of copying the modules")
    ap.add_argument("bundle")
    a = ap.parse_args()
    if not os.path.exists(a.port):
        sys.exit("no board at %s (give PORT=/dev/ttyUSB0 or /dev/ttyACM0)" % a.port)
    base = [mpremote(), "connect", a.port]
    if a.romfs:
        for d in ("firmware", "drivers", "board", "lib/umqtt"):
            subprocess.run(base + ["fs", "rm", "-r", ":" + d], capture_output=True)
        cmd = base + ["romfs", "deploy", a.romfs]
        for f in ("boot.py", "main.py"):
            cmd += ["+", "fs", "cp", os.path.join(a.bundle, f), ":" + f]
        sys.exit(subprocess.run(cmd + ["+", "reset"]).returncode)
    dirs, files = [], []
    for dirpath, _dirs, filenames in os.walk(a.bundle):
        rel = os.path.relpath(dirpath, a.bundle)
        if rel == os.path.join("board", "sim") or rel.startswith(os.path.join("board", "sim") + os.sep):
            continue
        if rel != ".":
            dirs.append(rel)
        files += [os.path.join(rel, f) if rel != "." else f for f in filenames]
    # mkdir of an existing folder fails; create them one by one, ignoring that error
    for d in dirs:
        subprocess.run(base + ["fs", "mkdir", ":" + d], capture_output=True)
    cmd = list(base)
    for f in files:
        cmd += ["fs", "cp", os.path.join(a.bundle, f), ":" + f, "+"]
    cmd += ["reset"]
    print("copying %d files to %s" % (len(files), a.port))
    sys.exit(subprocess.run(cmd).returncode)


if __name__ == "__main__":
    main()
