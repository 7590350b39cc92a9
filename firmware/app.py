# The application: wires a board's drivers, the charging core, the session log and the cloud link.
#
# One control thread runs everything except network I/O (the link has its own thread):
#   fast tick (every FAST_MS): pilot sample -> contactor/RCD check -> Charger.tick -> outputs.
#       Integer-only and allocation-free in steady state.
#   slow work (every SLOW_MS, after a fast tick): PP, RFID, core events, sessions, cloud service;
#       meter and temperature at 1 Hz; energy and session checkpoints.
# The watchdog is fed only while both the fast and the slow work keep running.
from firmware import settings as settings_mod
from firmware.charger import Charger, Inputs
from firmware.iec61851 import PWM_OFF_OPEN_MS
from firmware.sessions import SessionLog
from firmware.storage import Storage
from firmware.ticks import ticks_add, ticks_diff

FW = "0.1.0"
FAST_MS = 10
SLOW_MS = 50
METER_MS = 1000
TEMP_MS = 1000
CHECKPOINT_MS = 15000  # session checkpoint while charging: a power cut loses at most this much energy
ENERGY_STEP_WH = 10  # persist the lifetime counter when it grew by this much (or at a checkpoint)
WDT_SLOW_STALL_MS = 5000
# a commanded restart waits for the contactor to open: the core opens it at the latest
# PWM_OFF_OPEN_MS after removing the PWM, so a vehicle that holds on is not cut by the reset itself
RESTART_GRACE_MS = PWM_OFF_OPEN_MS + 1000


def _log_exception(e):
    import sys

    if hasattr(sys, "print_exception"):
        sys.print_exception(e)  # MicroPython
    else:
        import traceback

        traceback.print_exception(e)


class App:
    def __init__(self, board, link=None, serial=None, prefix="evse", first_settings=None):
        self.board = board
        self.link = link
        self.serial = serial or board.serial
        self.prefix = prefix
        self.fw = FW
        self.store = Storage(board.storage_root)
        now = board.ticks_ms()
        self.boot_ms = now

        # Boot counter and a pending restart command id, kept in flash.
        rec = self.store.read_json("boot.json", None) or {}
        self.boot = int(rec.get("boot", 0)) + 1
        self.boot_cmd_id = rec.get("restart_cmd_id")
        self.store.write_json("boot.json", {"boot": self.boot, "restart_cmd_id": None})
        self.reset_cause = board.reset_cause()

        # Settings: flash, else the first-boot document, else defaults.
        hw = board.hw_max_a
        stored = self.store.read_json("settings.json", None)
        if stored is None:
            s = settings_mod.defaults(hw)
            if first_settings:
                s = settings_mod.merged(s, first_settings, hw)
            self.store.write_json("settings.json", s)
        else:
            s = settings_mod.load(stored, hw)
        self.settings = s

        # Lifetime energy: never below what was persisted (the chip's registers start at 0).
        e = self.store.read_json("energy.json", None) or {}
        self.energy_wh_persisted = int(e.get("wh", 0))
        board.meter.set_energy_wh(self.energy_wh_persisted)
        self.meter = board.meter
        try:
            board.meter.begin()
        except Exception:  # a dead chip is a `meter` fault, reported by read(); never a crash
            pass

        self.sessions = SessionLog(self.store, self.serial, self.boot)
        self.sessions.recover(self.energy_wh_persisted, self.ts(now))

        self.charger = Charger(s, hw, board.phases, board.tethered_a)
        self.inp = Inputs()
        self.inp.energy_wh = self.energy_wh_persisted
        self.pp_a = None
        self._tethered = board.tethered_a
        self.temp_c = None
        self.contactor_closed = False

        self._next_fast = now
        self._last_slow = now
        self._last_meter = ticks_add(now, -METER_MS)
        self._meter_con = False
        self._last_temp = ticks_add(now, -TEMP_MS)
        self._last_checkpoint = now
        self._selftest_running = False
        self._offered_da = -1  # the current the PWM was last set for
        self._restart_at = None
        self.hooks = []  # callables(now_ms) run with the slow work (the simulator's vehicle link)
        self.stopping = False
        self.slow_errors = 0  # exceptions caught in the slow work
        # longest gap between two fast ticks, for tests and benchmarks
        self.max_gap_ms = 0
        self._last_fast = now

        self.cloud = None
        if link is not None:
            from firmware.cloud import Cloud

            self.cloud = Cloud(self, link)

    # ---- time -------------------------------------------------------------------------------
    def ts(self, now_ms=None):
        f = getattr(self.board, "unix_time", None)
        return f() if f else None

    def up_ms(self, now_ms):
        return ticks_diff(now_ms, self.boot_ms)

    # ---- fast path ----------------------------------------------------------------------------
    def fast_tick(self, now):
        b = self.board
        inp = self.inp
        ch = self.charger
        gap = ticks_diff(now, self._last_fast)
        if gap > self.max_gap_ms:
            self.max_gap_ms = gap
        self._last_fast = now

        pilot = b.pilot
        pilot.sample()
        inp.cp = pilot.state
        inp.diode_ok = pilot.diode_ok
        con = b.contactor
        con.update(now)
        inp.contactor_closed = con.closed
        inp.contactor_fault = con.fault
        self.contactor_closed = con.closed
        rcd = b.rcd
        rcd.poll(now)
        inp.rcd_ac = rcd.trip_ac
        inp.rcd_dc = rcd.trip_dc
        if self._selftest_running:
            r = rcd.selftest_poll(now)
            if r is not None:
                inp.rcd_selftest = r
                self._selftest_running = False

        ch.tick(now, inp)

        mode = ch.pilot_mode
        if mode == "pwm":
            if pilot.mode != "pwm" or self._offered_da != ch.offered_da:
                pilot.set_current_da(ch.offered_da)
                self._offered_da = ch.offered_da
        elif mode == "low":
            if pilot.mode != "low":
                pilot.set_low()
        elif pilot.mode != "high":
            pilot.set_high()
        if ch.phases != con.phases and not con.commanded:
            con.set_phases(ch.phases)  # the phase relay moves only while the contactor is open
        if ch.contactor != con.commanded:
            con.set(ch.contactor, now)
        if ch.selftest_req and not self._selftest_running:
            inp.rcd_selftest = None
            rcd.selftest_start(now)
            self._selftest_running = True

    # ---- slow path ----------------------------------------------------------------------------
    def slow_work(self, now):
        b = self.board
        inp = self.inp
        ch = self.charger
        tethered = b.tethered_a
        if tethered != self._tethered:  # fixed on a real board; the simulator's vehicle may bring its own
            self._tethered = tethered
            ch.set_tethered(tethered)
        if tethered is not None:
            self.pp_a = None  # contract: null for a tethered cable
        elif b.pp is not None:
            inp.pp_a = b.pp.read()
            self.pp_a = inp.pp_a if inp.pp_a > 0 else None
        if ticks_diff(now, self._last_temp) >= TEMP_MS:
            self._last_temp = now
            inp.temp_dc = b.temp.read()
            self.temp_c = None if inp.temp_dc is None else inp.temp_dc / 10
        # 1 Hz, and at once when the contactor changed, so that the state published for that change
        # shows the current that really flows (0 A once open), not the last reading
        if ticks_diff(now, self._last_meter) >= METER_MS or self.contactor_closed != self._meter_con:
            self._last_meter = now
            self._meter_con = self.contactor_closed
            self._read_meter(now)
        if b.rfid is not None:
            uid = b.rfid.poll()
            if uid:
                ch.present_tag(now, uid)
        self._drain_events(now)
        if self.sessions.current is not None and ticks_diff(now, self._last_checkpoint) >= CHECKPOINT_MS:
            self._checkpoint(now)
        if self.cloud is not None:
            self.cloud.service(now)
        for h in self.hooks:
            h(now)
        if self._restart_at is not None:
            self._continue_restart(now)
        self._last_slow = now

    def _read_meter(self, now):
        m = self.meter
        m.read(now)
        inp = self.inp
        inp.meter_ok = m.ok
        if m.ok:
            for i in range(3):
                inp.i_da[i] = m.i_da[i]
            if m.energy_wh > inp.energy_wh:
                inp.energy_wh = m.energy_wh
            if inp.energy_wh - self.energy_wh_persisted >= ENERGY_STEP_WH and self.sessions.current is None:
                self._persist_energy()

    def _persist_energy(self):
        wh = self.inp.energy_wh
        if wh > self.energy_wh_persisted:
            self.store.write_json("energy.json", {"wh": wh})
            self.energy_wh_persisted = wh

    def _checkpoint(self, now):
        self._last_checkpoint = now
        self._persist_energy()
        self.sessions.checkpoint(self.energy_wh_persisted, self.ts(now))

    def _drain_events(self, now):
        events = self.charger.pop_events()
        if not events:
            return
        for ev in events:
            t = ev.get("type")
            if t == "session_start":
                self._persist_energy()
                sid = self.sessions.open(ev.get("auth_id"), self.energy_wh_persisted, self.ts(now))
                self._last_checkpoint = now
                self.emit("session_started", {"session_id": sid})
            elif t == "session_end":
                self._persist_energy()
                rec = self.sessions.close(ev.get("reason"), self.energy_wh_persisted, self.ts(now))
                if rec is not None:
                    self.emit("session_ended", {"session_id": rec["id"]})
                    if self.cloud is not None:
                        self.cloud.send_session(rec)
            else:
                fields = {}
                for k in ev:
                    if k != "type":
                        fields[k] = ev[k]
                self.emit(t, fields)

    def emit(self, etype, fields):
        if self.cloud is not None:
            self.cloud.emit_event(etype, fields)

    # ---- commands from the cloud ----------------------------------------------------------------
    def apply_settings(self, doc):
        try:
            new = settings_mod.merged(self.settings, doc, self.board.hw_max_a)
        except settings_mod.SettingsError as e:
            return (e.code, e.detail)
        if new != self.settings:  # the retained `config` comes back at every connect: no flash write
            self.store.write_json("settings.json", new)
        self.settings = new
        self.charger.apply_settings(new)
        return None

    def request_restart(self, cmd_id):
        """Stop a running session cleanly, persist everything, then reset once the reply is out."""
        now = self.board.ticks_ms()
        self.charger.end_for_restart(now)
        self._drain_events(now)
        self._persist_energy()
        self.store.write_json("boot.json", {"boot": self.boot, "restart_cmd_id": cmd_id})
        self._restart_at = now

    def _continue_restart(self, now):
        waited = ticks_diff(now, self._restart_at)
        if self.board.contactor.closed and waited < RESTART_GRACE_MS:
            return  # let the vehicle wind down; the core has removed the PWM
        if self.link is not None:
            self.link.shutdown(2000, self._idle)
        self.board.reset()

    def shutdown(self):
        """Deliberate stop (SIGTERM in the simulator): persist, say offline, disconnect."""
        now = self.board.ticks_ms()
        self._persist_energy()
        if self.sessions.current is not None:
            self.sessions.checkpoint(self.energy_wh_persisted, self.ts(now))
        if self.link is not None:
            self.link.shutdown(2000, self._idle)
        self.stopping = True

    def _idle(self):
        """Called by Link.shutdown() every ~10 ms while it waits for the link: keep the fast tick
        (pilot, contactor, RCD) and the watchdog going."""
        self.fast_tick(self.board.ticks_ms())
        self.board.wdt.feed()

    # ---- loop ---------------------------------------------------------------------------------
    def step(self, now):
        """One fast tick, plus the slow work when it is due. Returns ms until the next tick."""
        self.fast_tick(now)
        if ticks_diff(now, self._last_slow) >= SLOW_MS:
            try:
                self.slow_work(now)
            except Exception as e:  # a bug in reporting must not stop the control loop; a slow loop
                self.slow_errors += 1  # that keeps failing starves the watchdog (WDT_SLOW_STALL_MS)
                _log_exception(e)
        if ticks_diff(now, self._last_slow) < WDT_SLOW_STALL_MS:
            self.board.wdt.feed()
        self._next_fast = ticks_add(self._next_fast, FAST_MS)
        wait = ticks_diff(self._next_fast, self.board.ticks_ms())
        if wait < 0:  # overran: do not try to catch up with a burst of ticks
            self._next_fast = self.board.ticks_ms()
            wait = 0
        return wait

    def run(self, until=None):
        b = self.board
        if self.cloud is not None:
            self.cloud.start(b.ticks_ms())
        while not self.stopping:
            now = b.ticks_ms()
            wait = self.step(now)
            if until is not None and until(now):
                break
            if wait > 0:
                b.sleep_ms(wait)
