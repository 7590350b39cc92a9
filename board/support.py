# Board support: what the charging core needs from a board, in the spirit of EVerest's
# evse_board_support. A board is this class built on its `machine` module: board/esp32_ref.py on
# the real one, board/sim/board.py on the simulated one, so both build the very same drivers on the
# pins of board/circuit.py. A new board subclasses it (or provides the same methods).
#
#   capabilities   hw_max_a, phases, tethered_a (None: a socket with a PP line), meter, rfid
#   local face     led (drivers.status_led on a WS2812), button (drivers.button), driven by
#                  firmware/panel.py from the slow work
#   read(inp, now) the fast inputs: CP letter and diode, contactor sense, RCD lines, self-test result
#   read_pp(inp), read_temp(inp)   the slow inputs
#   pwm_on(duty_pm), x1(), f()     the pilot: PWM, steady +12 V, steady -12 V
#   allow_power_on(on, now)        the contactor (the driver checks its sense line after actuation)
#   set_phases(n)                  the L2/L3 relay; moves only while the contactor is open
#   selftest_start(now)            the RCD self-test handshake; the result comes with read()
#
# read() and the outputs run every fast tick: they allocate nothing, and an unchanged output is
# not written again.
from board import circuit
from drivers.atm90e32 import ATM90E32
from drivers.button import Button
from drivers.contactor import Contactor
from drivers.ntc import NTC
from drivers.pilot import MODE_HIGH, MODE_LOW, Pilot
from drivers.proximity import Proximity
from drivers.rcd import RCD
from drivers.status_led import StatusLed


class BoardSupport:
    tethered_a = None  # the cable rating (A) of a tethered cable; set by the board

    def __init__(self, machine, hw_max_a=circuit.HW_MAX_A, phases=circuit.PHASES, socket=True):
        Pin = machine.Pin
        ADC = machine.ADC

        def adc(pin_no):
            return ADC(Pin(pin_no), atten=ADC.ATTN_11DB)  # ~0.15..2.45 V linear, eFuse-calibrated read_uv()

        self.hw_max_a = hw_max_a
        self.phases = phases
        pwm = machine.PWM(Pin(circuit.PIN_CP_PWM, Pin.OUT), freq=1000, duty_u16=65535)  # start at +12 V (A/X1)
        self.pilot = Pilot(pwm, adc(circuit.PIN_CP_ADC), circuit.pilot_cal())
        self.pp = Proximity(adc(circuit.PIN_PP_ADC), circuit.PP_PULLUP, circuit.VREF_MV) if socket else None
        self.contactor = Contactor(
            Pin(circuit.PIN_CONTACTOR, Pin.OUT, value=0),
            Pin(circuit.PIN_CONTACTOR_SENSE, Pin.IN),  # GPIO35: input only, external pull-up on the board
            circuit.CONTACTOR_ACTUATION_MS,
            phase_pin=Pin(circuit.PIN_PHASE_RELAY, Pin.OUT, value=1) if phases == 3 else None,
        )
        spi = machine.SPI(circuit.SPI_ID, baudrate=circuit.SPI_BAUD, polarity=circuit.SPI_POLARITY,
                          phase=circuit.SPI_PHASE, sck=Pin(circuit.PIN_SPI_SCK), mosi=Pin(circuit.PIN_SPI_MOSI),
                          miso=Pin(circuit.PIN_SPI_MISO))
        self.meter = ATM90E32(spi, Pin(circuit.PIN_METER_CS, Pin.OUT, value=1), circuit.METER_UGAIN,
                              circuit.METER_IGAIN)
        self.rcd = RCD(Pin(circuit.PIN_RCD_AC, Pin.IN, Pin.PULL_DOWN), Pin(circuit.PIN_RCD_DC, Pin.IN, Pin.PULL_DOWN),
                       Pin(circuit.PIN_RCD_TEST, Pin.OUT, value=0), True)
        self.temp = NTC(adc(circuit.PIN_NTC_ADC), circuit.NTC_R_FIXED, circuit.NTC_R25, circuit.NTC_BETA,
                        circuit.VREF_MV)
        self.rfid = self.make_rfid(machine)  # poll(now_ms) -> uid or None; fault None or "reader"
        self.led = StatusLed(self.make_pixels(Pin(circuit.PIN_LED, Pin.OUT, value=0)))
        self.button = Button(Pin(circuit.PIN_BUTTON, Pin.IN, Pin.PULL_UP), True, 30, circuit.BUTTON_LONG_MS,
                             circuit.BUTTON_SHORT_MAX_MS)

    # ---- what a board may build differently ---------------------------------------------------------
    def make_rfid(self, machine):
        """The PN532 on HSU (docs/hardware.md); a board without a reader returns None."""
        uart = machine.UART(circuit.RFID_UART_ID, baudrate=circuit.RFID_BAUD, tx=circuit.PIN_RFID_TX,
                            rx=circuit.PIN_RFID_RX, rxbuf=circuit.RFID_RXBUF, timeout=0, timeout_char=0)
        from drivers.pn532 import PN532  # here: the simulated board builds its reader its own way

        return PN532(uart)  # timeout=0: a read never waits, the driver polls any()

    def make_pixels(self, pin):
        import neopixel  # a module of its own on MicroPython, not part of `machine`

        return neopixel.NeoPixel(pin, circuit.LED_PIXELS)

    # ---- inputs ------------------------------------------------------------------------------------
    def read(self, inp, now):
        pilot = self.pilot
        inp.cp = pilot.sample()
        inp.diode_ok = pilot.diode_ok
        con = self.contactor
        con.update(now)
        inp.contactor_closed = con.closed
        inp.contactor_fault = con.fault
        rcd = self.rcd
        rcd.poll(now)  # also advances a running self-test
        inp.rcd_ac = rcd.trip_ac
        inp.rcd_dc = rcd.trip_dc
        inp.rcd_selftest = rcd.selftest_result  # None until a started test has its result

    def read_pp(self, inp):
        """The cable's capacity in A (0: none, -1: invalid coding); 0 on a tethered board."""
        inp.pp_a = self.pp.read() if self.pp is not None and self.tethered_a is None else 0
        return inp.pp_a

    def read_temp(self, inp):
        inp.temp_dc = self.temp.read()  # deci-degC, None for a sensor fault
        return inp.temp_dc

    # ---- outputs -------------------------------------------------------------------------------------
    def pwm_on(self, duty_pm):
        self.pilot.set_duty_pm(duty_pm)  # the driver writes the PWM only when the duty changes

    def x1(self):
        if self.pilot.mode != MODE_HIGH:
            self.pilot.set_high()

    def f(self):
        if self.pilot.mode != MODE_LOW:
            self.pilot.set_low()

    def allow_power_on(self, on, now):
        self.contactor.set(on, now)

    def set_phases(self, n):
        con = self.contactor
        if n != con.phases and not con.commanded:
            con.set_phases(n)

    def selftest_start(self, now):
        self.rcd.selftest_start(now)
