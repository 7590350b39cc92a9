# A charger on the simulated board in virtual time: the real app, drivers and plant, no network.
# Used by the scenario tests on both runtimes (hours of charging run in seconds).
from board.sim.board import SimBoard
from board.sim.clock import VirtualClock
from board.sim.plant import Plant
from firmware.app import App
from firmware.ticks import PERIOD, ticks_add, ticks_diff
from mpcompat import TempDir

START_NEAR_WRAP = PERIOD - 30000  # every rig crosses a ticks wrap 30 s in


class Rig:
    def __init__(self, settings=None, start_ms=START_NEAR_WRAP, tag="rig", storage_root=None, reset_cause="power_on"):
        self.root = storage_root or TempDir(tag).path
        self.clock = VirtualClock(start_ms)
        self.plant = Plant(self.clock)
        self.board = SimBoard(self.clock, self.plant, serial="SIM0001", reset_cause=reset_cause,
                              storage_root=self.root)
        self.app = App(self.board, None, first_settings=settings)
        self.ch = self.app.charger

    def now(self):
        return self.clock.ticks_ms()

    def ev(self, doc):
        err = self.plant.ev_op(doc)
        assert err is None, err

    def run(self, ms, until=None):
        """Run the app for ms of virtual time, or until until() is true; returns the ms elapsed."""
        start = self.now()
        end = ticks_add(start, ms)
        while ticks_diff(end, self.now()) > 0:
            wait = self.app.step(self.now())
            if until is not None and until():
                return ticks_diff(self.now(), start)
            self.clock.sleep_ms(wait if wait > 0 else 1)
        return ticks_diff(self.now(), start)

    def plug_and_charge(self, cable_a=32, phases=3, max_a=32):
        self.ev({"op": "plug", "cable_a": cable_a, "phases": phases, "max_a": max_a})
        self.ev({"op": "charge", "on": True})

    def contactor_out(self):
        return self.plant.ev_state()["contactor_out"]
