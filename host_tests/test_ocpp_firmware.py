# OCPP 1.6 Firmware Management (firmware/ocpp_firmware.py) on the OCPP backend's bench: UpdateFirmware
# drives the real field updater (firmware/update.py, the boot selector, a real flash folder; the
# download from memory as in test_trust.py) and FirmwareStatusNotifications follow its phases up to
# Installed from the new version; a retrieveDate in the future waits, across a reboot; failures and
# bad requests. Both runtimes; end to end with a real HTTP server: test_ocpp_firmware_e2e.py.
import gc

import trust_vectors as V
from fake_fetch import FakeFetcher

import bootsel
from firmware import rsa, update
from firmware.fetch import FetchError
from mpcompat import TempDir

gc.collect()
from ocpp_bench import T_UNIX, Bench  # noqa: E402

from firmware.ocpp_smart import format_time  # noqa: E402

MP_HEAP = "232K"  # two boots of the OCPP backend, the updater and RSA beside the core, compiled from source
URL = "http://127.0.0.1:1/r/manifest.json"
update.BACKOFF_MAX_S = 0  # retries at once
update.HEALTH_MS = 2000


def boot(folder, running="0.1.0", man=V.MANIFEST_OK, fail=None):
    """A boot of the charger: the boot selector picks the slot, the updater reviews what the last
    update left, the OCPP backend starts."""
    bootsel.select(folder, False)
    fake = FakeFetcher(man, V.FILES, fail)

    def make(store):
        up = update.Updater(store, "sim", running, rsa.load_public_key(V.PUB_PEM), free_bytes=lambda: 10 ** 7)
        up.threaded = False
        up.fetcher = lambda: fake
        return up

    b = Bench(folder, updater=make)
    b.run(500)  # BootNotification accepted: the clock is set
    return b


def statuses(b):
    return [p["status"] for p in b.of("FirmwareStatusNotification")]


def update_firmware(b, **p):
    p.setdefault("location", URL)
    p.setdefault("retrieveDate", format_time(T_UNIX))
    return b.server_call("UpdateFirmware", p)


def test_without_an_update_key_it_is_not_supported():
    b = Bench()
    b.run(500)
    r = b.server_call("GetConfiguration", {"key": ["SupportedFeatureProfiles"]})
    assert "FirmwareManagement" not in r[2]["configurationKey"][0]["value"]
    r = update_firmware(b)
    assert r[0] == 4 and r[2] == "NotSupported", r


def test_update_firmware_goes_through_and_the_new_version_says_installed():
    d = TempDir("ocppfw").path
    b = boot(d)
    r = b.server_call("GetConfiguration", {"key": ["SupportedFeatureProfiles"]})
    assert r[2]["configurationKey"][0]["value"].split(",")[-1] == "FirmwareManagement"
    r = update_firmware(b, retries=3, retryInterval=30)
    assert r[0] == 3 and r[2] == {}, r  # UpdateFirmware.conf is empty
    b.run(300)
    assert statuses(b) == ["Downloading", "Downloaded", "Installing"]
    assert b.restarts == ["ocpp-update"]  # the switch to the new slot, with the contactor open
    del b
    gc.collect()
    b = boot(d, "0.2.0")  # the trial boot of the new version
    assert bootsel.read(d)["trial"] == "a"
    b.run(update.HEALTH_MS + 1000)
    assert statuses(b) == ["Installed"]
    assert bootsel.read(d)["active"] == "a"
    r = b.server_call("TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"})
    assert r[2] == {"status": "Accepted"}
    b.run(100)
    assert statuses(b)[-1] == "Idle"


def test_a_retrieve_date_in_the_future_waits_even_across_a_reboot():
    d = TempDir("ocppfw").path
    b = boot(d)
    later = T_UNIX + b.v.now // 1000 + 20
    r = update_firmware(b, retrieveDate=format_time(later))
    assert r[0] == 3 and r[2] == {}, r
    assert update_firmware(b)[2] == "GenericError"  # one update at a time, a waiting one included
    b.run(2000)
    assert statuses(b) == [] and b.st.updater.job is None
    del b
    gc.collect()
    b = boot(d)  # still waiting after the reboot
    b.run(5000)
    assert statuses(b) == []
    b.run(20000)  # the charger's clock passes the date
    assert statuses(b)[:3] == ["Downloading", "Downloaded", "Installing"], statuses(b)


def test_failures_become_download_failed_or_installation_failed():
    d = TempDir("ocppfw").path
    b = boot(d, fail={"lib/extra.py": [FetchError("reset by peer")] * update.RETRIES})
    update_firmware(b)
    b.run(300)
    assert statuses(b) == ["Downloading", "DownloadFailed"]
    del b
    gc.collect()
    b = boot(TempDir("ocppfw").path, man=V.MANIFEST_OTHER_KEY)  # signed by a key that is not ours
    update_firmware(b)
    b.run(300)
    assert statuses(b)[-1] == "InstallationFailed" and b.restarts == []


def test_bad_requests_get_callerrors_and_start_nothing():
    b = boot(TempDir("ocppfw").path)
    for p, code in (({"location": None}, "OccurenceConstraintViolation"),
                    ({"retrieveDate": "tomorrow"}, "FormationViolation"),
                    ({"retries": "3"}, "TypeConstraintViolation"),
                    ({"retryInterval": -1}, "TypeConstraintViolation"),
                    ({"location": "ftp://example.com/m.json"}, "PropertyConstraintViolation")):
        full = {"location": URL, "retrieveDate": format_time(T_UNIX)}
        full.update(p)
        if full["location"] is None:
            del full["location"]
        r = b.server_call("UpdateFirmware", full)
        assert r[0] == 4 and r[2] == code, (p, r)
    b.run(200)
    assert statuses(b) == [] and b.st.updater.job is None
