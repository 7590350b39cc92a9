"""Plot a fleet recording: each charger's current (the largest grid phase) and the circuit sum against
its breaker over time.

    python tools/refcloud/plot.py RECORDING.json OUT.png
"""

import json
import os
import sys


def plot(rec, out_png, title=None):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = rec["samples"]
    if not samples:
        raise ValueError("empty recording")
    t = [s["t"] for s in samples]
    circuits = rec["circuits"]
    fig, axes = plt.subplots(len(circuits), 1, figsize=(11, 4.2 * len(circuits)), squeeze=False)
    for ax, (cname, serials) in zip(axes[:, 0], circuits.items(), strict=True):
        for s in serials:
            ax.plot(t, [max(x["draw"].get(s, [0, 0, 0])) for x in samples], lw=1.4, label="%s current" % s)
        for ph in range(3):
            ax.plot(t, [x["circuits"][cname][ph] for x in samples], lw=0.9, ls="--",
                    label="circuit sum L%d" % (ph + 1))
        ax.step(t, [x["breakers"][cname] for x in samples], where="post", color="red", lw=2,
                label="breaker")
        top = max(x["breakers"][cname] for x in samples) * 1.3
        ax.set_ylim(bottom=0, top=top)
        for ev in rec.get("marks", []):
            if ev["t"] <= t[-1]:
                ax.axvline(ev["t"], color="grey", lw=0.6, alpha=0.6)
                ax.text(ev["t"], top * 0.98, " " + ev["label"], rotation=90, fontsize=7,
                        va="top", ha="left", color="dimgray")
        ax.set_xlabel("time (s)")
        ax.set_ylabel("current (A)")
        ax.set_title(title or "circuit %s: current drawn at each charger (largest phase) and the circuit sum "
                     "per grid phase" % cname)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=7, ncol=2)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        sys.exit(__doc__)
    with open(argv[0]) as f:
        rec = json.load(f)
    print(plot(rec, argv[1]))


if __name__ == "__main__":
    main()
