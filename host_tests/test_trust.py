# Contract v1.1's trust parts on both runtimes: the HMAC envelope and its counter (firmware/signed.py),
# RSA PKCS#1 v1.5 verification (firmware/rsa.py), manifests and versions (firmware/manifest.py), the
# update state machine (firmware/update.py) with a fake downloader over a real flash folder, the boot
# selector's trial and rollback (bootsel.py), factory reset's erase (firmware/factory.py).
import binascii
import hashlib
import json

import trust_vectors as V
from fake_fetch import FakeFetcher

import bootsel
from firmware import manifest, rsa, signed, update
from firmware.fetch import FetchError, parse_url
from firmware.storage import Storage
from mpcompat import TempDir, raises

KEY_HEX = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
KEY = signed.parse_key(KEY_HEX)
update.BACKOFF_MAX_S = 0  # retries at once


def hx(b):
    return binascii.hexlify(b).decode()


def envelope(topic, ctr, msg, key=KEY):
    mac = signed.hmac_sha256(key, (topic + "\n" + str(ctr) + "\n" + msg).encode())
    return json.dumps({"msg": msg, "ctr": ctr, "mac": hx(mac)})


# ---- HMAC and the envelope ----------------------------------------------------------------------------
def test_hmac_matches_the_contract_example():
    mac = signed.hmac_sha256(KEY, b'cmd\n1\n{"id":"c-1","op":"get"}')
    assert hx(mac) == "d1c862cd8747f226b94d4179f77bc8d841fd1170b74be71701e2fca843b0ec17"


def test_hmac_rfc4231_case_2_and_long_keys():
    assert hx(signed.hmac_sha256(b"Jefe", b"what do ya want for nothing?")) == \
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    # RFC 4231 case 6: a key longer than the block is hashed first
    mac = signed.hmac_sha256(b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First")
    assert hx(mac) == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"


def test_constant_time_equal():
    assert signed.equal(b"abc", b"abc")
    assert not signed.equal(b"abc", b"abd") and not signed.equal(b"abc", b"ab")


def test_key_must_be_64_hex_digits():
    for bad in ("", "00" * 31, "zz" * 32, "00" * 33, None):
        raises(ValueError, signed.parse_key, bad)


def _verifier(d):
    return signed.Verifier(Storage(d.path), KEY)


def test_envelope_accepts_a_good_mac_and_persists_the_counter_first():
    d = TempDir("sig")
    v = _verifier(d)
    assert v.open("cmd", envelope("cmd", 5, '{"id":"a","op":"get"}')) == '{"id":"a","op":"get"}'
    assert Storage(d.path).read_json("msgctr.json")["ctr"] == 5


def test_envelope_refusals_and_their_codes():
    d = TempDir("sig")
    v = _verifier(d)
    v.open("cmd", envelope("cmd", 3, "{}"))
    good = envelope("cmd", 4, '{"id":"x","op":"get"}')
    flipped = good.replace('\\"get\\"', '\\"gex\\"')
    cases = [
        (b'{"id":"x","op":"get"}', "unauthenticated"),  # no envelope
        (b"garbage", "unauthenticated"),
        (None, "unauthenticated"),  # dropped as too large by the link
        (envelope("limit", 4, '{"id":"x","op":"get"}'), "unauthenticated"),  # mac of another topic
        (flipped, "unauthenticated"),
        (envelope("cmd", 4, "{}", key=b"\x01" * 32), "unauthenticated"),
        (json.dumps({"msg": "{}", "ctr": 0, "mac": "00" * 32}), "unauthenticated"),
        (json.dumps({"msg": "{}", "ctr": True, "mac": "00" * 32}), "unauthenticated"),
        (json.dumps({"msg": "{}", "ctr": 9, "mac": "zz"}), "unauthenticated"),
        (envelope("cmd", 3, "{}"), "replay"),
        (envelope("cmd", 2, '{"id":"y","op":"get"}'), "replay"),
    ]
    for payload, code in cases:
        e = raises(signed.Refused, v.open, "cmd", payload)
        assert e.code == code, (payload, e.code, e.detail)
    assert v.ctr == 3  # nothing refused used up a counter


def test_counter_is_shared_by_the_topics_and_survives_a_reboot():
    d = TempDir("sig")
    v = _verifier(d)
    v.open("limit", envelope("limit", 10, '{"a":6,"seq":1}'))
    assert raises(signed.Refused, v.open, "cmd", envelope("cmd", 10, "{}")).code == "replay"
    v2 = _verifier(d)  # reboot
    assert v2.ctr == 10
    assert raises(signed.Refused, v2.open, "limit", envelope("limit", 10, '{"a":6,"seq":1}')).code == "replay"
    assert v2.open("config", envelope("config", 11, "{}")) == "{}"


def test_retained_config_applied_is_taken_as_applied_again_after_reboot():
    d = TempDir("sig")
    v = _verifier(d)
    cfg = envelope("config", 7, '{"max_current_a":10}')
    assert v.open("config", cfg) == '{"max_current_a":10}'
    v.config_applied()
    v.open("cmd", envelope("cmd", 8, "{}"))
    assert v.open("config", cfg) is None  # re-delivered: neither applied nor rejected
    assert _verifier(d).open("config", cfg) is None  # after a reboot too
    # a config document that was refused is not remembered: its re-delivery is a replay
    bad = envelope("config", 9, '{"max_current_a":99}')
    v.open("config", bad)
    assert raises(signed.Refused, v.open, "config", bad).code == "replay"
    # the same mac on another topic is no shortcut
    assert raises(signed.Refused, v.open, "cmd", cfg).code == "unauthenticated"


# ---- RSA -----------------------------------------------------------------------------------------------
def test_rsa_verifies_pkcs1_v15_sha256_and_refuses_forgeries():
    pk = rsa.load_public_key(V.PUB_PEM)
    assert pk == rsa.load_public_key(V.PUB_PKCS1_PEM) and pk[1] == 65537
    sig = binascii.unhexlify(V.MSG_SIG)
    assert rsa.verify_bytes(pk, V.MSG, sig)
    assert not rsa.verify_bytes(pk, V.MSG + b".", sig)
    assert not rsa.verify_bytes(pk, V.MSG, binascii.unhexlify(V.OTHER_SIG))
    flipped = bytearray(sig)
    flipped[100] ^= 1
    assert not rsa.verify_bytes(pk, V.MSG, bytes(flipped))
    assert not rsa.verify_bytes(pk, V.MSG, sig[1:])
    assert not rsa.verify_bytes(pk, V.MSG, b"\xff" * 256)  # >= n


def test_modexp_is_pow():
    n = rsa.load_public_key(V.PUB_PEM)[0]
    for s in (2, 3, 12345678901234567890, n - 2):
        for e in (3, 17, 65537):
            assert rsa.modexp(s, e, n) == pow(s, e, n)


def test_bad_public_keys_are_refused():
    for bad in ("", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", b"\x30\x03\x02\x01\x05"):
        raises(ValueError, rsa.load_public_key, bad)


# ---- manifests and versions --------------------------------------------------------------------------
def test_versions_are_dotted_integers():
    assert manifest.compare("1.2.10", "1.2.9") == 1 and manifest.compare("1.2", "1.2.0") == 0
    assert manifest.compare("0.1.0", "0.2.0") == -1 and manifest.compare("2.0", "10.0") == -1
    for bad in ("", "1..2", "1.a", "v1", "1.-2", None, 3):
        assert manifest.parse_version(bad) is None


def test_manifest_checks():
    pk = rsa.load_public_key(V.PUB_PEM)
    m = manifest.parse(V.MANIFEST_OK, pk, "sim", "0.1.0")
    assert m.version == "0.2.0" and [f[0] for f in m.files] == ["firmware/version.py", "lib/extra.py"]
    assert manifest.parse(V.MANIFEST_OK, pk, "sim", "0.2.0").version == "0.2.0"  # same version: allowed
    for raw, code in ((V.MANIFEST_TAMPERED, "signature"), (V.MANIFEST_OTHER_KEY, "signature"),
                      (V.MANIFEST_BOARD, "board"), (V.MANIFEST_OLD, "downgrade"), (b"garbage", "signature"),
                      (b'{"manifest":1}', "signature"), (b"", "signature")):
        e = raises(manifest.UpdateError, manifest.parse, raw, pk, "sim", "0.1.0")
        assert e.code == code, (raw[:40], e.code)
    assert raises(manifest.UpdateError, manifest.parse, V.MANIFEST_OK, pk, "sim", "0.10.0").code == "downgrade"


def test_manifest_paths_stay_inside_the_slot():
    for bad in ("/etc/x", "../x", "a/../b", "main.py", "boot.py", "bootsel.py", "a//b", "a b", ""):
        assert not manifest.safe_path(bad), bad
    assert manifest.safe_path("firmware/app.mpy") and manifest.safe_path("lib/umqtt/simple.mpy")


def test_urls():
    assert parse_url("http://127.0.0.1:8080/r/manifest.json") == (False, "127.0.0.1", 8080, "/r/manifest.json")
    assert parse_url("https://example.net/m.json") == (True, "example.net", 443, "/m.json")
    for bad in ("ftp://x/y", "http://", "http://:80/x", "http://h:0/x", "http://h:x/y", "http://u@h/x",
                "http://h/a b", 5, "http://h/" + "x" * 600):
        raises(ValueError, parse_url, bad)


# ---- the update state machine ------------------------------------------------------------------------
class Rig:
    def __init__(self, d=None, running="0.1.0", man=V.MANIFEST_OK, files=None, free=10 ** 7):
        self.d = d or TempDir("upd")
        self.store = Storage(self.d.path)
        self.free = free
        self.boot(running, man, files)

    def boot(self, running="0.1.0", man=V.MANIFEST_OK, files=None, select=True):
        if select:
            self.slot = bootsel.select(self.d.path, False)
        self.up = update.Updater(self.store, "sim", running, rsa.load_public_key(V.PUB_PEM),
                                 free_bytes=lambda: self.free)
        self.up.threaded = False
        self.fake = FakeFetcher(man, files or V.FILES)
        self.up.fetcher = lambda: self.fake
        self.charging = False
        self.up.charging = lambda: self.charging
        self.connected = True
        self.up.healthy = lambda: self.connected
        self.restarts = []
        self.up.restart = self.restarts.append
        return self

    def events(self):
        return [(e["phase"], e.get("error"), e["version"], e["cmd_id"]) for e in self.up.pop_events()]


URL = "http://127.0.0.1:1/r/manifest.json"


def test_update_goes_through_and_commits_from_the_new_version():
    r = Rig()
    assert r.up.request("u1", URL) == ({"accepted": True, "deferred": None}, None)
    assert r.events() == [("downloading", None, "0.2.0", "u1"), ("verifying", None, "0.2.0", "u1"),
                          ("installing", None, "0.2.0", "u1")]
    assert r.up.status()["phase"] == "installing"
    r.up.service(0)
    assert r.events() == [("rebooting", None, "0.2.0", "u1")] and r.restarts == []
    r.up.service(50)
    assert r.restarts == ["u1"]
    got = update.file_sha256(r.d.path + "/slot_a/lib/extra.py", bytearray(64))
    assert got == hashlib.sha256(V.FILES["lib/extra.py"]).digest()
    # the trial boot of the new version: committed once healthy for HEALTH_MS
    r.boot("0.2.0")
    assert r.slot == "a" and r.up.status() == {"phase": "rebooting", "version": "0.2.0", "pct": 100}
    r.up.service(1000)
    r.connected = False
    r.up.service(update.HEALTH_MS + 1000)
    assert r.events() == []
    r.connected = True
    r.up.service(update.HEALTH_MS + 1050)
    assert r.events() == [("committed", None, "0.2.0", "u1")] and r.up.status() is None
    assert bootsel.read(r.d.path)["active"] == "a"
    r.boot("0.2.0")  # and it stays
    assert r.slot == "a" and r.events() == [] and r.up.status() is None
    # the next update goes into the other slot; the same version again is allowed
    r.up.request("u2", URL)
    assert r.up.job["slot"] == "b"


def test_new_version_that_never_boots_is_rolled_back_by_the_old_one():
    r = Rig()
    r.up.request("u1", URL)
    r.up.service(0)
    r.up.service(50)
    assert bootsel.select(r.d.path, False) == "a"  # the trial boot, which crashes at import
    r.boot("0.1.0")  # the next boot: back to the root image
    assert r.slot is None
    assert r.events() == [("rolled_back", "crash", "0.2.0", "u1")]
    assert r.up.status() is None and bootsel.read(r.d.path).get("trial") is None
    r.boot("0.1.0")
    assert r.slot is None and r.events() == []  # no boot loop, reported once


def test_new_version_that_never_gets_healthy_asks_for_the_rollback():
    r = Rig()
    r.up.request("u1", URL)
    r.up.service(0)
    r.up.service(50)
    r.boot("0.2.0")
    r.connected = False
    r.up.service(0)
    r.up.service(update.HEALTH_DEADLINE_MS)
    assert r.restarts == [None]
    r.boot("0.1.0")
    assert r.slot is None and r.events() == [("rolled_back", "health", "0.2.0", "u1")]


def test_update_while_charging_is_deferred_until_the_session_ends():
    r = Rig()
    r.charging = True
    assert r.up.request("u1", URL) == ({"accepted": True, "deferred": "charging"}, None)
    assert r.events() == [("deferred", None, None, "u1")] and r.fake.fetched == []
    assert r.up.request("u2", URL)[1][0] == "busy"
    r.up.service(0)
    assert r.events() == [] and r.fake.fetched == []
    r.charging = False
    r.up.service(50)
    assert [e[0] for e in r.events()] == ["downloading", "verifying", "installing"]
    r.charging = True  # a new session before the switch: the switch waits
    r.up.service(100)
    assert r.events() == []
    r.charging = False
    r.up.service(150)
    assert r.events() == [("rebooting", None, "0.2.0", "u1")]


def test_refusals():
    for man, code, version in ((V.MANIFEST_BOARD, "board", "0.2.0"), (V.MANIFEST_OLD, "downgrade", "0.0.9"),
                               (V.MANIFEST_TAMPERED, "signature", None), (V.MANIFEST_OTHER_KEY, "signature", None),
                               ("garbage", "signature", None), (V.MANIFEST_BAD_HASH, "hash", "0.2.0"),
                               (V.MANIFEST_HUGE, "space", "0.2.0")):
        r = Rig(man=man, free=500000)
        r.up.request("u1", URL)
        r.up.service(0)
        evs = r.events()
        assert evs[-1] == ("failed", code, version, "u1"), (code, evs)
        assert r.up.status() is None and bootsel.read(r.d.path).get("trial") is None
        r.boot()
        assert r.slot is None and r.events() == []
    r = Rig()
    assert r.up.request("u1", "ftp://x")[1][0] == "bad_request"
    assert r.up.request("u1", None)[1][0] == "bad_request"


def test_broken_downloads_resume_and_a_dead_server_fails():
    r = Rig()
    r.fake.fail = {"lib/extra.py": [FetchError("cut"), FetchError("cut")]}
    r.up.request("u1", URL)
    assert [e[0] for e in r.events()] == ["downloading", "verifying", "installing"]
    assert r.fake.fetched.count("lib/extra.py") == 3
    r = Rig()
    r.fake.fail = {"manifest.json": [FetchError("timeout")] * update.RETRIES}
    r.up.request("u1", URL)
    r.up.service(0)
    assert r.events() == [("failed", "download", None, "u1")]
    r = Rig()
    r.fake.fail = {"lib/extra.py": [FetchError("HTTP 404", False)]}
    r.up.request("u1", URL)
    r.up.service(0)
    assert r.events()[-1] == ("failed", "download", "0.2.0", "u1")


def test_power_cut_before_the_switch_fails_and_a_new_update_reuses_verified_files():
    r = Rig()
    r.fake.fail = {"lib/extra.py": [FetchError("HTTP 404", False)]}  # stands in for the cut
    r.up.request("u1", URL)
    r.up.pop_events()
    r.up._worker_done = None  # the power went before the failure was handled
    r.store.write_json("update.json", dict(r.up.job, phase="downloading"))
    r.boot()
    assert r.events() == [("failed", "download", "0.2.0", "u1")] and r.slot is None
    r.up.request("u2", URL)
    assert r.fake.fetched == ["lib/extra.py"]  # firmware/version.py was complete and verified
    assert [e[0] for e in r.events()] == ["downloading", "verifying", "installing"]


def test_power_cut_between_the_two_flash_writes_of_the_switch():
    r = Rig()
    r.up.request("u1", URL)
    r.store.write_json("update.json", dict(r.up.job, phase="rebooting"))  # slots.json not yet written
    r.boot()
    assert r.slot is None and r.events()[-1] == ("failed", "download", "0.2.0", "u1")


def test_power_cut_after_commit_before_the_event():
    r = Rig()
    r.up.request("u1", URL)
    r.up.service(0)
    r.up.service(50)
    r.boot("0.2.0")
    s = bootsel.read(r.d.path)
    s.update({"active": "a", "trial": None, "tries": 0})
    bootsel.write(r.d.path, s)  # committed, then the power went
    r.boot("0.2.0")
    assert r.slot == "a" and r.events() == [("committed", None, "0.2.0", "u1")]
