# Fake of MicroPython's `neopixel.NeoPixel` for the simulated board: the pixel buffer and what the
# last write() put on the wire (`shown`, one (r, g, b) tuple per pixel), which the simulator reports.


class NeoPixel:
    ORDER = (1, 0, 2, 3)  # GRB on the wire, as the real class

    def __init__(self, pin, n, bpp=3, timing=1):
        self.pin = pin
        self.n = n
        self.bpp = bpp
        self.buf = bytearray(n * bpp)
        self.shown = [(0, 0, 0)] * n
        self.writes = 0

    def __len__(self):
        return self.n

    def __setitem__(self, i, v):
        offset = i * self.bpp
        for k in range(self.bpp):
            self.buf[offset + self.ORDER[k]] = v[k]

    def __getitem__(self, i):
        offset = i * self.bpp
        return tuple(self.buf[offset + self.ORDER[k]] for k in range(self.bpp))

    def fill(self, v):
        for i in range(self.n):
            self[i] = v

    def write(self):
        # slow path of the simulator only (the LED changes a few times a second at most)
        self.shown = [self[i] for i in range(self.n)]
        self.writes += 1
