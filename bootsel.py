# The boot selector: which application image this boot runs. Kept tiny and never replaced by a field
# update (firmware/update.py installs into slot_a / slot_b only), so that whatever an update writes,
# the next boot can still choose a working image.
#
# ROOT/slots.json: {"active": None | "a" | "b", "trial": None | "a" | "b", "tries": 0 | 1, ...}
#   active  the committed slot (None: the image flashed at the root, the factory image)
#   trial   a freshly installed slot: booted once (tries 0 -> 1); if that boot does not commit it
#           (the new version writes active = trial), the next boot goes back to active for good and
#           notes rolled_back = the slot and why ("crash" unless the new version wrote "health").
# So no image is ever booted twice on trial: no boot loop, whatever the new version does.
import json
import os
import sys

FILE = "slots.json"


def _path(root, name):
    return root.rstrip("/") + "/" + name


def read(root):
    try:
        with open(_path(root, FILE)) as f:
            d = json.load(f)
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def write(root, d):
    p = _path(root, FILE)
    with open(p + ".tmp", "w") as f:
        f.write(json.dumps(d))
    os.rename(p + ".tmp", p)  # atomic on LittleFS and POSIX: the old or the new record, never half


def slot_dir(root, slot):
    return _path(root, "slot_" + slot)


def _exists(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False


def select(root, use=True):
    """Choose the slot for this boot, put it first on sys.path (not with use=False: tests); returns
    it (None: the root image)."""
    d = read(root)
    slot = d.get("active")
    trial = d.get("trial")
    if trial:
        if d.get("tries", 0) >= 1:
            d = {"active": slot, "trial": None, "tries": 0, "rolled_back": trial, "why": d.get("why") or "crash"}
        else:
            d["tries"] = 1
            slot = trial
        write(root, d)
    if slot not in ("a", "b") or not _exists(_path(slot_dir(root, slot), "firmware")):
        return None
    if not use:
        return slot
    top = slot_dir(root, slot)
    keep = [p for p in sys.path if p == ".frozen"]
    while sys.path:
        sys.path.pop()
    for p in [top, top + "/lib"] + keep:
        sys.path.append(p)
    return slot
