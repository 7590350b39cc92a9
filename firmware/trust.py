# Wires the v1.1 trust parts into an app from its provisioning: the signed-message verifier
# (firmware/signed.py) into the MQTT backend, the field updater (firmware/update.py) into the
# station and the slow work. main.py and the simulator call attach() once after building the App.
from firmware import rsa, signed
from firmware.update import Updater


def attach(app, cmd_key=None, update_pubkey=None, cadata=None, board_name=None, free_bytes=None):
    """cmd_key: 64 hex digits; update_pubkey: the PEM (or DER) text of the release key's public half.
    A key that is provisioned but unreadable raises ValueError: failing closed, never unsigned."""
    st = app.station
    if cmd_key:
        key = signed.parse_key(cmd_key)
        if app.cloud is not None:
            app.cloud.verifier = signed.Verifier(app.store, key)
    if update_pubkey:
        up = Updater(app.store, board_name, st.fw, rsa.load_public_key(update_pubkey), cadata, free_bytes)
        up.charging = st.charging
        up.restart = st.restart
        link = app.link
        up.healthy = (lambda: link.connected) if link is not None else (lambda: True)
        st.updater = up
        app.hooks.append(up.service)
        return up
    return None
