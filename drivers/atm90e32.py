# ATM90E32AS-class 3-phase energy metering IC on SPI (slow path: read() at about 1 Hz may allocate).
#
# Bus protocol: every access is one CS-low frame of 4 bytes, MSB first: a 16-bit address word whose
# bit 15 is the read flag, then the 16-bit data word (written by the host, or clocked out by the chip
# on a read). SPI mode 3, <= 200 kHz is safe for this chip family.
#
# Lifetime energy: the chip's energy registers are clear-on-read 16-bit counters (1 LSB = 0.01 CF;
# with a meter constant of 3200 imp/kWh that is 1/320 Wh). The driver adds every read's counts to its
# own lifetime counter, which never decreases; a chip reset (detected by MeterEn / CRC digest) only
# loses the counts since the previous read (under a second of charging), it never double-counts.
# A read with any sign of a bad bus (all-0xFF / all-0x00, LastSPIData mismatch, CRC error, impossible
# values) sets ok=False and `error`, keeps the last good numbers and adds no energy.
# See docs/hardware.md for the register map and units.
from drivers.ticks import const, ticks_diff

TYPE_CHECKING = False  # mypy treats this name as true: tools/typecheck.py checks machine calls
if TYPE_CHECKING:
    from machine import SPI, Pin  # noqa: F401  (used in type comments)

# register map (ATM90E32AS)
METER_EN = 0x00
CHANNEL_MAP_I = 0x01
CHANNEL_MAP_U = 0x02
PL_CONST_H = 0x31
PL_CONST_L = 0x32
MMODE0 = 0x33
_MMODE1 = const(0x34)
_P_START_TH = const(0x35)
UGAIN = (0x61, 0x65, 0x69)  # UgainA/B/C
IGAIN = (0x62, 0x66, 0x6A)  # IgainA/B/C
SOFT_RESET = 0x70
EMM_STATE0 = 0x71
LAST_SPI_DATA = 0x78
CRC_ERR_STATUS = 0x79
CRC_DIGEST = 0x7A
CFG_REG_ACC_EN = 0x7F
AP_ENERGY_T = 0x80  # forward active energy, all phases (clear on read)
PMEAN_T = 0xB0  # total active power, high word (signed)
PMEAN_T_LSB = 0xC0  # total active power, low word
URMS = (0xD9, 0xDA, 0xDB)  # UrmsA/B/C, 0.01 V
IRMS = (0xDD, 0xDE, 0xDF)  # IrmsA/B/C, 0.001 A
FREQ = 0xF8  # 0.01 Hz

SOFT_RESET_CODE = 0x789A
CFG_UNLOCK = 0x55AA
_CFG_LOCK = const(0x0000)

COUNTS_PER_WH = 320  # 0.01 CF per LSB at 3200 imp/kWh
PT_W_PER_LSB = 0.00128  # PmeanT:PmeanTLSB as a signed 32-bit value
_U_MAX_CV = const(30000)  # 300 V
_I_MAX_MA = const(65000)  # the register's ceiling is 65.535 A; 0xFFFF is what a floating bus reads
_P_MAX_W = const(3 * 300 * 65)  # for the energy plausibility check

# default configuration (per board: pass your own calibration to the constructor)
DEFAULT_CONFIG = (
    (METER_EN, 0x0001),
    (CHANNEL_MAP_I, 0x0210),
    (CHANNEL_MAP_U, 0x0654),
    (PL_CONST_H, 0x0861),
    (PL_CONST_L, 0xC468),
    (MMODE0, 0x0087),
    (_MMODE1, 0x0000),
    (_P_START_TH, 0x0000),
)

ERR_BUS = "meter_bus"  # no chip / stuck bus / readback mismatch
ERR_CRC = "meter_crc"  # configuration checksum error (chip lost its configuration)
ERR_RANGE = "meter_range"  # impossible values
ERR_SPI = "meter_spi"  # the SPI call raised


class ATM90E32:
    def __init__(self, spi, cs, ugain=(0x8000, 0x8000, 0x8000), igain=(0x8000, 0x8000, 0x8000),
                 config=DEFAULT_CONFIG):
        self.spi = spi  # type: SPI
        self.cs = cs  # type: Pin
        self.config = list(config)
        for ph in range(3):
            self.config.append((UGAIN[ph], ugain[ph]))
            self.config.append((IGAIN[ph], igain[ph]))
        self._tx = bytearray(4)
        self._rx = bytearray(4)
        self.v_v = [0.0, 0.0, 0.0]
        self.i_a = [0.0, 0.0, 0.0]
        self.i_da = [0, 0, 0]
        self.p_w = 0
        self.freq_hz = 0.0
        self.energy_wh = 0
        self._rem = 0  # counts below one Wh
        self.ok = False
        self.error = "meter_not_started"  # type: str | None
        self.resets = 0  # chip resets detected and recovered
        self.errors = 0
        self._crc = None
        self._last_ms = None
        self._last_p = 0.0
        cs.value(1)

    # -- bus ---------------------------------------------------------------------------------
    def read_reg(self, addr):
        tx = self._tx
        tx[0] = 0x80 | ((addr >> 8) & 0x7F)
        tx[1] = addr & 0xFF
        tx[2] = 0xFF
        tx[3] = 0xFF
        self.cs.value(0)
        try:
            self.spi.write_readinto(tx, self._rx)
        finally:
            self.cs.value(1)
        return (self._rx[2] << 8) | self._rx[3]

    def write_reg(self, addr, val):
        tx = self._tx
        tx[0] = (addr >> 8) & 0x7F
        tx[1] = addr & 0xFF
        tx[2] = (val >> 8) & 0xFF
        tx[3] = val & 0xFF
        self.cs.value(0)
        try:
            self.spi.write_readinto(tx, self._rx)
        finally:
            self.cs.value(1)

    # -- setup -------------------------------------------------------------------------------
    def begin(self):
        """Soft reset, write configuration and calibration, verify, lock. Returns ok."""
        try:
            ok = self._begin()
        except OSError:
            ok = False
            self.error = ERR_SPI
        self.ok = ok
        if ok:
            self.error = None
        else:
            self.errors += 1
        return ok

    def _begin(self):
        self.write_reg(SOFT_RESET, SOFT_RESET_CODE)
        self.write_reg(CFG_REG_ACC_EN, CFG_UNLOCK)
        for addr, val in self.config:
            self.write_reg(addr, val)
        bad = False
        for addr, val in self.config:
            if self.read_reg(addr) != val:
                bad = True
        self.write_reg(CFG_REG_ACC_EN, _CFG_LOCK)
        if bad:
            self.error = ERR_BUS
            return False
        self._crc = self.read_reg(CRC_DIGEST)
        if self.read_reg(CRC_ERR_STATUS) != 0:
            self.error = ERR_CRC
            return False
        self.read_reg(AP_ENERGY_T)  # clear what accumulated before the calibration was in place
        self._last_ms = None
        return True

    def set_energy_wh(self, wh):
        """Restore the lifetime counter (from flash, at boot)."""
        self.energy_wh = int(wh)
        self._rem = 0

    # -- measurement -------------------------------------------------------------------------
    def read(self, now_ms):
        """Read voltages, currents, power and the energy counter. Returns ok."""
        try:
            err = self._read(now_ms)
        except OSError:
            err = ERR_SPI
        if err is None:
            self.ok = True
            self.error = None
        else:
            self.ok = False
            self.error = err
            self.errors += 1
        return self.ok

    def _read(self, now_ms):
        men = self.read_reg(METER_EN)
        last = self.read_reg(LAST_SPI_DATA)
        if last != men or men == 0xFFFF:
            return ERR_BUS
        if men != 0x0001:
            # the chip lost its configuration (reset / brown-out) or the bus reads zeros
            if not self._begin():
                return self.error
            self.resets += 1
            # the counts since the previous read died with the reset; nothing to read yet
            self._last_ms = now_ms
            return None
        if self.read_reg(CRC_ERR_STATUS) != 0 or self.read_reg(CRC_DIGEST) != self._crc:
            if self._begin():
                self.resets += 1
                self._last_ms = now_ms
            return ERR_CRC
        u = [self.read_reg(URMS[ph]) for ph in range(3)]
        i = [self.read_reg(IRMS[ph]) for ph in range(3)]
        p_hi = self.read_reg(PMEAN_T)
        p_lo = self.read_reg(PMEAN_T_LSB)
        freq = self.read_reg(FREQ)
        if self.read_reg(LAST_SPI_DATA) != freq:
            return ERR_BUS
        for ph in range(3):
            if u[ph] > _U_MAX_CV or i[ph] > _I_MAX_MA:
                return ERR_RANGE
        raw = (p_hi << 16) | p_lo
        if raw & 0x80000000:
            raw -= 1 << 32
        p = raw * PT_W_PER_LSB
        if abs(p) > _P_MAX_W:
            return ERR_RANGE
        # energy last: it is clear-on-read, so it is only taken once the rest of the frame is sane
        e = self.read_reg(AP_ENERGY_T)
        if self.read_reg(LAST_SPI_DATA) != e:
            return ERR_BUS
        last_ms = self._last_ms
        if last_ms is not None:
            dt = ticks_diff(now_ms, last_ms)
            if dt < 0:
                dt = 0
            e_exp = (abs(self._last_p) + abs(p)) / 2 * dt / 3600000.0 * COUNTS_PER_WH
            if e_exp > 32768:
                # reads were too far apart: the 16-bit register wrapped. Add the whole wraps that the
                # measured power explains (never a partial guess).
                k = int((e_exp - e) / 65536.0 + 0.5)
                if k > 0:
                    e += k * 65536
            e_max = _P_MAX_W * dt / 3600000.0 * COUNTS_PER_WH + 64
            if e > e_max:
                return ERR_RANGE
        self._last_ms = now_ms
        self._last_p = p
        tot = self._rem + e
        self.energy_wh += tot // COUNTS_PER_WH
        self._rem = tot % COUNTS_PER_WH
        for ph in range(3):
            self.v_v[ph] = u[ph] / 100
            self.i_a[ph] = i[ph] / 1000
            self.i_da[ph] = (i[ph] + 50) // 100
        self.p_w = int(p)
        self.freq_hz = freq / 100
        return None
