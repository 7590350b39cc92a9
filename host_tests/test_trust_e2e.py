"""Contract v1.1 end to end: real mosquitto, a real HTTP server (host_tests/httpserve.py), releases
made by tools/release, the firmware as tools/sim-charger processes with --cmd-key / --update-pubkey.

- signed messages: good mac answered; no envelope, bad mac, another topic's mac, a flipped byte ->
  `rejected` unauthenticated, never a reply; a replayed counter -> `rejected` replay, also after a
  reboot; the retained config applied once is not applied (nor rejected) again after a reboot.
- factory reset: busy while charging; then reply, offline, boot soft + cmd_id, defaults (not the
  first-boot settings), local ids gone; boot counter, energy, unacked session, counter kept.
- field update: v2 commits and reports fw v2; a v3 that raises at import is rolled back to v2;
  deferred while charging; bad signature, another board, a downgrade, a hash mismatch, HTTP 404,
  a malformed URL, busy; a connection cut mid-file resumes with a Range request; a power cut
  (SIGKILL) during the download -> failed/download, and the next update reuses the files.
"""

import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from e2e import FAST, ROOT, check_state
from httpserve import Server

CPYTHON_ONLY = "real broker, HTTP server and firmware processes"
KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
RELEASE = os.path.join(ROOT, "tools", "release")
PHASES = ("deferred", "downloading", "verifying", "installing", "rebooting", "committed", "failed", "rolled_back")


def sign(topic, ctr, doc, key=KEY):
    msg = doc if isinstance(doc, str) else json.dumps(doc)
    mac = hmac.new(bytes.fromhex(key), ("%s\n%d\n%s" % (topic, ctr, msg)).encode(), hashlib.sha256).hexdigest()
    return json.dumps({"msg": msg, "ctr": ctr, "mac": mac})


def release(*args):
    subprocess.run([sys.executable, RELEASE] + list(args), check=True, capture_output=True, cwd=ROOT)


@pytest.fixture(scope="module")
def rel(tmp_path_factory):
    """Keys and releases in a folder served over HTTP: v2, v3 (raises at import), another board, a
    downgrade, one signed by another key, one with a tampered file."""
    top = str(tmp_path_factory.mktemp("releases"))
    img = os.path.join(top, "img")
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "build_bundle.py"), img], check=True,
                   capture_output=True)
    key = os.path.join(top, "release.pem")
    out = subprocess.run([sys.executable, RELEASE, "--new-key", key], check=True, capture_output=True, text=True)
    pub = out.stdout.strip()
    assert pub.endswith(".pub.pem") and os.path.exists(pub)
    other = os.path.join(top, "other.pem")
    release("--new-key", other)
    www = os.path.join(top, "www")
    release("--key", key, "--version", "0.2.0", "--board", "sim", "--out", os.path.join(www, "v2"), "--from", img)
    broken = os.path.join(top, "broken")
    shutil.copytree(img, broken)
    os.remove(os.path.join(broken, "firmware", "app.mpy"))
    with open(os.path.join(broken, "firmware", "app.py"), "w") as f:
        f.write('raise RuntimeError("v3 is broken")\n')
    release("--key", key, "--version", "0.3.0", "--board", "sim", "--out", os.path.join(www, "v3"), "--from", broken)
    hung = os.path.join(top, "hung")
    shutil.copytree(img, hung)
    os.remove(os.path.join(hung, "firmware", "app.mpy"))
    with open(os.path.join(hung, "firmware", "app.py"), "w") as f:
        f.write("while True:\n    pass\n")  # hangs at import, before the loop could feed the watchdog
    release("--key", key, "--version", "0.4.0", "--board", "sim", "--out", os.path.join(www, "hung"), "--from", hung)
    release("--key", key, "--version", "0.2.0", "--board", "esp32_ref", "--out", os.path.join(www, "esp"),
            "--from", img)
    release("--key", key, "--version", "0.0.9", "--board", "sim", "--out", os.path.join(www, "old"), "--from", img)
    release("--key", other, "--version", "0.2.0", "--board", "sim", "--out", os.path.join(www, "forged"),
            "--from", img)
    release("--key", key, "--version", "0.2.0", "--board", "sim", "--out", os.path.join(www, "tampered"),
            "--from", img)
    with open(os.path.join(www, "tampered", "firmware", "charger.mpy"), "r+b") as f:
        f.seek(40)
        b = f.read(1)
        f.seek(40)
        f.write(bytes([b[0] ^ 0xFF]))
    srv = Server(www)
    yield {"pub": pub, "srv": srv, "www": www}
    srv.close()


def online(cl, since=0):
    """The charger's link and its vehicle link are up (ev/state comes once the latter is subscribed)."""
    cl.wait("online", lambda p: p == b"online", 15, since)
    cl.wait("ev/state", None, 15, since)


def updater(rig, rel, sid, settings=None, cmd_key=None):
    ch, cl = rig.charger(sid, settings or FAST, start=False)
    # from source on the 64-bit port the firmware, the updater and its download buffers come close to
    # the simulator's default 512K (a MemoryError seen once under load); the device runs frozen bytecode
    ch.extra = ["--update-pubkey", rel["pub"], "--heap", "1024K"] + (["--cmd-key", cmd_key] if cmd_key else [])
    ch.start()
    online(cl)
    return ch, cl


def update_events(cl, since=0):
    return [(m.d["phase"], m.d.get("error"), m.d["version"])
            for m in cl.all("event", since, lambda d: d["type"] == "update")]


def wait_update(cl, phase, since, timeout=30):
    return cl.event("update", lambda d: d["phase"] == phase, timeout, since)


def check_update_event(d, cmd_id):
    assert d["cmd_id"] == cmd_id and "version" in d and d["phase"] in PHASES, d
    if d["phase"] in ("failed", "rolled_back"):
        assert d["error"] in ("download", "hash", "signature", "board", "downgrade", "space", "health", "crash"), d


# ---- signed messages ---------------------------------------------------------------------------------
def test_signed_messages(rig):
    ch, cl = rig.charger("E2ESIG", FAST, start=False)
    ch.extra = ["--cmd-key", KEY]
    ch.start()
    cl.wait("online", lambda p: p == b"online", 15)
    cl.event("boot")

    m = cl.mark()
    cl.publish("cmd", sign("cmd", 1, {"id": "s-1", "op": "get"}))
    r = cl.wait("reply", lambda d: d["id"] == "s-1", 10, m).d
    assert r["ok"] is True and check_state(r["result"]["state"])

    bad = [
        ("cmd", json.dumps({"id": "p-1", "op": "get"})),  # no envelope
        ("cmd", json.dumps({"msg": json.dumps({"id": "p-2", "op": "get"}), "ctr": 2, "mac": "00" * 32})),
        ("cmd", sign("limit", 3, {"id": "p-3", "op": "get"})),  # the mac of another topic
        ("cmd", sign("cmd", 4, {"id": "p-4", "op": "get"}).replace("get", "gex")),  # a flipped byte in msg
        ("cmd", sign("cmd", 5, {"id": "p-5", "op": "get"}, key="11" * 32)),  # another key
        ("limit", json.dumps({"a": 6, "ttl_s": 60, "seq": 1})),
        ("config", json.dumps({"max_current_a": 7})),
    ]
    m = cl.mark()
    for rel_topic, payload in bad:
        cl.publish(rel_topic, payload, retain=False)
    evs = [cl.event("rejected", lambda d, t=t: d["topic"] == t and d["error"] == "unauthenticated", 10, m)
           for t in ("cmd", "limit", "config")]
    assert evs
    time.sleep(1.0)
    rej = cl.all("event", m, lambda d: d["type"] == "rejected")
    assert len(rej) == len(bad) and all(d.d["error"] == "unauthenticated" for d in rej), rej
    assert cl.all("reply", m) == []

    # replay of the good command: a rejected event, no reply
    m = cl.mark()
    cl.publish("cmd", sign("cmd", 1, {"id": "s-1", "op": "get"}))
    e = cl.event("rejected", None, 10, m)
    assert e["topic"] == "cmd" and e["error"] == "replay", e
    # a signed config (retained) and limit are applied; the counter is shared
    m = cl.mark()
    cl.publish("config", sign("config", 10, {"max_current_a": 12, "standalone": False}), retain=True)
    cl.event("config_applied", None, 10, m)
    assert cl.wait("config/reported", lambda d: d["max_current_a"] == 12, 10, m)
    cl.publish("limit", sign("limit", 11, {"a": 8, "ttl_s": 60, "seq": 1}))
    cl.state(lambda d: d["limit_src"] in ("cloud", "max") and d["lease_s"] is not None, 10, m)
    cl.publish("cmd", sign("cmd", 11, {"id": "s-2", "op": "get"}))
    assert cl.event("rejected", lambda d: d["error"] == "replay", 10, m)["topic"] == "cmd"

    # reboot: the counter and the last applied config are remembered
    ch.sigterm()
    m = cl.mark()
    ch.start()
    boot = cl.event("boot", None, 20, m)
    assert boot["boot"] == 2
    cl.wait("config/reported", None, 10, m)
    time.sleep(1.5)  # the retained config has come back by now
    assert cl.all("event", m, lambda d: d["type"] in ("rejected", "config_applied")) == []
    cl.publish("cmd", sign("cmd", 11, {"id": "s-3", "op": "get"}))
    assert cl.event("rejected", None, 10, m)["error"] == "replay"
    cl.publish("cmd", sign("cmd", 12, {"id": "s-4", "op": "get"}))
    r = cl.wait("reply", lambda d: d["id"] == "s-4", 10, m).d
    assert r["ok"] and r["result"]["settings"]["max_current_a"] == 12

    # a factory reset keeps the counter (and remembers the applied config: not re-applied)
    m = cl.mark()
    cl.publish("cmd", sign("cmd", 13, {"id": "s-fr", "op": "factory_reset"}))
    assert cl.wait("reply", lambda d: d["id"] == "s-fr", 10, m).d["ok"] is True
    boot = cl.event("boot", lambda d: d["boot"] == 3, 20, m)
    assert boot["reset_cause"] == "soft" and boot["cmd_id"] == "s-fr"
    rep = cl.wait("config/reported", lambda d: d["max_current_a"] == 16, 10, m).d
    assert rep["standalone"] is True
    time.sleep(1.5)
    assert cl.all("event", m, lambda d: d["type"] in ("rejected", "config_applied")) == []
    cl.publish("cmd", sign("cmd", 13, {"id": "s-5", "op": "get"}))
    assert cl.event("rejected", None, 10, m)["error"] == "replay"
    assert cl.all("reply", m, lambda d: d["id"] == "s-5") == []


# ---- factory reset ---------------------------------------------------------------------------------
def test_factory_reset_erases_the_owner_keeps_the_board(rig):
    first = dict(FAST, max_current_a=10, auth_required=True, local_auth_ids=["04A1B2"])
    ch, cl = rig.charger("E2EFR", first)
    online(cl)
    cl.event("boot")
    assert cl.wait("config/reported").d["local_auth_ids"] == ["04A1B2"]
    cl.plug()
    cl.ev("tag", id="04A1B2")
    cl.ev("charge", on=True)
    cl.state(lambda d: d["contactor"] is True, 15)
    r = cl.cmd("factory_reset")
    assert r["ok"] is False and r["error"] == "busy", r
    time.sleep(3)
    m = cl.mark()
    cl.ev("unplug")
    sess = cl.wait("session", None, 15, m).d
    e_wh = cl.state(lambda d: d["contactor"] is False and d["session"] is None, 10, m)["e_wh"]
    assert e_wh > 0

    m = cl.mark()
    r = cl.cmd("factory_reset", cid="fr-1")
    assert r["ok"] is True, r
    cl.wait("online", lambda p: p == b"offline", 10, m)
    boot = cl.event("boot", lambda d: d["boot"] == 2, 20, m)
    assert boot["reset_cause"] == "soft" and boot["cmd_id"] == "fr-1", boot
    rep = cl.wait("config/reported", None, 10, m).d
    assert rep["local_auth_ids"] == [] and rep["max_current_a"] == 16 and rep["auth_required"] is False, rep
    st = cl.state(None, 10, m)
    assert st["e_wh"] >= e_wh and st["auth"]["required"] is False
    again = cl.wait("session", lambda d: d["id"] == sess["id"], 15, m).d  # unacked: still owed
    assert again["wh"] == sess["wh"]
    # a restart later does not bring the first-boot settings back
    m = cl.mark()
    cl.cmd("restart")
    cl.event("boot", lambda d: d["boot"] == 3, 20, m)
    assert cl.wait("config/reported", None, 10, m).d["max_current_a"] == 16


# ---- field update ----------------------------------------------------------------------------------
def test_update_commits_v2_then_broken_v3_rolls_back(rig, rel):
    srv = rel["srv"]
    ch, cl = updater(rig, rel, "E2EUPD")
    assert cl.event("boot")["fw"] == "0.1.0"
    m = cl.mark()
    t0 = time.monotonic()
    r = cl.cmd("update", cid="u-2", url=srv.url("v2/manifest.json"))
    assert r["ok"] is True and r["result"] == {"accepted": True, "deferred": None}, r
    done = wait_update(cl, "committed", m, 60)
    print("update to v2 committed after %.1f s" % (time.monotonic() - t0))
    assert done["version"] == "0.2.0" and done["cmd_id"] == "u-2"
    assert update_events(cl, m) == [(p, None, "0.2.0") for p in
                                    ("downloading", "verifying", "installing", "rebooting", "committed")]
    for d in cl.all("event", m, lambda d: d["type"] == "update"):
        check_update_event(d.d, "u-2")
    boot = cl.event("boot", None, 5, m)
    assert boot["fw"] == "0.2.0" and boot["reset_cause"] == "soft" and boot["cmd_id"] == "u-2", boot
    assert done["boot"] == boot["boot"]  # committed by the new version
    st = cl.state(lambda d: d["update"] is None and d["boot"] == boot["boot"], 10, m)
    assert st["fw"] == "0.2.0"
    assert [x.d["update"]["phase"] for x in cl.all("state", m) if x.d["update"]][0] in ("downloading", "verifying",
                                                                                          "installing", "rebooting")

    m = cl.mark()
    r = cl.cmd("update", cid="u-3", url=srv.url("v3/manifest.json"))
    assert r["ok"] is True
    rb = wait_update(cl, "rolled_back", m, 60)
    assert rb["version"] == "0.3.0" and rb["error"] == "crash" and rb["cmd_id"] == "u-3", rb
    booted = [x.d for x in cl.all("event", m, lambda d: d["type"] == "boot")]
    assert booted[-1]["fw"] == "0.2.0", booted  # rolled back by the old one
    assert rb["boot"] == booted[-1]["boot"]
    assert update_events(cl, m)[-2:] == [("rebooting", None, "0.3.0"), ("rolled_back", "crash", "0.3.0")]
    assert cl.state(lambda d: d["update"] is None and d["boot"] == rb["boot"], 10, m)["fw"] == "0.2.0"
    assert "v3 is broken" in ch.log_tail(20000)
    # and it stays on v2 across a power cut
    ch.sigkill()
    m = cl.mark()
    ch.start()
    assert cl.event("boot", None, 20, m)["fw"] == "0.2.0"
    time.sleep(1)
    assert update_events(cl, m) == []


def test_a_new_version_that_hangs_is_reset_by_the_watchdog_and_rolled_back(rig, rel):
    ch, cl = updater(rig, rel, "E2EUPHANG")
    first = cl.event("boot", None, 10)
    m = cl.mark()
    assert cl.cmd("update", cid="u-h", url=rel["srv"].url("hung/manifest.json"))["ok"] is True
    wait_update(cl, "rebooting", m, 60)
    rb = wait_update(cl, "rolled_back", m, 60)
    assert rb["version"] == "0.4.0" and rb["error"] == "crash" and rb["cmd_id"] == "u-h", rb
    boots = [x.d for x in cl.all("event", m, lambda d: d["type"] == "boot")]
    assert boots[-1]["fw"] == first["fw"] and boots[-1]["reset_cause"] == "watchdog", boots
    assert "stopped feeding the watchdog" in ch.log_tail(20000)


def test_update_deferred_while_charging(rig, rel):
    srv = rel["srv"]
    ch, cl = updater(rig, rel, "E2EUPDEF")
    cl.plug()
    cl.ev("charge", on=True)
    cl.state(lambda d: d["contactor"] is True, 15)
    n = len(srv.log)
    m = cl.mark()
    r = cl.cmd("update", cid="u-d", url=srv.url("v2/manifest.json"))
    assert r["ok"] is True and r["result"] == {"accepted": True, "deferred": "charging"}, r
    d = wait_update(cl, "deferred", m, 10)
    assert d["cmd_id"] == "u-d" and "version" in d
    st = cl.state(lambda d: d["update"] is not None, 10, m)
    assert st["update"]["phase"] == "deferred"
    assert cl.cmd("update", url=srv.url("v2/manifest.json"))["error"] == "busy"
    time.sleep(3)
    assert len(srv.log) == n  # nothing fetched while deferred
    assert cl.state(None, 5, cl.mark())["contactor"] is True
    cl.ev("unplug")
    done = wait_update(cl, "committed", m, 60)
    assert done["version"] == "0.2.0"
    assert [e[0] for e in update_events(cl, m)] == ["deferred", "downloading", "verifying", "installing",
                                                     "rebooting", "committed"]


def test_update_refusals(rig, rel):
    srv = rel["srv"]
    ch, cl = updater(rig, rel, "E2EUPREF")
    cl.event("boot")
    cases = [("forged/manifest.json", "signature", None), ("esp/manifest.json", "board", "0.2.0"),
             ("old/manifest.json", "downgrade", "0.0.9"), ("tampered/manifest.json", "hash", "0.2.0"),
             ("nothing/manifest.json", "download", None)]
    for path, code, version in cases:
        m = cl.mark()
        cid = "ref-" + code
        assert cl.cmd("update", cid=cid, url=srv.url(path))["ok"] is True
        f = wait_update(cl, "failed", m, 30)
        assert f["error"] == code and f["version"] == version and f["cmd_id"] == cid, f
        seq = f["seq"]
        assert cl.state(lambda d, seq=seq: d["update"] is None and d["seq"] > seq, 10, m)["fw"] == "0.1.0"
    r = cl.cmd("update", url="ftp://127.0.0.1/x")
    assert r["ok"] is False and r["error"] == "bad_request", r
    r = cl.cmd("update")
    assert r["ok"] is False and r["error"] == "bad_request", r
    # one at a time
    srv.delay_s = 0.05
    try:
        m = cl.mark()
        assert cl.cmd("update", cid="slow", url=srv.url("v2/manifest.json"))["ok"] is True
        r = cl.cmd("update", url=srv.url("v2/manifest.json"))
        assert r["ok"] is False and r["error"] == "busy", r
    finally:
        srv.delay_s = 0
    assert wait_update(cl, "committed", m, 90)["cmd_id"] == "slow"


def test_update_resumes_a_cut_connection_and_a_power_cut_ends_it(rig, rel):
    srv = rel["srv"]
    ch, cl = updater(rig, rel, "E2EUPCUT")
    cl.event("boot")
    # a connection cut in the middle of a file: resumed with a Range request, committed
    srv.cut_after["v2/firmware/charger.mpy"] = 1000
    m = cl.mark()
    cl.cmd("update", cid="cut", url=srv.url("v2/manifest.json"))
    assert wait_update(cl, "installing", m, 60)
    assert ("v2/firmware/charger.mpy", 1000) in srv.log, srv.log[-5:]
    assert wait_update(cl, "committed", m, 60)["version"] == "0.2.0"


def test_power_cut_during_download(rig, rel):
    srv = rel["srv"]
    ch, cl = updater(rig, rel, "E2EUPPWR")
    cl.event("boot")
    srv.delay_s = 0.2  # slow enough to pull the plug in the middle
    try:
        m = cl.mark()
        cl.cmd("update", cid="pw-1", url=srv.url("v2/manifest.json"))
        wait_update(cl, "downloading", m, 20)
        time.sleep(1.5)
        ch.sigkill()
    finally:
        srv.delay_s = 0
    m = cl.mark()
    n = len(srv.log)
    ch.start()
    boot = cl.event("boot", None, 20, m)
    assert boot["fw"] == "0.1.0" and boot["reset_cause"] == "power_on"
    f = wait_update(cl, "failed", m, 10)
    assert f["error"] == "download" and f["cmd_id"] == "pw-1" and f["version"] == "0.2.0", f
    assert cl.state(lambda d: d["update"] is None and d["seq"] > f["seq"], 10, m)["fw"] == "0.1.0"
    m = cl.mark()
    cl.cmd("update", cid="pw-2", url=srv.url("v2/manifest.json"))
    assert wait_update(cl, "committed", m, 60)["cmd_id"] == "pw-2"
    fetched = [p for p, _ in srv.log[n:] if not p.endswith("manifest.json")]
    assert len(fetched) < len(json.loads(json.load(open(os.path.join(rel["www"], "v2", "manifest.json")))["manifest"])
                                         ["files"]), fetched  # files verified before the cut are reused


# ---- https ---------------------------------------------------------------------------------------
FETCH_SCRIPT = """
import hashlib, sys
from firmware.fetch import Fetcher, FetchError
with open(sys.argv[2], "rb") as f:
    ca = f.read()
try:
    d = Fetcher(ca).to_file(sys.argv[1], sys.argv[3], int(sys.argv[4]), hashlib.sha256)
    print("ok", "".join("%02x" % b for b in d))
except FetchError as e:
    print("refused", e.detail)
"""


def test_https_download_checks_the_provisioned_ca(rel, tmp_path):
    """firmware/fetch.py on the unix port (mbedTLS) against an https server: the provisioned CA is
    required, another CA is refused."""
    from broker import Certs

    from conftest import MICROPYTHON

    certs = Certs(str(tmp_path / "certs"))
    srv = Server(rel["www"], tls=(certs.cert, certs.key))
    try:
        script = tmp_path / "fetch.py"
        script.write_text(FETCH_SCRIPT)
        path = "v2/firmware/charger.mpy"
        with open(os.path.join(rel["www"], path), "rb") as f:
            data = f.read()
        env = dict(os.environ, MICROPYPATH=":".join([ROOT, os.path.join(ROOT, "build", "lib"), ".frozen"]))
        outs = []
        for ca in (certs.ca, certs.other_ca):
            dst = tmp_path / ("out-%d.bin" % len(outs))
            p = subprocess.run([MICROPYTHON, "-X", "heapsize=256K", str(script), srv.url(path), ca, str(dst),
                                str(len(data))], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
            outs.append(p.stdout.strip() + p.stderr[-300:])
        assert outs[0] == "ok " + hashlib.sha256(data).hexdigest(), outs
        assert outs[1].startswith("refused"), outs
    finally:
        srv.close()


# ---- the reference cloud signs -------------------------------------------------------------------
def test_reference_cloud_signer_is_what_the_firmware_verifies(tmp_path):
    from firmware.signed import Verifier
    from firmware.storage import Storage
    from tools.refcloud.signing import Signer

    s = Signer({"X1": bytes.fromhex(KEY)})
    v = Verifier(Storage(str(tmp_path)), bytes.fromhex(KEY))
    ctrs = []
    for topic in ("limit", "cmd", "config", "cmd"):
        env = s.wrap("X1", topic, '{"a":1}')
        assert v.open(topic, env) == '{"a":1}'
        ctrs.append(json.loads(env)["ctr"])
    assert ctrs == sorted(ctrs) and len(set(ctrs)) == 4
    assert s.wrap("OTHER", "cmd", "{}") == "{}"  # no key: plain


def test_reference_cloud_offboards_a_signed_charger(rig, tmp_path):
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"E2EOFF": KEY}))
    ch, cl = rig.charger("E2EOFF", dict(FAST, max_current_a=10, local_auth_ids=["04A1B2"]), start=False)
    ch.extra = ["--cmd-key", KEY]
    ch.start()
    online(cl)
    cl.publish("config", sign("config", 1, {"max_current_a": 12}), retain=True)
    cl.event("config_applied", None, 10)
    base = [sys.executable, os.path.join(ROOT, "tools", "cloud"), "--broker", "127.0.0.1:%d" % rig.broker.port,
            "--keys", str(keys), "cmd", "E2EOFF"]
    p = subprocess.run(base + ["get"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and json.loads(p.stdout)["ok"] is True, p.stdout + p.stderr
    m = cl.mark()
    p = subprocess.run(base + ["offboard"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    boot = cl.event("boot", lambda d: d["boot"] == 2, 20, m)
    assert boot["reset_cause"] == "soft" and boot["cmd_id"].startswith("cli-"), boot
    rep = cl.wait("config/reported", lambda d: d["local_auth_ids"] == [], 10, m).d
    assert rep["max_current_a"] == 16 and rep["standalone"] is True, rep
    from e2e import retained

    assert retained(rig.broker.port, "evse/E2EOFF/config") is None  # the cloud deleted its desired state
    assert [d.d for d in cl.all("event", m, lambda d: d["type"] == "rejected")] == []


def test_power_cut_in_the_health_period_rolls_back(rig, rel):
    """The new version booted on trial but lost power before it committed: the trial is used up, the
    next boot runs the old version, which reports rolled_back (crash: the trial did not finish)."""
    srv = rel["srv"]
    ch, cl = updater(rig, rel, "E2EUPHLT")
    cl.event("boot")
    m = cl.mark()
    cl.cmd("update", cid="h-1", url=srv.url("v2/manifest.json"))
    new = cl.event("boot", lambda d: d["fw"] == "0.2.0", 60, m)
    assert new["cmd_id"] == "h-1"
    time.sleep(2)  # inside the 10 s health period
    assert [e[0] for e in update_events(cl, m)] == ["downloading", "verifying", "installing", "rebooting"]
    ch.sigkill()
    m = cl.mark()
    ch.start()
    boot = cl.event("boot", None, 20, m)
    assert boot["fw"] == "0.1.0" and boot["reset_cause"] == "power_on", boot
    rb = wait_update(cl, "rolled_back", m, 10)
    assert rb["error"] == "crash" and rb["version"] == "0.2.0" and rb["cmd_id"] == "h-1", rb
