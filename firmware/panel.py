# The charger's local face: the status LED shows what the charger does, the front button stops and
# resumes charging and, held for 10 s, resets the charger to its factory settings. Runs in the app's
# slow work (every 50 ms) and allocates nothing there: the LED codes, their colours and patterns are
# constants, and the button driver reports interned strings. docs/hardware.md has the table.
#
#   code              colour   pattern              when
#   disconnected      green    steady               no vehicle, cloud link up (or no cloud)
#   offline           yellow   1 s on / 1 s off     no vehicle, the cloud link is down
#   waiting_for_auth  white    0.5 s on / 0.5 s off a vehicle waits for an authorization
#   charging          blue     steady               the contactor is closed
#   paused            blue     1 s on / 1 s off     a session is open, no current: the vehicle has not
#                                                   asked yet, the charger offers nothing now, or a
#                                                   stop (button or cloud) holds it
#   finished          cyan     steady               the vehicle stopped drawing by itself (full)
#   fault             red      0.25 s on / off      a fault that stops charging (state `mode` fault)
#   disabled          amber    steady               `enabled` is false
#   updating          magenta  0.25 s on / off      a field update is being installed
#   hold              white    0.1 s on / off       the button is held past 2 s: keep holding to reset
#   factory_reset     white    steady               the long press is taken: the reset follows
#   refused           red      0.1 s on / off, 2 s  a long press while a vehicle charges: no reset
#
# Priority: refused / factory_reset / hold, then fault, updating, disabled, then the session.
# The cloud link only shows while no vehicle is there: with a vehicle, what the vehicle gets matters
# more to the person at the charger than the link, and the cloud's own view says the rest.
from firmware.session import CHARGING, FAULTED, FINISHED, IDLE, PAUSED_EV, WAITING_FOR_AUTH
from firmware.ticks import const, ticks_add, ticks_diff

DISCONNECTED = 0
OFFLINE = 1
_WAITING = const(2)
_CHARGING_C = const(3)
_PAUSED = const(4)
_FINISHED_C = const(5)
_FAULT_C = const(6)
_DISABLED_C = const(7)
_UPDATING = const(8)
_HOLD = const(9)
_RESET = const(10)
_REFUSED = const(11)

NAMES = ("disconnected", "offline", "waiting_for_auth", "charging", "paused", "finished", "fault", "disabled",
         "updating", "hold", "factory_reset", "refused")

GREEN = (0, 80, 0)
YELLOW = (80, 60, 0)
WHITE = (70, 70, 70)
BLUE = (0, 0, 96)
CYAN = (0, 70, 70)
RED = (96, 0, 0)
AMBER = (96, 32, 0)
MAGENTA = (80, 0, 80)

# code -> (colour, on_ms, off_ms); off_ms 0 = steady
PATTERNS = (
    (GREEN, 1000, 0),
    (YELLOW, 1000, 1000),
    (WHITE, 500, 500),
    (BLUE, 1000, 0),
    (BLUE, 1000, 1000),
    (CYAN, 1000, 0),
    (RED, 250, 250),
    (AMBER, 1000, 0),
    (MAGENTA, 250, 250),
    (WHITE, 100, 100),
    (WHITE, 1000, 0),
    (RED, 100, 100),
)

CONFIRM_MS = 1500  # factory_reset shown this long before the reset starts
_REFUSED_MS = const(2000)

# the button driver's results (drivers/button.py)
SHORT = "short"
LONG = "long"


class Panel:
    def __init__(self, station, led, button, link=None):
        """station: firmware/station.py (its charger, commands and factory_reset); led, button: the
        board's drivers (either may be None); link: the cloud link (its `connected`), or None."""
        self.station = station
        self.led = led
        self.button = button
        self.link = link
        self.code = -1
        self.name = None  # NAMES[code], for the simulator and tests
        self._show_until = 0
        self._showing = -1  # REFUSED or RESET while it is shown
        self._reset_due = False
        self.presses = 0  # short presses acted on
        self.resets = 0  # factory resets started

    # ---- slow work -----------------------------------------------------------------------------
    def service(self, now):
        b = self.button
        if b is not None:
            ev = b.poll(now)
            if ev == SHORT:
                self._short(now)
            elif ev == LONG:
                self._long(now)
        code = self._code(now)
        if code != self.code:
            self.code = code
            self.name = NAMES[code]
            led = self.led
            if led is not None:
                p = PATTERNS[code]
                led.show(p[0], p[1], p[2], now)
        if self.led is not None:
            self.led.update(now)
        if self._reset_due and ticks_diff(now, self._show_until) >= 0:
            self._reset_due = False
            self._showing = -1
            self._factory_reset(now)

    def _code(self, now):
        if self._showing >= 0:
            if self._reset_due or ticks_diff(now, self._show_until) < 0:
                return self._showing
            self._showing = -1
        b = self.button
        if b is not None and b.pressed and b.short_max_ms < b.held_ms(now) < b.long_ms:
            return _HOLD  # (past long_ms the long press has been taken: no more "keep holding")
        ch = self.station.charger
        st = ch.session.state
        if st == FAULTED:
            return _FAULT_C
        if self.station.updating:
            return _UPDATING
        if not ch.enabled:
            return _DISABLED_C
        if st == IDLE:
            link = self.link
            return OFFLINE if link is not None and not link.connected else DISCONNECTED
        if st == WAITING_FOR_AUTH:
            return _WAITING
        if st == CHARGING:
            return _CHARGING_C
        if st == PAUSED_EV:
            return _FINISHED_C
        return _PAUSED  # READY, PAUSED_EVSE, FINISHED (a stop holds it)

    # ---- the button ------------------------------------------------------------------------------
    def _short(self, now):
        """Stop a session that may charge, resume one a stop holds; nothing without a vehicle or in a
        fault (a local press never clears a latched safety fault: that is the cloud's `resume`)."""
        st = self.station
        state = st.charger.session.state
        if state == FINISHED:
            st.resume(now)
        elif state != IDLE and state != FAULTED:
            st.stop(now)
        else:
            return
        self.presses += 1

    def _long(self, now):
        if self.station.charging():
            self._show(_REFUSED, now, _REFUSED_MS)
            return
        self._show(_RESET, now, CONFIRM_MS)
        self._reset_due = True

    def _show(self, code, now, ms):
        self._showing = code
        self._show_until = ticks_add(now, ms)

    def _factory_reset(self, now):
        if self.station.charging():  # a vehicle started while the confirmation showed
            self._show(_REFUSED, now, _REFUSED_MS)
            return
        st = self.station
        err = st.factory_reset()
        if err is None:
            err = st.restart(None)  # ends a session, persists, resets (a pending grant dies with it)
        if err is not None:
            self._show(_REFUSED, now, _REFUSED_MS)
            return
        self.resets += 1
