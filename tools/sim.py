"""`make sim`: one standalone charger on the simulated board with a scripted vehicle, live.

The real firmware runs on the MicroPython unix port (tools/sim-charger, no broker); this script
plays the driver: plugs a vehicle in, lets it charge, makes it misbehave once, unplugs it, and
shows the charger's status every second. Ctrl-C stops everything it started.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = [
    (2, "plug a 32 A cable, 3-phase vehicle (max 16 A)", {"op": "plug", "cable_a": 32, "phases": 3, "max_a": 16}),
    (3, "vehicle asks to charge (S2 closed)", {"op": "charge", "on": True}),
    (25, "vehicle draws 20 A, more than offered", {"op": "draw", "a": 20}),
    (28, "vehicle behaves again", {"op": "draw", "a": None}),
    (40, "vehicle finishes (S2 open)", {"op": "charge", "on": False}),
    (45, "unplug", {"op": "unplug"}),
]


def line(st):
    ev = st.get("ev") or {}
    i = st.get("i_a") or [0, 0, 0]
    return "%6.1fs  %-22s cp=%-3s duty=%5.1f%% offered=%4.1fA (%s) contactor=%-5s I=%s A  E=%d Wh  %s%s" % (
        st["up_ms"] / 1000, st["mode"], st["cp"], st["duty"], st["offered_a"], st["limit_src"],
        "on" if st["contactor"] else "off", "/".join("%.1f" % x for x in i), st["e_wh"],
        "session " + st["session"] if st.get("session") else "",
        (" faults=" + ",".join(st["faults"])) if st.get("faults") else "",
    ) + ("  [ev cp %.1f V]" % ev["cp_high_v"] if "cp_high_v" in ev else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=50, help="length of the scripted run")
    a = ap.parse_args()
    state = tempfile.mkdtemp(prefix="sim-")
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "tools", "sim-charger"), "--id", "SIM0001", "--state-dir", state],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
    )
    os.set_blocking(proc.stdout.fileno(), False)
    t0 = time.monotonic()
    todo = list(SCRIPT)
    try:
        while proc.poll() is None and time.monotonic() - t0 < a.seconds:
            t = time.monotonic() - t0
            while todo and todo[0][0] <= t:
                _, what, op = todo.pop(0)
                print(">>> %5.1fs  %s" % (t, what), flush=True)
                proc.stdin.write(json.dumps(op) + "\n")
                proc.stdin.flush()
            out = proc.stdout.readline()
            if not out:
                time.sleep(0.05)
                continue
            if out.startswith("@status "):
                print(line(json.loads(out[8:])), flush=True)
            else:
                print(out.rstrip(), flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
