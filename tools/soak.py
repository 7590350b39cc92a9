#!/usr/bin/env python3
"""`make soak` (issue 15): the firmware under long abuse. Four legs, each counting from real runs:

- core:     random episodes of the charging core (tools/soak_core.py) with every design.md §4
            invariant checked each tick, a share of them on the 32-bit MicroPython binary;
- fuzz:     mutated `limit` / `cmd` / `config` messages against a live tools/sim-charger over a real
            mosquitto, with a shadow model of what the contract says must be applied, compared at
            every `get` (tools/soak_live.py);
- powercut: SIGKILLs of the sim-charger supervisor at random moments of random sessions;
- flaps:    the broker stopped, started, cut and blackholed while limits flow; each lease's
            expiry measured on the charger's own clock;
- ocpp:     mutated OCPP-J frames and CALLs from a real central system to a live sim-charger in
            OCPP mode, each answer and the configuration checked against a shadow (tools/soak_ocpp.py).

SOAK_SCALE (default 1: about an hour on 2 cores) scales every count; SOAK_SEED the seeds;
SOAK_LEGS (default core,fuzz,powercut,ocpp,flaps) picks legs. Writes bench/soak.json (SOAK_OUT: another
file) and prints a table; a failure writes its seed and the shortest reproducing
sequence found to bench/soak-failures/ and the exit status is 1.
"""

import json
import multiprocessing
import multiprocessing.pool
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "tools"), os.path.join(ROOT, "host_tests"), ROOT]

OUT = os.environ.get("SOAK_OUT") or os.path.join(ROOT, "bench", "soak.json")
FAIL_DIR = os.path.join(ROOT, "bench", "soak-failures")
MP32_FROZEN = os.path.join(ROOT, "build", "mp32", "micropython-frozen")

CORE_STEPS = 10 ** 6  # actions, each followed by its ticks
CORE_ACTIONS = 200  # actions per episode
MP_SHARE = 0.1  # of the core episodes, run on the 32-bit MicroPython binary
FUZZ_MSGS = 10 ** 5
POWERCUTS = 200
FLAP_S = 30 * 60


# ---- failures ------------------------------------------------------------------------------------
def write_failure(leg, name, doc):
    os.makedirs(FAIL_DIR, exist_ok=True)
    path = os.path.join(FAIL_DIR, "%s-%s.json" % (leg, name))
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    return path


def shrink(case, fails):
    """The shortest action list found (removing chunks, then single actions) for which fails(case)
    still holds: a greedy delta debugging, bounded in runs."""
    acts = list(case["actions"])
    budget = 3000
    n = 2
    while len(acts) >= 2 and budget > 0:
        chunk = max(1, len(acts) // n)
        removed = False
        i = 0
        while i < len(acts) and budget > 0:
            cand = acts[:i] + acts[i + chunk:]
            budget -= 1
            if cand and fails(dict(case, actions=cand)):
                acts = cand
                removed = True
            else:
                i += chunk
        if not removed:
            if chunk == 1:
                break
            n = min(len(acts), n * 2)
    return dict(case, actions=acts)


# ---- core leg --------------------------------------------------------------------------------------
def core_py(args):
    import soak_core

    seed, episodes, n_actions = args
    return soak_core.run_many(seed, episodes, n_actions)


def core_mp(seed, episodes, n_actions, binary=MP32_FROZEN):
    env = dict(os.environ, MICROPYPATH=":".join([os.path.join(ROOT, "tools"), os.path.join(ROOT, "host_tests"),
                                                 ".frozen", ROOT]))
    p = subprocess.run([binary, "-X", "heapsize=2M", os.path.join(ROOT, "tools", "soak_core.py"), "run",
                        str(seed), str(episodes), str(n_actions)], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=7200)
    for line in p.stdout.splitlines():
        if line.startswith("@@SOAK "):
            return json.loads(line[7:])
    raise RuntimeError("MicroPython core soak gave no result: rc %d %s %s" % (p.returncode, p.stdout[-800:],
                                                                             p.stderr[-800:]))


def core_fails(case):
    import soak_core

    return soak_core.run_case(case)[2] is not None


def core_leg(scale, seed, pool, mp=True):
    import soak_core  # (fails early when the rig cannot be imported)

    total = max(1, int(CORE_STEPS * scale)) // CORE_ACTIONS or 1
    n_mp = int(total * MP_SHARE) if mp and os.path.exists(MP32_FROZEN) else 0
    n_py = total - n_mp
    t0 = time.time()
    chunks = []
    per = max(1, n_py // 8)
    s = seed
    left = n_py
    while left > 0:
        k = min(per, left)
        chunks.append((s, k, CORE_ACTIONS))
        s += k
        left -= k
    mp_res = None
    if n_mp:
        mp_pool = multiprocessing.pool.ThreadPool(1)
        mp_res = mp_pool.apply_async(core_mp, (s, n_mp, CORE_ACTIONS))
    results = pool.map(core_py, chunks) if pool is not None else [core_py(c) for c in chunks]
    if mp_res is not None:
        results.append(mp_res.get())
    out = {"core_steps": 0, "core_ticks": 0, "core_violations": 0, "core_steps_mp32": 0}
    failures = []
    for r in results:
        out["core_steps"] += r["steps"]
        out["core_ticks"] += r["ticks"]
        out["core_violations"] += r["violations"]
        if r.get("runtime") == "micropython":
            out["core_steps_mp32"] += r["steps"]
        failures += r["failures"]
    out["core_virtual_h"] = round(out["core_ticks"] * 10 / 3.6e6, 1)  # at least: jumps add more
    for case in failures[:3]:
        small = shrink(case, core_fails) if core_fails(case) else case
        small["violation"] = soak_core.run_case(small)[2] or case.get("violation")
        small["reproduces_on_cpython"] = core_fails(case)
        path = write_failure("core", "seed%d" % case["seed"], small)
        print("soak: core violation (seed %d): %s -> %s (%d actions)" % (case["seed"], case["violation"], path,
                                                                        len(small["actions"])))
    out["core_s"] = round(time.time() - t0, 1)
    return out


# ---- the live legs run in tools/soak_live.py ---------------------------------------------------------
def live(leg, scale, seed):
    import soak_live

    t0 = time.time()
    out = soak_live.LEGS[leg](scale, seed)
    out[leg + "_s"] = round(time.time() - t0, 1)
    return out


FIGURES = [
    ("core_steps", "random actions of the charging core (each followed by its ticks)"),
    ("core_steps_mp32", "of them on the 32-bit MicroPython binary"),
    ("core_ticks", "ticks, every invariant checked after each"),
    ("core_violations", "episodes that broke an invariant"),
    ("fuzz_msgs", "mutated messages to a live sim-charger"),
    ("fuzz_gets", "get commands comparing the shadow model"),
    ("fuzz_crashes", "firmware crashes, restarts or swallowed exceptions"),
    ("fuzz_wrong_applies", "gets where the charger differed from the shadow"),
    ("fuzz_missing_replies", "commands with an id that got no reply (or two)"),
    ("fuzz_ocpp_msgs", "mutated OCPP frames and CALLs to a live sim-charger"),
    ("fuzz_ocpp_config_checks", "GetConfiguration compared with the shadow"),
    ("fuzz_ocpp_crashes", "restarts, tracebacks, caught exceptions, InternalError answers"),
    ("fuzz_ocpp_wrong_applies", "answers of the wrong kind or code, configuration values that differ"),
    ("fuzz_ocpp_missing_replies", "frames owed an answer that got none (or two)"),
    ("fuzz_ocpp_reconnects", "connections the charger dropped on its own (reported, not a failure)"),
    ("powercuts", "SIGKILLs of the sim-charger supervisor"),
    ("sessions_seen", "charging sessions observed"),
    ("sessions_lost", "sessions never delivered"),
    ("sessions_duplicated", "records after their ack, or acked twice"),
    ("energy_decreases", "e_wh lower than one published before"),
    ("boot_failures", "boots without online + boot event in time"),
    ("broker_flaps", "broker stops, cuts and blackholes"),
    ("leases_checked", "leases whose expiry was measured"),
    ("leases_exact", "of them with the lease's start known to the ms"),
    ("leases_overrun_ms_max", "worst expiry after lease end (charger clock; exact leases; null: none)"),
    ("leases_overrun_ms_bound", "upper bound over all leases (start known between two gets)"),
    ("leases_late", "expiries later than one slow tick + one fast tick"),
]
FAIL_KEYS = ("core_violations", "fuzz_crashes", "fuzz_wrong_applies", "fuzz_missing_replies", "fuzz_ocpp_crashes",
             "fuzz_ocpp_wrong_applies", "fuzz_ocpp_missing_replies", "sessions_lost",
             "sessions_duplicated", "energy_decreases", "boot_failures", "leases_late", "leases_early", "flaps_errors",
            "boot_counter_errors")


def main():
    scale = float(os.environ.get("SOAK_SCALE", "1"))
    seed = int(os.environ.get("SOAK_SEED", "1"))
    legs = os.environ.get("SOAK_LEGS", "core,fuzz,powercut,ocpp,flaps").split(",")
    t0 = time.time()
    if os.path.isdir(FAIL_DIR):
        for n in os.listdir(FAIL_DIR):
            if n.endswith(".json"):
                os.remove(os.path.join(FAIL_DIR, n))
    res = {"scale": scale, "seed": seed, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    # the live legs are mostly waiting on processes: three of them at a time beside the core leg's
    # workers (flaps, the longest but one, starts when powercut or ocpp is done)
    live_pool = multiprocessing.pool.ThreadPool(3)
    pending = {}
    for leg in ("fuzz", "powercut", "ocpp", "flaps"):
        if leg in legs:
            pending[leg] = live_pool.apply_async(live, (leg, scale, seed))
    if "core" in legs:
        with multiprocessing.Pool(2) as pool:
            res.update(core_leg(scale, seed, pool))
    errors = []
    for leg, r in pending.items():
        try:
            res.update(r.get())
        except Exception as e:  # noqa: BLE001  a leg that could not run is a failure, not a silence
            errors.append("%s: %r" % (leg, e))
            write_failure(leg, "error", {"seed": seed, "error": repr(e)})
    res["errors"] = errors
    res["wall_s"] = round(time.time() - t0, 1)
    res["cpus"] = os.cpu_count()
    if os.path.isdir(FAIL_DIR) and not os.listdir(FAIL_DIR):
        os.rmdir(FAIL_DIR)  # a clean run leaves no folder (one with failures is worth committing)
    failed = [k for k in FAIL_KEYS if res.get(k)] + (["errors"] if errors else [])
    res["failed"] = failed
    with open(OUT, "w") as f:
        json.dump(res, f, indent=1, sort_keys=True)
        f.write("\n")
    print("\nmake soak, scale %g, seed %d, %.0f s wall on %d cores" % (scale, seed, res["wall_s"], res["cpus"]))
    print("| figure | value | what |")
    print("|---|---|---|")
    for k, what in FIGURES:
        if k in res:
            print("| %s | %s | %s |" % (k, res[k], what))
    for e in errors:
        print("soak: leg error: " + e)
    if failed:
        print("soak: FAILED: %s (see bench/soak-failures/)" % ", ".join(failed))
        return 1
    print("soak: all failure columns are 0 (%s)" % os.path.relpath(OUT, ROOT))
    return 0


if __name__ == "__main__":

    sys.exit(main())
