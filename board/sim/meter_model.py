# Register-level model of an ATM90E32AS metering IC, answering the chip's SPI frames (4 bytes, CS low:
# 16-bit address word with bit 15 = read, then 16-bit data). Its measurement registers follow the
# plant's load; the energy register is clear-on-read and wraps at 16 bits like the chip's.
# Test hooks: garbage() (the bus returns a fixed byte or noise), chip_reset() (brown-out: registers back
# to their power-on defaults, metering off, energy lost), corrupt(addr, val) (a config register flips:
# the CRC status flags it).
from drivers import atm90e32

_CONFIG_LIMIT = 0x70  # registers below this need CfgRegAccEn = 0x55AA to be written


def _crc16(data_words):
    crc = 0xFFFF
    for w in data_words:
        for b in ((w >> 8) & 0xFF, w & 0xFF):
            crc ^= b << 8
            for _ in range(8):
                crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


class Atm90e32Model:
    def __init__(self, ugain_cal=(0x8000, 0x8000, 0x8000), igain_cal=(0x8000, 0x8000, 0x8000)):
        self.ugain_cal = ugain_cal
        self.igain_cal = igain_cal
        self.v = [0.0, 0.0, 0.0]  # volts per phase (set by the plant)
        self.i = [0.0, 0.0, 0.0]  # amperes per phase
        self.freq_hz = 50.0
        self.frames = 0
        self.garbage_byte = None  # None, 0x00..0xFF, or -1 for noise
        self.garbage_frames = 0  # >0: only that many frames are garbled; 0 with garbage_byte set: all
        self._noise = 0x1234
        self.power_on()

    # -- chip state ------------------------------------------------------------------------------
    def power_on(self):
        self.regs = {}  # config registers (power-on default 0 unless listed)
        self.regs[atm90e32.CHANNEL_MAP_I] = 0x0210
        self.regs[atm90e32.CHANNEL_MAP_U] = 0x0654
        self.regs[atm90e32.PL_CONST_H] = 0x0861
        self.regs[atm90e32.PL_CONST_L] = 0xC468
        self.cfg_acc = 0
        self.last_spi = 0
        self.energy_counts = 0.0  # accumulated since the last read of APenergyT
        self._latched_crc = self.digest()
        self.resets = getattr(self, "resets", -1) + 1

    def chip_reset(self):
        """A reset the host did not ask for (brown-out, ESD)."""
        self.power_on()

    def corrupt(self, addr, val):
        self.regs[addr] = val

    def garbage(self, byte, frames=0):
        """Replies become `byte` (0xFF = MISO stuck high / no chip, 0x00 = stuck low, -1 = noise) for
        `frames` frames (0 = until garbage(None))."""
        self.garbage_byte = byte
        self.garbage_frames = frames

    def digest(self):
        keys = sorted(self.regs)
        words = []
        for k in keys:
            words.append(k)
            words.append(self.regs[k])
        return _crc16(words)

    def metering(self):
        return self.regs.get(atm90e32.METER_EN, 0) == 0x0001

    def add_energy_wh(self, wh):
        if self.metering():
            self.energy_counts += wh * atm90e32.COUNTS_PER_WH

    # -- registers -------------------------------------------------------------------------------
    def read_reg(self, addr):
        if addr == atm90e32.LAST_SPI_DATA:
            return self.last_spi
        val = self._value(addr) & 0xFFFF
        self.last_spi = val
        return val

    def _value(self, addr):
        if addr == atm90e32.CFG_REG_ACC_EN:
            return self.cfg_acc
        if addr == atm90e32.CRC_DIGEST:
            return self.digest()
        if addr == atm90e32.CRC_ERR_STATUS:
            return 0 if self.cfg_acc == atm90e32.CFG_UNLOCK or self.digest() == self._latched_crc else 1
        if addr == atm90e32.EMM_STATE0:
            return 0
        if addr < _CONFIG_LIMIT:
            return self.regs.get(addr, 0)
        on = self.metering()
        for ph in range(3):
            if addr == atm90e32.URMS[ph]:
                g = self.regs.get(atm90e32.UGAIN[ph], 0) / self.ugain_cal[ph]
                return int(self.v[ph] * 100 * g + 0.5) if on else 0
            if addr == atm90e32.IRMS[ph]:
                g = self.regs.get(atm90e32.IGAIN[ph], 0) / self.igain_cal[ph]
                return int(self.i[ph] * 1000 * g + 0.5) if on else 0
        if addr == atm90e32.PMEAN_T or addr == atm90e32.PMEAN_T_LSB:
            p = 0.0
            if on:
                for ph in range(3):
                    p += self.v[ph] * self.i[ph]
            raw = int(p / atm90e32.PT_W_PER_LSB) & 0xFFFFFFFF
            return raw >> 16 if addr == atm90e32.PMEAN_T else raw & 0xFFFF
        if addr == atm90e32.FREQ:
            return int(self.freq_hz * 100) if on else 0
        if addr == atm90e32.AP_ENERGY_T:
            n = int(self.energy_counts)
            self.energy_counts -= n
            return n & 0xFFFF  # clear on read; 16 bits: wraps when read too rarely
        return 0

    def write_reg(self, addr, val):
        self.last_spi = val
        if addr == atm90e32.SOFT_RESET:
            if val == atm90e32.SOFT_RESET_CODE:
                self.power_on()
            return
        if addr == atm90e32.CFG_REG_ACC_EN:
            if val == atm90e32.CFG_UNLOCK:
                self.cfg_acc = val
            else:
                self.cfg_acc = 0
                self._latched_crc = self.digest()
            return
        if addr < _CONFIG_LIMIT and self.cfg_acc == atm90e32.CFG_UNLOCK:
            self.regs[addr] = val

    # -- SPI -------------------------------------------------------------------------------------
    def xfer(self, wbuf, rbuf):
        """One CS-low transaction (any multiple of 4 bytes: one frame per 4 bytes)."""
        n = len(wbuf)
        for off in range(0, n - 3, 4):
            self.frames += 1
            addr = ((wbuf[off] & 0x7F) << 8) | wbuf[off + 1]
            if wbuf[off] & 0x80:
                v = self.read_reg(addr)
                rbuf[off] = 0xFF
                rbuf[off + 1] = 0xFF
                rbuf[off + 2] = v >> 8
                rbuf[off + 3] = v & 0xFF
            else:
                self.write_reg(addr, (wbuf[off + 2] << 8) | wbuf[off + 3])
                for k in range(4):
                    rbuf[off + k] = 0xFF
        if self.garbage_byte is not None:
            for k in range(n):
                if self.garbage_byte < 0:
                    self._noise = (self._noise * 1103515245 + 12345) & 0x7FFFFFFF
                    rbuf[k] = (self._noise >> 16) & 0xFF
                else:
                    rbuf[k] = self.garbage_byte
            if self.garbage_frames > 0:
                self.garbage_frames -= 1
                if self.garbage_frames == 0:
                    self.garbage_byte = None
