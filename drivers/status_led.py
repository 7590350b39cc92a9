# Status LED: one WS2812 pixel (a `neopixel.NeoPixel`, or anything with `np[i] = (r, g, b)` and
# `write()`: an RGB LED on three PWM pins fits behind the same two calls), steady or blinking.
# show(rgb, on_ms, off_ms, now_ms) sets the pattern, update(now_ms) writes the pixel only when what
# it shows changes. Neither allocates: rgb is a tuple the caller keeps (firmware/panel.py holds its
# colours as constants), and the pixel is compared by identity, not by value.
from drivers.ticks import ticks_diff

OFF = (0, 0, 0)


class StatusLed:
    def __init__(self, np, index=0):
        """np: the pixel strip (neopixel.NeoPixel(Pin(n), 1) on the ESP32)."""
        self.np = np
        self.index = index
        self.rgb = OFF  # the pattern's colour
        self.on_ms = 0  # 0: dark
        self.off_ms = 0  # 0: steady
        self._t0 = 0
        self.shown = None  # the colour the pixel shows now (rgb or OFF); None until written
        self.writes = 0
        self.update(0)

    def show(self, rgb, on_ms, off_ms, now_ms):
        """Colour rgb, on for on_ms then off for off_ms (off_ms 0: steady; on_ms 0: dark). The same
        pattern again keeps its phase, so a caller may set it on every pass."""
        if rgb is self.rgb and on_ms == self.on_ms and off_ms == self.off_ms:
            return
        self.rgb = rgb
        self.on_ms = on_ms
        self.off_ms = off_ms
        self._t0 = now_ms
        self.update(now_ms)

    def update(self, now_ms):
        on_ms = self.on_ms
        off_ms = self.off_ms
        if on_ms <= 0:
            c = OFF
        elif off_ms <= 0:
            c = self.rgb
        else:
            c = self.rgb if ticks_diff(now_ms, self._t0) % (on_ms + off_ms) < on_ms else OFF
        if c is not self.shown:
            self.shown = c
            self.np[self.index] = c
            self.np.write()
            self.writes += 1

    @property
    def lit(self):
        return self.shown is not None and self.shown is not OFF
