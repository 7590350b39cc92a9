"""OCPP Firmware Management end to end: a real central system (host_tests/csms.py, the PyPI `ocpp`
package validating every message), a release made by tools/release on a real HTTP server
(host_tests/httpserve.py), the firmware as a `tools/sim-charger --ocpp --update-pubkey` process.

UpdateFirmware -> FirmwareStatusNotification Downloading, Downloaded, Installing; the charger restarts
into the new version, whose BootNotification carries firmwareVersion 0.2.0 and which says Installed
once it has proven itself healthy; a release signed by another key ends as InstallationFailed and the
charger keeps running the version it had.
"""

import os
import subprocess
import sys

import pytest
from csms import now_iso
from e2e import ROOT
from httpserve import Server
from ocpp.v16 import call
from ocpp_rig import OcppRig

CPYTHON_ONLY = "real central system, HTTP server and firmware processes"
RELEASE = os.path.join(ROOT, "tools", "release")


def release(*args):
    return subprocess.run([sys.executable, RELEASE] + list(args), check=True, capture_output=True, text=True,
                          cwd=ROOT)


@pytest.fixture
def rig(tmp_path):
    top = str(tmp_path)
    img = os.path.join(top, "img")
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "build_bundle.py"), img], check=True,
                   capture_output=True)
    key = os.path.join(top, "release.pem")
    pub = release("--new-key", key).stdout.strip()
    other = os.path.join(top, "other.pem")
    release("--new-key", other)
    www = os.path.join(top, "www")
    release("--key", key, "--version", "0.2.0", "--board", "sim", "--out", os.path.join(www, "v2"), "--from", img)
    release("--key", other, "--version", "0.2.0", "--board", "sim", "--out", os.path.join(www, "forged"),
            "--from", img)
    srv = Server(www)
    r = OcppRig(tmp_path, interval=2)
    r.pub = pub
    r.srv = srv
    yield r
    r.close()
    srv.close()


def fw_statuses(cs, sid, since=0):
    return [c[3]["status"] for c in cs.all_calls("FirmwareStatusNotification", since, sid)]


def test_update_firmware_installs_the_signed_release_and_refuses_a_forged_one(rig):
    sid = "OCPPFW1"
    cs = rig.csms
    # from source on the 64-bit port the OCPP backend, the vehicle's MQTT link and the updater's
    # download buffers take most of the simulator's default 512K (the device runs frozen bytecode)
    ch, ev = rig.charger(sid, args=["--update-pubkey", rig.pub, "--heap", "1024K"])
    boot = cs.wait_call("BootNotification", cid=sid, timeout=20)
    cs.wait_connected(sid)
    old_fw = boot["firmware_version"]

    m = cs.mark()
    cs.call(sid, call.UpdateFirmware(location=rig.srv.url("forged/manifest.json"), retrieve_date=now_iso()))
    cs.wait_call("FirmwareStatusNotification", lambda p: p["status"] == "InstallationFailed", 30, m, sid)
    assert fw_statuses(cs, sid, m) == ["Downloading", "InstallationFailed"]
    assert cs.all_calls("BootNotification", m, sid) == []  # no restart: still the version it had

    m = cs.mark()
    cs.call(sid, call.UpdateFirmware(location=rig.srv.url("v2/manifest.json"), retrieve_date=now_iso(),
                                     retries=2, retry_interval=10))
    cs.wait_call("FirmwareStatusNotification", lambda p: p["status"] == "Installing", 60, m, sid)
    again = cs.wait_call("BootNotification", None, 30, m, sid)
    assert again["firmware_version"] == "0.2.0" != old_fw
    cs.wait_call("FirmwareStatusNotification", lambda p: p["status"] == "Installed", 60, m, sid)
    assert fw_statuses(cs, sid, m) == ["Downloading", "Downloaded", "Installing", "Installed"]
