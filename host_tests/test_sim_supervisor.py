# tools/sim-charger as a bootloader: a firmware process that dies on its own (a VM fault) is
# restarted like a device that reboots, and the next `boot` event says so.
import os
import signal
import subprocess
import time

from e2e import FAST

CPYTHON_ONLY = "real broker and firmware processes"


def test_firmware_crash_reboots_with_reset_cause_hard(rig):
    ch, cl = rig.charger("E2ECRASH", FAST)
    cl.wait("online", lambda p: p == b"online", 15)
    first = cl.event("boot", None, 10)
    assert first["reset_cause"] == "power_on"
    kids = subprocess.run(["pgrep", "-P", str(ch.proc.pid)], capture_output=True, text=True).stdout.split()
    assert len(kids) == 1, kids
    m = cl.mark()
    os.kill(int(kids[0]), signal.SIGSEGV)  # the firmware process alone, not the supervisor
    cl.wait("online", lambda p: p == b"offline", 10, m)  # the broker's will: the link died with it
    boot = cl.event("boot", None, 20, m)
    assert boot["boot"] == first["boot"] + 1 and boot["reset_cause"] == "hard", boot
    assert ch.alive()
    assert "firmware exited with -11, restarting" in ch.log_tail()


def test_a_hung_firmware_is_reset_by_the_watchdog(rig):
    ch, cl = rig.charger("E2EHANG", FAST)
    cl.wait("online", lambda p: p == b"online", 15)
    first = cl.event("boot", None, 10)
    assert os.path.exists(ch.state_dir + ".wdt")  # armed (board/sim/watchdog.py)
    kids = subprocess.run(["pgrep", "-P", str(ch.proc.pid)], capture_output=True, text=True).stdout.split()
    assert len(kids) == 1, kids
    m = cl.mark()
    os.kill(int(kids[0]), signal.SIGSTOP)  # hung: alive, holding its connection, feeding nothing
    time.sleep(5)
    assert cl.all("event", m, lambda d: d["type"] == "boot") == []  # not before the watchdog timeout (10 s)
    boot = cl.event("boot", None, 25, m)
    assert boot["boot"] == first["boot"] + 1 and boot["reset_cause"] == "watchdog", boot
    assert "stopped feeding the watchdog" in ch.log_tail()
