# The application shell: runs a board (board/support.py's interface), the station (the charging core,
# settings, sessions, energy: firmware/station.py) and a backend (firmware/cloud.py) on one loop.
#
# One control thread runs everything except network I/O (the link has its own thread):
#   fast tick (every FAST_MS): board.read -> Charger.tick -> board outputs.
#       Integer-only and allocation-free in steady state.
#   slow work (every SLOW_MS, after a fast tick): PP, RFID, core events, sessions, the backend;
#       meter and temperature at 1 Hz; energy and session checkpoints.
# The watchdog is fed only while both the fast and the slow work keep running.
from firmware.iec61851 import PWM_OFF_OPEN_MS
from firmware.station import Station
from firmware.storage import Storage
from firmware.ticks import const, ticks_add, ticks_diff

_FAST_MS = const(10)
SLOW_MS = 50
_METER_MS = const(1000)
_TEMP_MS = const(1000)
_CHECKPOINT_MS = const(15000)  # session checkpoint while charging: a power cut loses at most this much energy
_WDT_SLOW_STALL_MS = const(5000)
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
    def __init__(self, board, link=None, serial=None, prefix="evse", first_settings=None, ha_prefix=None,
                 backend=None):
        """backend: None for the MQTT contract (firmware/cloud.py on `link`), or a factory
        (station, link) -> backend, e.g. firmware.ocpp.Ocpp on a firmware.ws.WsLink."""
        self.board = board
        self.link = link
        serial = serial or board.serial
        self.store = Storage(board.storage_root)
        now = board.ticks_ms()

        # boot counter and a pending restart command id, kept in flash
        rec = self.store.read_json("boot.json", None) or {}
        self.boot = int(rec.get("boot", 0)) + 1
        boot_cmd_id = rec.get("restart_cmd_id")
        self.store.write_json("boot.json", {"boot": self.boot, "restart_cmd_id": None})

        st = Station(self.store, board, serial, self.boot, now, boot_cmd_id, first_settings, self.request_restart)
        self.station = st
        self.charger = st.charger
        self.sessions = st.sessions
        self.meter = board.meter
        self.inp = st.inp
        # lifetime energy never below what was persisted (the chip's registers start at 0)
        board.meter.set_energy_wh(st.energy_wh_persisted)
        try:
            board.meter.begin()
        except Exception:  # a dead chip is a `meter` fault, reported by read(); never a crash
            pass
        self._tethered = board.tethered_a

        self._next_fast = now
        self._last_slow = now
        self._last_meter = ticks_add(now, -_METER_MS)
        self._meter_con = False
        self._last_temp = ticks_add(now, -_TEMP_MS)
        self._last_checkpoint = now
        self._restart_at = None
        self.hooks = []  # callables(now_ms) run with the slow work (the simulator's vehicle link)
        self.stopping = False
        self.slow_errors = 0  # exceptions caught in the slow work
        # longest gap between two fast ticks, for tests and benchmarks
        self.max_gap_ms = 0
        self._last_fast = now

        self.cloud = None
        if backend is not None:
            self.cloud = backend(st, link)
        elif link is not None:
            from firmware.cloud import Cloud

            self.cloud = Cloud(st, link, prefix, ha_prefix)  # ha_prefix: Home Assistant discovery
        self.panel = None  # the status LED and the front button (firmware/panel.py)
        led = getattr(board, "led", None)
        button = getattr(board, "button", None)
        if led is not None or button is not None:
            from firmware.panel import Panel

            self.panel = Panel(st, led, button, link)

    # ---- fast path ----------------------------------------------------------------------------
    def fast_tick(self, now):
        gap = ticks_diff(now, self._last_fast)
        if gap > self.max_gap_ms:
            self.max_gap_ms = gap
        self._last_fast = now
        b = self.board
        ch = self.charger
        b.read(self.inp, now)
        ch.tick(now, self.inp)
        ch.drive(b, now)

    def take_max_gap(self):
        """The longest gap between two fast ticks since the last call (benchmarks), then restart."""
        gap = self.max_gap_ms
        self.max_gap_ms = 0
        return gap

    # ---- slow path ----------------------------------------------------------------------------
    def slow_work(self, now):
        b = self.board
        st = self.station
        inp = self.inp
        tethered = b.tethered_a
        if tethered != self._tethered:  # fixed on a real board; the simulator's vehicle may bring its own
            self._tethered = tethered
            self.charger.set_tethered(tethered)
        b.read_pp(inp)
        if ticks_diff(now, self._last_temp) >= _TEMP_MS:
            self._last_temp = now
            b.read_temp(inp)
        st.readings(inp.pp_a, inp.temp_dc, tethered)
        # 1 Hz, and at once when the contactor changed, so that the state published for that change
        # shows the current that really flows (0 A once open), not the last reading
        closed = inp.contactor_closed
        if ticks_diff(now, self._last_meter) >= _METER_MS or closed != self._meter_con:
            self._last_meter = now
            self._meter_con = closed
            self.meter.read(now)
            st.meter_read(self.meter)
        rfid = b.rfid
        if rfid is not None:
            uid = rfid.poll(now)
            inp.reader_ok = rfid.fault is None  # the core's `reader` fault (firmware/safety.py)
            if uid:
                self.charger.present_tag(now, uid)
        if self.panel is not None:
            self.panel.service(now)
        if st.drain_events(now, self.cloud):
            self._last_checkpoint = now
        if self.sessions.current is not None and ticks_diff(now, self._last_checkpoint) >= _CHECKPOINT_MS:
            self._last_checkpoint = now
            st.checkpoint(now)
        if self.cloud is not None:
            self.cloud.service(now)
        for h in self.hooks:
            h(now)
        if self._restart_at is not None:
            self._continue_restart(now)
        self._last_slow = now

    # ---- restart and shutdown -------------------------------------------------------------------
    def request_restart(self, cmd_id):
        """Stop a running session cleanly, persist everything, then reset once the reply is out."""
        now = self.board.ticks_ms()
        st = self.station
        self.charger.end_for_restart(now)
        st.drain_events(now, self.cloud)
        st.persist_energy()
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
        st = self.station
        st.persist_energy()
        if self.sessions.current is not None:
            st.checkpoint(now)
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
        if ticks_diff(now, self._last_slow) < _WDT_SLOW_STALL_MS:
            self.board.wdt.feed()
        self._next_fast = ticks_add(self._next_fast, _FAST_MS)
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
