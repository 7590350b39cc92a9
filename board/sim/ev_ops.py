# The simulator's vehicle-side control ops (contract: `sim/<id>/ev`), applied to a Plant.
# Kept out of plant.py so that the plant compiles in a smaller heap on the MicroPython unix port.
from board.sim.plant_io import CABLE_OHMS


def apply(plant, doc):
    """Apply one op; None, or an error string for a bad op. Never raises."""
    try:
        return _apply(plant, doc)
    except Exception as e:  # a bad op must never take the simulator down
        return "bad_request: %s" % (e,)


def _apply(plant, doc):
    if not isinstance(doc, dict):
        return "bad_request: op must be a JSON object"
    op = doc.get("op")
    plant.sync_now()
    if op == "plug":
        cable = _integral(doc.get("cable_a"))
        if cable is not None and (_not_int(cable) or cable not in CABLE_OHMS):
            return "out_of_range: cable_a must be 13, 20, 32, 63 or null"
        phases = _integral(doc.get("phases", 3))
        if _not_int(phases) or phases not in (1, 3):
            return "out_of_range: phases must be 1 or 3"
        max_a = doc.get("max_a", 32)
        if _not_num(max_a) or not 1 <= max_a <= 80:
            return "out_of_range: max_a must be 1..80"
        charge = doc.get("charge", True)
        sleepy = doc.get("sleep", False)
        if not isinstance(charge, bool) or not isinstance(sleepy, bool):
            return "bad_request: charge and sleep must be booleans"
        plant.plug(cable, phases, float(max_a), charge, sleepy)
    elif op == "unplug":
        plant.unplug()
    elif op == "charge":
        on = doc.get("on")
        if not isinstance(on, bool):
            return "bad_request: on must be a boolean"
        plant.set_charge(on)
    elif op == "draw":
        if "a" not in doc:
            return "bad_request: a is required (a number, or null)"
        a = doc["a"]
        if a is not None and (_not_num(a) or not 0 <= a <= 100):
            return "out_of_range: a must be 0..100 or null"
        plant.set_draw(None if a is None else float(a))
    elif op == "fault":
        kind = doc.get("kind")
        on = doc.get("on")
        if kind not in plant.faults:
            return "out_of_range: unknown fault kind %s" % (kind,)
        if not isinstance(on, bool):
            return "bad_request: on must be a boolean"
        plant.set_fault(kind, on)
    elif op == "tag":
        uid = doc.get("id")
        if not isinstance(uid, str) or not 1 <= len(uid) <= 32:
            return "bad_request: id must be a non-empty string (<= 32 chars)"
        plant.present_tag(uid)
    elif op == "button":
        ms = _integral(doc.get("ms", 200))
        if _not_int(ms) or not 1 <= ms <= 60000:
            return "out_of_range: ms must be an integer 1..60000"
        plant.press_button(ms)
    else:
        return "unknown_op: %s" % (op,)
    plant.refresh()
    return None



def _integral(x):
    if isinstance(x, float) and x == int(x):
        return int(x)
    return x


def _not_int(x):
    return isinstance(x, bool) or not isinstance(x, int)


def _not_num(x):
    return isinstance(x, bool) or not isinstance(x, (int, float))
