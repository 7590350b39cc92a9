"""Current allocation per grid phase for one installation: a pure function, no I/O, no clock.

Inputs: the installation (main breaker, circuits with breakers, grid type) and one `ChargerInput`
per charger. Output: one `Grant` per charger, the lease to send now, in grid phases.

The one safety inequality, checked per grid phase for the main breaker and for every circuit:

    sum over its chargers of max(committed_i, grant_i) <= breaker        (when sum committed <= breaker)

`committed_i` is what charger i may draw *now* whatever we send: the lease it still holds, a higher
lease we lowered too recently for the vehicle to have followed, its fallback current when it is
offline (its lease may lapse), and what it measurably draws. Because a lowered grant costs nothing
until it takes effect (max), lowering is sent at once, while a raise only uses headroom left by the
committed currents of the others: lower first, raise later. Offline chargers get no grant; their
committed current is a fixed load.

The target (steady state) is max-min fair among chargers that want current, with the minimum
current rule: a charger gets 0 or at least `min_a`. When not all can get `min_a`, chargers are
admitted in `priority` order (the balancer rotates priorities so that pauses take turns); every
admitted charger gets `min_a` first, then the rest is filled up evenly (water-filling) until a
breaker phase or the charger's own cap binds. All arithmetic is in integer deci-amperes: committed
currents round up, breakers and grants round down, so float sums never creep over a breaker.
"""

from dataclasses import dataclass, field

from .installation import loaded_phases


@dataclass(frozen=True)
class ChargerInput:
    serial: str
    online: bool = True            # follows our leases (online, configured, not standalone)
    wants: bool = False            # a vehicle is asking for current
    phases: int = 3                # phases the contactor switches (what the grant is counted on)
    committed_a: tuple = (0.0, 0.0, 0.0)  # grid phases: what it may draw now, whatever we send
    max_a: float = 32.0            # cap: installation max, cable, vehicle demand estimate
    min_a: float = 6.0
    granted_a: float = 0.0         # the grant last sent (for the raise step)
    priority: float = 0.0          # higher is admitted first when not everyone can get min_a


@dataclass(frozen=True)
class Params:
    raise_step_a: float = 6.0      # a grant rises at most this much per allocation round


@dataclass
class Grant:
    serial: str
    a: list = field(default_factory=lambda: [0.0, 0.0, 0.0])  # per grid phase, to send as `limit`
    value_a: float = 0.0           # the current on its loaded phases (0 = paused)
    target_a: float = 0.0          # where it is heading once raises are possible
    phases: tuple = ()             # loaded grid phases
    waiting: bool = False          # target above grant: raise deferred for headroom or step


def _da_up(a):
    return int(-(-round(a * 1000) // 100))  # ceil to 0.1 A, tolerant of float noise


def _da_down(a):
    return int(round(a * 1000) // 100)


def _nodes(inst):
    """Constraint nodes: ("main", breaker_da, serials) and one per circuit."""
    nodes = [("main", _da_down(inst.main_breaker_a), tuple(inst.chargers))]
    for c in inst.circuits:
        nodes.append((c.name, _da_down(c.breaker_a), c.serials))
    return nodes


def allocate(inst, chargers, params=Params()):
    """Grants for every charger in `chargers` (a list of ChargerInput). See the module doc."""
    by = {c.serial: c for c in chargers}
    nodes = [(name, b, tuple(s for s in serials if s in by)) for name, b, serials in _nodes(inst)]
    node_of = {s: [k for k, n in enumerate(nodes) if s in n[2]] for s in by}
    committed = {s: [_da_up(max(0.0, x)) for x in by[s].committed_a] for s in by}
    # a grant up to this is free (never above what it may draw anyway); beyond it costs headroom
    free = {s: [_da_down(max(0.0, x)) for x in by[s].committed_a] for s in by}
    ph = {s: loaded_phases(inst.grid, inst.chargers[s].phase_rotation, by[s].phases) if s in inst.chargers
          else (0, 1, 2) for s in by}
    min_da = {s: _da_up(by[s].min_a) for s in by}
    cap_da = {s: _da_down(max(0.0, by[s].max_a)) for s in by}

    # ---- target: fixed loads are the offline chargers' committed currents
    room = []
    for _, b, serials in nodes:
        r = [b, b, b]
        for s in serials:
            if not by[s].online:
                for g in range(3):
                    r[g] -= committed[s][g]
        room.append(r)
    wanting = [s for s in by if by[s].online and by[s].wants and cap_da[s] >= min_da[s]]
    wanting.sort(key=lambda s: (-by[s].priority, s))
    level = {}
    for s in wanting:  # admission at min_a, in priority order
        if all(room[k][g] >= min_da[s] for k in node_of[s] for g in ph[s]):
            level[s] = min_da[s]
            for k in node_of[s]:
                for g in ph[s]:
                    room[k][g] -= min_da[s]
    active = set(level)
    while active:  # water-filling
        delta = None
        for k in range(len(nodes)):
            for g in range(3):
                n = sum(1 for s in active if k in node_of[s] and g in ph[s])
                if n:
                    d = room[k][g] // n
                    delta = d if delta is None else min(delta, d)
        for s in active:
            d = cap_da[s] - level[s]
            delta = d if delta is None else min(delta, d)
        if delta:
            for s in active:
                level[s] += delta
                for k in node_of[s]:
                    for g in ph[s]:
                        room[k][g] -= delta
        done = set()
        for s in active:
            if level[s] >= cap_da[s]:
                done.add(s)
            for k in node_of[s]:
                for g in ph[s]:
                    n = sum(1 for t in active if k in node_of[t] and g in ph[t])
                    if room[k][g] < n:
                        done.add(s)
        active -= done
    target = {s: level.get(s, 0) for s in by}

    # ---- transition: a grant above a charger's committed current costs headroom
    head = []
    for _, b, serials in nodes:
        h = [b, b, b]
        for s in serials:
            for g in range(3):
                h[g] -= committed[s][g]
        head.append(h)
    step_da = _da_down(params.raise_step_a)
    value = {}
    raising = []
    for s in by:
        c = by[s]
        if not c.online:
            continue
        t = target[s]
        if all(t <= free[s][g] for g in ph[s]):
            value[s] = t
        else:
            raising.append(s)
    raising.sort(key=lambda s: (-by[s].priority, s))
    for s in raising:
        v = min(target[s], max(min_da[s], _da_down(by[s].granted_a) + step_da))
        for k in node_of[s]:
            for g in ph[s]:
                v = min(v, free[s][g] + max(0, head[k][g]))
        if v < min_da[s]:
            v = 0
        for k in node_of[s]:
            for g in ph[s]:
                head[k][g] -= max(0, v - free[s][g])
        value[s] = v

    out = {}
    for s in by:
        v = value.get(s, 0)
        a = [v / 10 if g in ph[s] else 0.0 for g in range(3)]
        out[s] = Grant(s, a, v / 10, target[s] / 10, ph[s], by[s].online and target[s] > v)
    return out


def node_loads(inst, per_charger):
    """Sum per grid phase for the main breaker and each circuit: {name: [a, a, a]} from {serial: [3]}."""
    out = {}
    for name, _, serials in _nodes(inst):
        tot = [0.0, 0.0, 0.0]
        for s in serials:
            v = per_charger.get(s)
            if v:
                for g in range(3):
                    tot[g] += v[g]
        out[name] = tot
    return out


def breakers(inst):
    out = {"main": inst.main_breaker_a}
    for c in inst.circuits:
        out[c.name] = c.breaker_a
    return out
