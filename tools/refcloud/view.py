"""Live terminal view of an installation: chargers and circuits, from a balancer snapshot."""

import sys
import time

PH = ("L1", "L2", "L3")


def _a(v):
    return "  -  " if v is None else "%5.1f" % v


def bar(value, limit, width=30):
    if not limit:
        return ""
    n = max(0, min(width, int(round(width * value / limit))))
    over = value > limit + 1e-6
    return "[" + ("!" if over else "#") * n + "." * (width - n) + "]"


def render(snap, logs=(), title="", truth=None):
    """Text for one frame. truth: {serial: [grid-phase amps]} measured at the vehicle (sim only)."""
    out = []
    if title:
        out.append(title)
    out.append("%-10s %-21s %-7s %-17s %-19s %-9s %-7s %5s %7s %9s" % (
        "charger", "mode", "offered", "measured L1/L2/L3", "limit src / lease", "grant", "target",
        "ph", "sess Wh", "total Wh"))
    for s, c in sorted(snap["chargers"].items()):
        if not c["online"]:
            mode = "OFFLINE (at fallback)" if c["online"] is False else "never seen"
        elif not c["fresh"]:
            mode = "stale"
        else:
            mode = c["mode"] or "?"
            if c["standalone"]:
                mode += " (standalone)"
        i = c["i_grid"] if truth is None or s not in truth else truth[s]
        lease = "" if c["lease_s"] is None else "%ds" % c["lease_s"]
        src = "%s %s" % (c["limit_src"] or "-", lease)
        out.append("%-10s %-21s %-7s %-17s %-19s %-9s %-7s %5s %7s %9s" % (
            s, mode[:21], _a(c["offered_a"]), "/".join("%4.1f" % x for x in i), src[:19],
            _a(c["grant_a"]), _a(c["target_a"]), c["phases"], "-" if c["session_wh"] is None else c["session_wh"],
            "-" if c["e_wh"] is None else c["e_wh"]))
    out.append("")
    for name, n in snap["nodes"].items():
        meas = n["measured"]
        if truth is not None:
            meas = n.get("truth", meas)
        worst = max(meas)
        out.append("%-10s breaker %5.1f A  load %s A  committed %s A  %s%s" % (
            name, n["breaker_a"], "/".join("%5.1f" % x for x in meas),
            "/".join("%5.1f" % x for x in n["committed"]), bar(worst, n["breaker_a"]),
            "  OVER" if worst > n["breaker_a"] + 0.05 else ""))
    if logs:
        out.append("")
        out.extend(str(x)[:140] for x in logs)
    return "\n".join(out)


class View:
    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.last_plain = 0.0

    def show(self, snap, logs=(), title="", truth=None, force=False):
        text = render(snap, logs, title, truth)
        if self.tty:
            self.stream.write("\x1b[H\x1b[2J" + text + "\n")
        else:
            if not force and time.monotonic() - self.last_plain < 5:
                return
            self.last_plain = time.monotonic()
            self.stream.write(text + "\n\n")
        self.stream.flush()
