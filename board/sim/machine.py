# Fakes of the ESP32 port's `machine` API, bound to a simulated plant (board/sim/plant.py).
# Only what the drivers and the app use: Pin, PWM, ADC, SPI, WDT, reset/reset_cause/unique_id.
# Every read lets the plant catch up with the board clock first (plant.sync), so the physics advance
# lazily and deterministically with virtual time. Runs on CPython and on the MicroPython unix port.
from board.sim import watchdog

_plant = None

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5


def bind(plant):
    """Peripherals constructed from now on talk to this plant."""
    global _plant
    _plant = plant


def _bound():
    if _plant is None:
        raise RuntimeError("board.sim.machine: no plant bound")
    return _plant


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 2
    PULL_DOWN = 1
    IRQ_RISING = 1
    IRQ_FALLING = 2

    def __init__(self, id, mode=-1, pull=-1, value=None, drive=None, hold=None):
        self.id = id
        self._plant = _bound()
        self._mode = Pin.IN
        self._pull = -1
        self._out = 0
        self._rd = self._plant.pin_reader(id)
        self._handler = None
        self.init(mode, pull, value)

    def init(self, mode=-1, pull=-1, value=None, drive=None, hold=None):
        if mode != -1:
            self._mode = mode
        if pull != -1:
            self._pull = pull
        if value is not None:
            self.value(value)

    def value(self, x=None):
        if x is None:
            if self._mode == Pin.OUT or self._mode == Pin.OPEN_DRAIN:
                return self._plant.pin_readback(self.id, self._out)
            return self._rd()
        out = 1 if x else 0
        if out != self._out:
            self._out = out
            self._plant.pin_write(self.id, out)
        return None

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def irq(self, handler=None, trigger=3, wake=None, hard=False):
        self._handler = handler
        return None


class PWM:
    def __init__(self, dest, freq=None, duty_u16=None, duty_ns=None, invert=False):
        self._pin = dest
        self._plant = _bound()
        self._freq = 5000
        self._duty = 32768
        self._active = True
        if freq is not None:
            self._freq = freq
        if duty_u16 is not None:
            self._duty = duty_u16
        self._push()

    def _push(self):
        self._plant.pwm_write(self._pin.id, self._freq, self._duty, self._active)

    def init(self, freq=None, duty_u16=None, duty_ns=None):
        self._active = True
        if freq is not None:
            self._freq = freq
        if duty_u16 is not None:
            self._duty = duty_u16
        self._push()

    def freq(self, value=None):
        if value is None:
            return self._freq
        if value < 1 or value > 40000000:
            raise ValueError("frequency out of range")
        if value != self._freq:
            self._freq = value
            self._push()
        return None

    def duty_u16(self, value=None):
        if value is None:
            return self._duty
        if value < 0 or value > 65535:
            raise ValueError("duty must be 0..65535")
        if value != self._duty:
            self._duty = value
            self._push()
        return None

    def deinit(self):
        self._active = False
        self._push()


class ADC:
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    WIDTH_12BIT = 12

    def __init__(self, pin, atten=None):
        if isinstance(pin, int):
            pin = Pin(pin, Pin.IN)
        self._pin = pin
        self._plant = _bound()
        self._atten = ADC.ATTN_11DB if atten is None else atten
        self._width = 12
        self._rd = self._plant.adc_reader(pin.id)

    def atten(self, value):
        self._atten = value

    def width(self, value):
        self._width = value

    def init(self, atten=None):
        if atten is not None:
            self._atten = atten

    def read_uv(self):
        return self._rd()

    def read_u16(self):
        # ESP32 at 11 dB: about 0..3.3 V over the 16-bit range (uncalibrated, as on the chip)
        v = self._rd() * 65535 // 3300000
        return 65535 if v > 65535 else v

    def read(self):
        return self.read_u16() >> (16 - self._width)


class SPI:
    MSB = 0
    LSB = 1

    def __init__(self, id, baudrate=1000000, polarity=0, phase=0, bits=8, firstbit=0, sck=None, mosi=None,
                 miso=None):
        self.id = id
        self._plant = _bound()
        self.baudrate = baudrate
        self.polarity = polarity
        self.phase = phase

    def init(self, baudrate=1000000, polarity=0, phase=0, bits=8, firstbit=0, sck=None, mosi=None, miso=None):
        self.baudrate = baudrate
        self.polarity = polarity
        self.phase = phase

    def deinit(self):
        pass

    def write_readinto(self, write_buf, read_buf):
        if len(write_buf) != len(read_buf):
            raise ValueError("buffers must be the same length")
        self._plant.spi_xfer(self.id, write_buf, read_buf)

    def readinto(self, buf, write=0):
        out = bytearray(len(buf))
        for i in range(len(out)):
            out[i] = write
        self._plant.spi_xfer(self.id, out, buf)

    def write(self, buf):
        self._plant.spi_xfer(self.id, buf, bytearray(len(buf)))


class WDT:
    def __init__(self, id=0, timeout=5000):
        self._plant = _bound()
        self.timeout = timeout
        self.feeds = 0
        self.last_feed_ms = self._plant.now_ms()
        watchdog.start(timeout)

    def feed(self):
        self.feeds += 1
        self.last_feed_ms = self._plant.now_ms()
        watchdog.feed()


def reset():
    raise SystemExit(75)


def reset_cause():
    return PWRON_RESET


def unique_id():
    return b"SIM0001"
