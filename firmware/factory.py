# Factory reset for an ownership transfer (contract v1.1): settings back to their defaults (the
# first-boot document is not applied again: settings.json exists), which empties the local auth list;
# a pending grant lives in RAM only and goes with the restart that follows. Kept, because they belong
# to the board or are still owed to someone: provisioning, the boot counter (boot.json), the
# signed-message counter and the last applied config (msgctr.json), lifetime energy (energy.json),
# unacknowledged session records, and the application slots.
from firmware import settings as settings_mod
from firmware.units import BUSY


def erase(station):
    """Erase the owner's data; the caller replies and restarts. (busy, detail) while charging or
    while an update runs."""
    if station.charging():
        return (BUSY, "a vehicle is charging")
    up = station.updater
    if up is not None and up.job is not None and up.job.get("phase") != "deferred":
        return (BUSY, "an update is in progress")
    # in effect at once too: a `config` arriving before the reset must not write the old ones back
    station.reset_settings(settings_mod.defaults(station.hw_max_a))
    return None
