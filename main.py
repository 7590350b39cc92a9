# Device entry: provisioning, WiFi, board, cloud link, application loop.
# /provision.json (written once per board, see README):
#   {"serial": "ZAP012345", "mqtt_prefix": "evse", "broker": "mqtt.example.net:8883",
#    "ca": "/ca.pem", "username": "...", "password": "...", "wifi": {"ssid": "...", "key": "..."},
#    "cmd_key": "<64 hex digits>", "update_pubkey": "/release.pub.pem",   (contract v1.1, optional)
#    "ha_discovery": false, "ha_prefix": "homeassistant"}   (Home Assistant discovery: firmware/ha.py)
# or, for OCPP 1.6J (docs/ocpp.md): "backend": "ocpp", "ocpp_url": "wss://cs.example.net/ocpp",
#    "ocpp_password": "..." (optional, HTTP Basic as SERIAL:password), "ca": "/ca.pem" for wss://
import json
import time

import machine


def _load(path, default):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def _count_crash(delta):
    n = _load("/crashes", 0) if delta else 0
    with open("/crashes", "w") as f:
        f.write(str(n + delta if delta else 0))


def _wifi(prov):
    w = prov.get("wifi")
    if not w:
        return
    import network

    sta = network.WLAN(network.STA_IF)
    sta.active(True)
    sta.connect(w.get("ssid"), w.get("key"))  # returns at once; the link retries until it is up


def _clock(board):
    # NTP in its own thread (DNS and UDP block): every minute until it works, then every 6 hours.
    def loop():
        while True:
            try:
                board.sync_time()
                time.sleep(6 * 3600)
            except Exception:  # no network yet, no answer: try again soon
                time.sleep(60)

    import _thread

    _thread.start_new_thread(loop, ())


FLASH = "/flash"  # the board's storage_root: settings, sessions, and the application slots


def _ocpp(prov, serial):
    from firmware.ocpp import Ocpp
    from firmware.ws import WsLink

    cadata = None
    if prov.get("ca"):
        with open(prov["ca"], "rb") as f:
            cadata = f.read()
    url = prov["ocpp_url"].rstrip("/") + "/" + serial
    link = WsLink(url, "ocpp1.6", user=serial, password=prov.get("ocpp_password"), cadata=cadata)
    return link, Ocpp


def start():
    try:
        import bootsel
    except ImportError:  # an image without the selector (older frozen build): the root image runs
        bootsel = None
    if bootsel is not None:
        bootsel.select(FLASH)  # the application slot: a field update's trial, or the committed one
    from board.esp32_ref import Board
    from firmware.app import App

    prov = _load("/provision.json", {})
    _wifi(prov)
    board = Board()
    _clock(board)
    serial = prov.get("serial") or board.serial
    prefix = prov.get("mqtt_prefix", "evse")
    link = None
    cadata = None
    if prov.get("broker"):
        from firmware.link import Link

        host, _, port = prov["broker"].rpartition(":")
        if prov.get("ca"):
            with open(prov["ca"], "rb") as f:
                cadata = f.read()
        from firmware.protocol import Topics

        t = Topics(prefix, serial)
        link = Link(serial, host, int(port or (8883 if cadata else 1883)),
                    subscriptions=t.inbound(), user=prov.get("username"), password=prov.get("password"),
                    cadata=cadata, online_topic=t.online)
    ha_prefix = prov.get("ha_prefix", "homeassistant") if prov.get("ha_discovery") else None
    backend = None
    if prov.get("backend") == "ocpp":  # OCPP 1.6J instead of the MQTT contract (docs/ocpp.md)
        link, backend = _ocpp(prov, serial)
    app = App(board, link, serial=serial, prefix=prefix, ha_prefix=ha_prefix, backend=backend)
    if prov.get("cmd_key") or prov.get("update_pubkey"):
        from firmware import trust

        pub = prov.get("update_pubkey")
        if pub and not pub.startswith("-----BEGIN"):
            with open(pub, "rb") as f:
                pub = f.read()
        trust.attach(app, prov.get("cmd_key"), pub, cadata, "esp32_ref")
    _count_crash(0)
    app.run()


if not globals().get("SAFE_MODE"):
    try:
        _count_crash(1)
        start()
    except Exception as e:  # log, then let the watchdog-free reset bring the board back
        import sys

        with open("/crash.log", "a") as f:
            sys.print_exception(e, f)
        time.sleep(2)
        machine.reset()
