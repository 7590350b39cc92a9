# The physics behind the simulated board: control pilot circuit and vehicle, proximity resistor,
# contactor, RCD module, NTC, grid and load, and a register-level ATM90E32 model.
#
# Time: the plant advances lazily from the board clock. Every fake peripheral read calls sync_now();
# timed things (vehicle reactions, contactor actuation, RCD trip) are events at absolute plant times,
# and energy/temperature are integrated when someone looks at them. The CP read path (read_cp) is
# integer-only and allocates nothing, so drivers can be heap-lock tested on the sim.
#
# The circuit values come from board/circuit.py (the reference board): the ADC sees what the real
# divider would show.
import math

from board import circuit
from board.sim.meter_model import Atm90e32Model
from board.sim.plant_io import CABLE_OHMS, PlantIO
from firmware.iec61851 import da_for_duty_pm
from firmware.ticks import ticks_diff

__all__ = ["Plant", "Vehicle", "CABLE_OHMS", "FAULT_KINDS"]

FAULT_KINDS = ("diode", "cp_short", "vent", "rcd_ac", "rcd_dc", "weld", "stuck_open", "overtemp", "rcd_selftest")

R_VEHICLE_B = 2740  # S1 side: always present when plugged
R_VEHICLE_C = 1300  # S2
R_VEHICLE_D = 270  # S2 with ventilation
DIODE_DROP_V = 0.7

_NEVER = 1 << 52
_MODE_PWM = 0
_MODE_HIGH = 1
_MODE_LOW = 2
_MODE_OFF = 3  # PWM deinit: output stage floats -> treated as 0 V drive


class Vehicle:
    def __init__(self):
        self.plugged = False
        self.cable_a = None
        self.phases = 3
        self.max_a = 32.0
        self.charge = True
        self.draw_override = None
        self.sleepy = False
        self.s2 = False
        self.cur_a = 0.0  # current the vehicle is set to draw (follows the PWM with delays)
        self.awake = True
        self.wake_stage = 0  # sleepy: 0 no PWM seen, 1 PWM seen, 2 PWM gone (since wake_t)
        self.wake_t = 0


class Plant(PlantIO):
    def __init__(self, clock=None, seed=1, adc_conv_us=23, follow_ms=3000, rise_ms=1000, s2_delay_ms=500,
                 stop_ms=1000, charge_off_ms=100, wake_ms=3000, contactor_close_ms=30, contactor_open_ms=20,
                 rcd_trip_ms=25, rcd_release_ms=15, cp_noise_mv=20, ambient_c=25.0, temp_rise_c=25.0,
                 temp_tau_s=120.0, grid_v=(230.4, 229.2, 231.1), phase_relay=True):
        self.clock = None
        self._ticks = None
        self.t_ms = 0  # plant time (monotonic, not wrapped)
        self._last_now = 0
        self._adc_us = 0
        self.adc_conv_us = adc_conv_us  # each ADC read advances the sample instant by this much
        self.follow_ms = follow_ms
        self.rise_ms = rise_ms
        self.s2_delay_ms = s2_delay_ms
        self.stop_ms = stop_ms
        self.charge_off_ms = charge_off_ms
        self.wake_ms = wake_ms
        self.contactor_close_ms = contactor_close_ms
        self.contactor_open_ms = contactor_open_ms
        self.rcd_trip_ms = rcd_trip_ms
        self.rcd_release_ms = rcd_release_ms
        # noise at the ADC node equivalent to +-cp_noise_mv on the CP line
        self.cp_noise_uv = max(1, circuit.cp_adc_uv(cp_noise_mv) - circuit.cp_adc_uv(0))
        self.ambient_c = ambient_c
        self.temp_rise_c = temp_rise_c
        self.temp_tau_s = temp_tau_s
        self.grid_v = list(grid_v)
        self.grid_on = True
        self.has_phase_relay = phase_relay
        self._rng = seed % 65537 or 1
        self.ev = Vehicle()
        self.faults = {}
        for k in FAULT_KINDS:
            self.faults[k] = False
        # EVSE outputs
        self.pwm_freq = 1000
        self.pwm_duty = 65535
        self.pwm_active = False
        self._cp_mode = _MODE_OFF
        self._pwm_hi_us = 0
        self._cp_hi_uv = 0
        self._cp_lo_uv = 0
        self.cp_high_v = 0.0
        self.cp_low_v = 0.0
        self.duty_pct = 0.0
        # contactor
        self.contactor_cmd = False
        self.contactor_closed = False
        self.phase_cmd = True
        self.phase_closed = True
        # RCD module
        self.rcd_test_in = False
        self.rcd_test_trip = False
        self.rcd_test_stuck = False  # test hook: the test input is stuck asserted
        # temperature
        self.temp_c = ambient_c
        # button / rfid
        self.button_down = False
        self._tag = None
        # load
        self.draw_a = [0.0, 0.0, 0.0]
        self.energy_wh = 0.0  # true energy delivered (for tests)
        self._int_t = 0
        self.meter = Atm90e32Model(circuit.METER_UGAIN, circuit.METER_IGAIN)
        self._meter_cs = 1
        # timers: name -> due plant time
        self._due = {}
        self._next = _NEVER
        self._pending_s2 = None
        self.changes = 0  # bumped whenever ev_state() would change (for publishers)
        self._update_cp()
        if clock is not None:
            self.attach_clock(clock)

    # -- time ------------------------------------------------------------------------------------
    def attach_clock(self, clock):
        self.clock = clock
        self._ticks = clock.ticks_ms
        self._last_now = clock.ticks_ms()

    def now_ms(self):
        return self._ticks() if self._ticks is not None else self._last_now

    def sync_now(self):
        if self._ticks is not None:
            self.sync(self._ticks())

    def update(self):
        """Catch up with the clock and integrate energy / temperature (slow path, for readers)."""
        self.sync_now()
        self._integrate()
        self._update_draw()

    def sync(self, now_ms):
        d = ticks_diff(now_ms, self._last_now)
        if d <= 0:
            return
        self._last_now = now_ms
        t = self.t_ms + d
        # run due events at their own times, integrating up to each
        while self._next <= t:
            self._integrate(self._next)
            self.t_ms = self._next
            self._run_events()
        self.t_ms = t
        us = t * 1000
        if self._adc_us < us:
            self._adc_us = us

    def _at(self, name, delay_ms):
        self._due[name] = self.t_ms + delay_ms
        self._renext()

    def _cancel(self, name):
        if name in self._due:
            del self._due[name]
            self._renext()

    def _renext(self):
        n = _NEVER
        for v in self._due.values():
            if v < n:
                n = v
        self._next = n

    def _run_events(self):
        now = self.t_ms
        due = [k for k in self._due if self._due[k] <= now]
        for k in due:
            del self._due[k]
        self._renext()
        for k in due:
            self._event(k)
        self._vehicle_eval()

    def _event(self, name):
        ev = self.ev
        if name == "s2":
            ev.s2 = self._pending_s2
            self._pending_s2 = None
            if not ev.s2:
                ev.cur_a = 0.0
            self._update_cp()
        elif name == "follow":
            ev.cur_a = self._target_a()
        elif name == "contactor":
            self._set_contacts(self.contactor_cmd)
        elif name == "phase":
            self.phase_closed = self.phase_cmd
        elif name == "rcd_trip":
            self.rcd_test_trip = True
        elif name == "rcd_release":
            self.rcd_test_trip = False
        elif name == "button_up":
            self.button_down = False
        self.changes += 1

    # -- integration (slow path) ------------------------------------------------------------------
    def _integrate(self, t=None):
        if t is None:
            t = self.t_ms
        dt = t - self._int_t
        if dt <= 0:
            return
        self._int_t = t
        v = self._volts()
        p = 0.0
        imax = 0.0
        for ph in range(3):
            p += v[ph] * self.draw_a[ph]
            if self.draw_a[ph] > imax:
                imax = self.draw_a[ph]
        wh = p * dt / 3600000.0
        self.energy_wh += wh
        self.meter.add_energy_wh(wh)
        t_ss = self.ambient_c + self.temp_rise_c * (imax / 32.0) ** 2
        self.temp_c = t_ss + (self.temp_c - t_ss) * math.exp(-dt / 1000.0 / self.temp_tau_s)

    def _volts(self):
        if not self.grid_on:
            return [0.0, 0.0, 0.0]
        return [self.grid_v[ph] - 0.05 * self.draw_a[ph] for ph in range(3)]

    def _noise(self, amp):
        # the ZX81 generator: every product stays below 2**23, a small int on a 32-bit port too, so
        # the simulated ADC allocates nothing there (an ESP32-sized port ends small ints at 2**30)
        self._rng = (self._rng * 75 + 74) % 65537
        return self._rng % (2 * amp + 1) - amp

    # -- control pilot ------------------------------------------------------------------------------
    def pwm_write(self, pin, freq, duty, active):
        if pin != circuit.PIN_CP_PWM:
            return
        self.sync_now()
        self.pwm_freq = freq
        self.pwm_duty = duty
        self.pwm_active = active
        self._update_cp()
        self._vehicle_eval()

    def _update_cp(self):
        ev = self.ev
        if not self.pwm_active:
            mode = _MODE_OFF
        elif self.pwm_duty >= 65535:
            mode = _MODE_HIGH
        elif self.pwm_duty == 0:
            mode = _MODE_LOW
        else:
            mode = _MODE_PWM
        self._cp_mode = mode
        self._pwm_hi_us = self.pwm_duty * 1000000 // self.pwm_freq // 65536 if mode == _MODE_PWM else 0
        self._period_us = 1000000 // self.pwm_freq if self.pwm_freq > 0 else 1000
        pos = circuit.CP_V_POS_MV / 1000.0
        neg = circuit.CP_V_NEG_MV / 1000.0
        if ev.plugged and self.faults["cp_short"]:
            hi = lo = 0.0
        elif ev.plugged:
            r = float(R_VEHICLE_B)
            if ev.s2:
                rs = R_VEHICLE_D if self.faults["vent"] else R_VEHICLE_C
                r = r * rs / (r + rs)
            k = r / (r + circuit.CP_R_OUT)
            if self.faults["diode"]:
                hi = pos * k
                lo = neg * k
            else:
                hi = DIODE_DROP_V + (pos - DIODE_DROP_V) * k
                lo = neg
        else:
            hi = pos
            lo = neg
        if mode == _MODE_HIGH:
            lo = hi
        elif mode == _MODE_LOW:
            hi = lo
        elif mode == _MODE_OFF:
            hi = lo = 0.0
        self.cp_high_v = hi
        self.cp_low_v = lo
        self.duty_pct = {_MODE_PWM: self.pwm_duty * 100.0 / 65535, _MODE_HIGH: 100.0}.get(mode, 0.0)
        self._cp_hi_uv = circuit.cp_adc_uv(int(hi * 1000))
        self._cp_lo_uv = circuit.cp_adc_uv(int(lo * 1000))
        self.changes += 1

    def read_cp(self):
        """One ADC conversion of the CP sense node (uV). Integer-only, allocation-free."""
        if self._ticks is not None:
            self.sync(self._ticks())
        t = self._adc_us + self.adc_conv_us
        self._adc_us = t
        if self._cp_mode == _MODE_PWM and t % self._period_us >= self._pwm_hi_us:
            v = self._cp_lo_uv
        else:
            v = self._cp_hi_uv
        return v + self._noise(self.cp_noise_uv)

    def cp_plateau_uv(self, high):
        """The high (or low) plateau at the CP sense node now (uV), without noise."""
        self.sync_now()
        return self._cp_hi_uv if high else self._cp_lo_uv

    def offered_a(self):
        if self._cp_mode != _MODE_PWM:
            return 0.0
        return da_for_duty_pm((self.pwm_duty * 1000 + 32767) // 65535) / 10.0

    # -- vehicle ------------------------------------------------------------------------------------
    def _target_a(self):
        ev = self.ev
        if not ev.s2 or not ev.charge:
            return 0.0
        return min(self.offered_a(), ev.max_a)

    def _vehicle_eval(self):
        ev = self.ev
        pwm = self._cp_mode == _MODE_PWM and ev.plugged and not self.faults["cp_short"]
        # sleeping vehicle: wakes on PWM -> no PWM for >= wake_ms -> PWM again
        if ev.plugged and not ev.awake:
            if ev.wake_stage == 0 and pwm:
                ev.wake_stage = 1
            elif ev.wake_stage == 1 and not pwm:
                ev.wake_stage = 2
                ev.wake_t = self.t_ms
            elif ev.wake_stage == 2 and pwm:
                if self.t_ms - ev.wake_t >= self.wake_ms:
                    ev.awake = True
                else:
                    ev.wake_stage = 1
        # a vehicle told to ignore the pilot (`draw` op) also ignores the PWM going away: it keeps S2
        want = ev.plugged and ev.charge and ev.awake and (pwm or (ev.draw_override is not None and ev.s2))
        target = want
        if self._pending_s2 is not None and self._pending_s2 != target:
            self._pending_s2 = None
            self._cancel("s2")
        if target != ev.s2 and self._pending_s2 is None:
            self._pending_s2 = target
            if target:
                self._at("s2", self.s2_delay_ms)
            elif not ev.plugged:
                ev.s2 = False
                self._pending_s2 = None
                self._update_cp()
            elif not ev.charge:
                ev.cur_a = 0.0
                self._at("s2", self.charge_off_ms)
            else:
                self._at("s2", self.stop_ms)
        # current setpoint follows the PWM
        tgt = self._target_a()
        if not ev.s2:
            ev.cur_a = 0.0
            self._cancel("follow")
        elif tgt == ev.cur_a:
            self._cancel("follow")
        elif "follow" not in self._due:
            self._at("follow", self.follow_ms if tgt < ev.cur_a else self.rise_ms)
        self._update_draw()

    def _update_draw(self):
        ev = self.ev
        live = self.contactor_closed and self.grid_on and ev.plugged
        if ev.draw_override is not None:
            a = ev.draw_override
        else:
            a = ev.cur_a if ev.s2 else 0.0
        new = [0.0, 0.0, 0.0]
        if live and a > 0:
            for ph in range(3):
                if ph > 0 and (ev.phases == 1 or not self.phase_closed):
                    continue
                new[ph] = a
        if new != self.draw_a:
            self._integrate()
            self.draw_a = new
            self.changes += 1
        for ph in range(3):
            self.meter.v[ph] = self._volts()[ph]
            self.meter.i[ph] = self.draw_a[ph]

    # -- contactor ----------------------------------------------------------------------------------
    def _set_contacts(self, closed):
        if closed and self.faults["stuck_open"]:
            closed = False
        if not closed and self.faults["weld"] and self.contactor_closed:
            closed = True
        if closed != self.contactor_closed:
            self.contactor_closed = closed
            self._update_draw()

    # -- simulator control (contract: sim/<id>/ev), in board/sim/ev_ops.py ---------------------
    def ev_op(self, doc):
        """Apply one `sim/<id>/ev` op. Returns None, or an error string for a bad op (never raises)."""
        from board.sim import ev_ops

        return ev_ops.apply(self, doc)

    def ev_state(self):
        """The vehicle's view for `sim/<id>/ev/state`."""
        self.sync_now()
        ev = self.ev
        return {
            "plugged": ev.plugged,
            "s2": ev.s2,
            "cp_high_v": round(self.cp_high_v, 2),
            "cp_low_v": round(self.cp_low_v, 2),
            "duty": round(self.duty_pct, 1),
            "draw_a": [round(a, 1) for a in self.draw_a],
            "contactor_out": self.contactor_closed,
        }

    def plug(self, cable_a, phases, max_a, charge, sleepy):
        """A vehicle plugged in (cable_a None: on the board's tethered cable)."""
        ev = self.ev
        if ev.plugged:
            self.unplug()
        ev.plugged = True
        ev.cable_a = cable_a
        ev.phases = phases
        ev.max_a = max_a
        ev.charge = charge
        ev.sleepy = sleepy
        ev.awake = not sleepy
        ev.wake_stage = 0
        ev.s2 = False
        ev.cur_a = 0.0
        ev.draw_override = None

    def set_charge(self, on):
        self.ev.charge = on  # S2 when it sees a PWM

    def set_draw(self, a):
        self.ev.draw_override = a  # None: follows the PWM

    def set_fault(self, kind, on):
        self._integrate()
        self.faults[kind] = on
        if kind in ("weld", "stuck_open"):
            self._set_contacts(self.contactor_cmd if not on or kind == "stuck_open" else self.contactor_closed)
        if kind == "rcd_selftest":
            self._rcd_test_eval()

    def unplug(self):
        ev = self.ev
        ev.plugged = False
        ev.s2 = False
        ev.cur_a = 0.0
        ev.draw_override = None
        self._pending_s2 = None
        self._cancel("s2")
        self._cancel("follow")

    def refresh(self):
        """Re-evaluate the circuit and the vehicle after an input changed (used by ev_ops)."""
        self._update_cp()
        self._vehicle_eval()
        self.changes += 1
