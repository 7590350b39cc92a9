# The charging core on the simulated board in virtual time (CPython and MicroPython): the
# simulator's own vehicle, contactor, RCD module and cable (board/sim/plant.py) behind the real
# board-support layer and drivers, without the app around the core. Each step: the board reads the
# plant (the vehicle reacted to the previous tick's outputs), the core ticks, its outputs go to the
# board. The pilot's ADC burst is replaced by the plant's plateau voltages (board/sim/direct_pilot.py)
# so that property tests can afford millions of ticks; the classification is the driver's.
# Time advances by `dt` ms through ticks_add (wrap-safe).
#
# Injections the vehicle cannot make are explicit: `force_cp` overrides the pilot reading (a letter
# no vehicle shows for long: D, E, F, X), `cable_a` outside 13/20/32/63 overrides the PP reading
# (0 none, -1 invalid), and the slow inputs (`inp.temp_dc`, `inp.meter_ok`) stay as a test sets them.
from board.sim.board import SimBoard
from board.sim.clock import VirtualClock
from board.sim.plant import Plant
from board.sim.plant_io import CABLE_OHMS
from firmware import settings as settings_mod
from firmware.charger import Charger, Inputs
from firmware.ticks import PERIOD, ticks_add, ticks_diff

NEAR_WRAP = PERIOD - 5000

# the vehicle reacts within a tick, as the core's timing tests measure the core and not the vehicle
VEHICLE = {"s2_delay_ms": 0, "charge_off_ms": 0, "stop_ms": 500, "follow_ms": 0, "rise_ms": 0, "wake_ms": 1000,
           "rcd_trip_ms": 100}


class Rig:
    def __init__(self, start=0, hw=32, phases=3, tethered=None, cfg=None):
        s = settings_mod.defaults(hw)
        if cfg:
            s.update(cfg)
        self.settings = s
        self.clock = VirtualClock(start)
        self.plant = Plant(self.clock, **VEHICLE)
        self.board = SimBoard(self.clock, self.plant, tethered_a=tethered, hw_max_a=hw, phases=phases,
                              storage_root="build/tmp/core", direct_pilot=True)  # (the core writes nothing)
        self.ch = Charger(s, hw, phases, tethered)
        self.inp = Inputs()
        self.dt = 10
        self.tethered = tethered
        self.force_cp = None
        self._pp = None  # PP override for readings the cable table has none for
        self._wants = True
        self.sleepy = False
        self.events = []
        self.closed_at = None
        self.opened_at = None

    # ---- the vehicle (the plant's) -----------------------------------------------------------------
    def _op(self, **doc):
        err = self.plant.ev_op(doc)
        assert err is None, err

    def plug(self, cable_a=32, max_a=32):
        if self.tethered is not None:
            cable, self._pp = None, None
        elif cable_a in CABLE_OHMS:
            cable, self._pp = cable_a, None
        else:
            cable, self._pp = 32, cable_a
        self._op(op="plug", cable_a=cable, phases=3, max_a=max_a, charge=self._wants, sleep=self.sleepy)

    def unplug(self):
        self._op(op="unplug")

    def _fault(self, kind, on):
        self._op(op="fault", kind=kind, on=bool(on))

    @property
    def plugged(self):
        return self.plant.ev.plugged

    @property
    def wants(self):
        return self._wants

    @wants.setter
    def wants(self, on):  # S2: the vehicle asks for power when it sees a PWM
        self._wants = on
        self._op(op="charge", on=on)

    @property
    def cable_a(self):
        return self._pp if self._pp is not None else self.plant.ev.cable_a

    @cable_a.setter
    def cable_a(self, a):
        self._pp = a

    @property
    def stop_ms(self):
        return self.plant.stop_ms

    @stop_ms.setter
    def stop_ms(self, ms):  # how long the vehicle takes to open S2 after the PWM went
        self.plant.stop_ms = ms

    @property
    def draw_da(self):
        d = self.plant.ev.draw_override
        return None if d is None else int(d * 10 + 0.5)

    @draw_da.setter
    def draw_da(self, da):  # None: follows the offer; else draws this, ignoring the PWM
        self._op(op="draw", a=None if da is None else da / 10)

    def set_max_a(self, a):
        self.plant.ev.max_a = float(a)
        self.plant.refresh()

    def set_diode_fault(self, on):
        self._fault("diode", on)

    diode_fault = property(lambda self: self.plant.faults["diode"], set_diode_fault)
    weld = property(lambda self: self.plant.faults["weld"], lambda self, on: self._fault("weld", on))
    stuck_open = property(lambda self: self.plant.faults["stuck_open"], lambda self, on: self._fault("stuck_open", on))

    def rcd(self, ac=None, dc=None):
        """The residual-current module's fault lines (as the plant's module asserts them)."""
        if ac is not None:
            self._fault("rcd_ac", ac)
        if dc is not None:
            self._fault("rcd_dc", dc)

    @property
    def selftest_result(self):
        return not self.plant.faults["rcd_selftest"]

    @selftest_result.setter
    def selftest_result(self, ok):  # False: the module does not trip when tested
        self._fault("rcd_selftest", not ok)

    @property
    def selftest_ms(self):
        return self.plant.rcd_trip_ms

    @selftest_ms.setter
    def selftest_ms(self, ms):
        self.plant.rcd_trip_ms = ms

    def set(self, **kw):
        for k in kw:
            self.settings[k] = kw[k]
        self.ch.apply_settings(self.settings)

    # ---- stepping ----------------------------------------------------------------------------------
    @property
    def now(self):
        return self.clock.ticks_ms()

    def _read(self):
        b = self.board
        inp = self.inp
        b.read(inp, self.now)
        b.read_pp(inp)
        if self._pp is not None and self.plugged:
            inp.pp_a = self._pp
        if self.force_cp is not None:
            inp.cp = self.force_cp
        draw = self.plant.draw_a  # a perfect meter
        for k in range(3):
            inp.i_da[k] = int(draw[k] * 10 + 0.5)
        inp.energy_wh = int(self.plant.energy_wh)

    def step(self):
        self._read()
        ch = self.ch
        was = ch.contactor
        ch.tick(self.now, self.inp)
        ch.drive(self.board, self.now)
        if ch.contactor and not was:
            self.closed_at = self.now
        if was and not ch.contactor:
            self.opened_at = self.now
        ev = ch.pop_events()
        if ev:
            self.events.extend(ev)
        self.clock.advance(self.dt)

    def run(self, ms):
        end = ticks_add(self.now, ms)
        while ticks_diff(end, self.now) > 0:
            self.step()

    def run_until(self, pred, max_ms):
        """Step until pred() is true; returns the virtual ms it took, or None."""
        t0 = self.now
        while ticks_diff(self.now, t0) <= max_ms:
            self.step()
            if pred():
                return ticks_diff(self.now, t0) - self.dt
        return None

    def charge(self, max_ms=3000):
        """Plug (if needed) and run until the contactor is closed; returns ms from plug."""
        if not self.plugged:
            self.plug()
        return self.run_until(lambda: self.ch.contactor, max_ms)

    def types(self, typ):
        return [e for e in self.events if e["type"] == typ]


class MemStorage:
    """The storage interface of firmware/storage.py in a dict, for session logs in property tests."""

    def __init__(self):
        self.files = {}

    def write_json(self, name, obj):
        import json

        self.files[name] = json.dumps(obj)

    def read_json(self, name, default=None):
        import json

        s = self.files.get(name)
        return default if s is None else json.loads(s)

    def remove(self, name):
        self.files.pop(name, None)

    def list(self, prefix=""):
        return sorted([n for n in self.files if n.startswith(prefix)])


def apply_command(ch, now, op):
    """One of the app's commands to the core, as the property tests and the soak send them: the tag
    "AA" is the one they list in local_auth_ids, "ZZ" one no setting lists; restart only between
    sessions."""
    if op == "authorize":
        ch.authorize(now, "app:1")
    elif op == "deauthorize":
        ch.deauthorize(now)
    elif op == "stop":
        ch.stop(now)
    elif op == "resume":
        ch.resume(now)
    elif op == "tag_ok":
        ch.present_tag(now, "AA")
    elif op == "tag_bad":
        ch.present_tag(now, "ZZ")
    elif op == "restart" and not ch.session_active:
        ch.end_for_restart(now)
