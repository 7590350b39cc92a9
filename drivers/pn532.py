# NXP PN532 NFC reader on HSU (its UART), reading ISO/IEC 14443A tag UIDs (slow path, every 50 ms).
#
# Why the PN532 on HSU (see docs/hardware.md, "RFID reader"):
# - the PN532 runs the ISO 14443A anticollision and cascade (4, 7 and 10 byte UIDs) itself and answers
#   with one checksummed frame; an MFRC522 leaves REQA/anticollision/SELECT/CRC_A per cascade level to
#   the host (a dozen SPI transactions per poll) and wants SPI mode 0 on a bus whose meter runs mode 3;
# - on a UART the chip's answer lands in the port's receive buffer by itself, so a poll never waits:
#   `any()` + `readinto()` return at once. On I2C the host has to poll a status byte and the PN532
#   stretches the clock, which the ESP32's I2C block handles badly; a hung reader on a shared I2C bus
#   also stalls everything else on it. HSU is point to point: a dead reader only silences itself.
# The interface is the one any reader should offer (an MFRC522 driver would keep it): `poll(now_ms)`
# returns a new presentation's UID as upper-case hex ("04A1B2C3") once, else None; `fault` is None or
# "reader"; `ok`.
#
# Frames (UM0701-02 PN532 user manual, 6.2): 00 | 00 FF | LEN | LCS | TFI | PD0..PDn | DCS | 00 with
# LEN = bytes of TFI+PD, LEN+LCS = 0 and TFI+PD0+..+PDn+DCS = 0 (mod 256); TFI D4 host->PN532,
# D5 PN532->host. ACK 00 00 FF 00 FF 00, NACK 00 00 FF FF 00 00 (asks the PN532 to send its last answer
# again), error frame 00 00 FF 01 FF 7F 81 00. The PN532 ACKs every good command at once and answers
# later; an ACK from the host aborts the command in progress.
#
# Sequence: wake-up (0x55 0x55 and zeros: the C106 starts in low-VBat mode and needs SAMConfiguration
# first), SAMConfiguration (normal mode), GetFirmwareVersion (IC must be 0x32), RFConfiguration
# MaxRetries (passive activation retried once: with the default 0xFF InListPassiveTarget would wait for
# a tag for ever, and a dead reader could not be told from an empty field), then InListPassiveTarget
# (MaxTg 2, 106 kbps type A) every `period_ms`. Every command has a deadline; a missed deadline, an error
# frame, a wrong TFI/command code or a checksum still bad after two NACKs aborts the command (ACK),
# empties the receive buffer and starts the sequence again, which also recovers a reader that was reset
# (it forgot the configuration and sleeps until woken). `fault` becomes "reader" when no good scan
# answer came for `fault_ms`, and clears at the first good scan.
#
# Presentations: a UID is reported when it is alone in the field and is not the tag being presented
# already. The presentation ends when scans saw an empty field for `away_ms` (a tag at the edge of
# the field that drops out for one scan is not presented twice; a reader fault does not end it).
# Two tags at once are reported as neither (`multiple` is True): which one the driver meant is
# unknowable, and charging the wrong account is worse than asking for one card; the one left when the
# other goes is then reported (unless it was already the presented tag).
#
# Cost per poll: at most CHUNK received bytes parsed and at most one frame written; no allocation
# except the UID string of a new presentation (host_tests/test_drivers_rfid.py, heap_locked).
# Imports only `time`: a driver stands alone.

try:
    from time import ticks_diff
except ImportError:  # CPython (host tests): the ESP32's 2**30 tick period

    def ticks_diff(ticks1, ticks2):  # type: ignore[misc,no-redef]
        return ((ticks1 - ticks2 + 0x20000000) & 0x3FFFFFFF) - 0x20000000

try:
    from micropython import const  # `_NAME = const(n)`: folded, the name takes no heap
except ImportError:  # CPython

    def const(x):  # type: ignore[misc,no-redef]
        return x


TYPE_CHECKING = False  # mypy treats this name as true: tools/typecheck.py checks machine calls
if TYPE_CHECKING:
    from machine import UART  # noqa: F401  (used in type comments)

FAULT_READER = "reader"

TFI_HOST = 0xD4
TFI_CHIP = 0xD5
_TFI_ERROR = const(0x7F)

CMD_GET_FIRMWARE_VERSION = 0x02
CMD_SAM_CONFIGURATION = 0x14
CMD_RF_CONFIGURATION = 0x32
CMD_IN_LIST_PASSIVE_TARGET = 0x4A

_IC_PN532 = const(0x32)
_RF_ITEM_MAX_RETRIES = const(0x05)
_BRTY_106A = const(0x00)
_MAX_TARGETS = const(2)
_SEL_RES_ISO14443_4 = const(0x20)  # the tag speaks ISO 14443-4: the PN532 adds its ATS to the target data

ACK = b"\x00\x00\xff\x00\xff\x00"
NACK = b"\x00\x00\xff\xff\x00\x00"
# 0x55 wakes the HSU; the zeros give the PN532 time to start its oscillator before the frame (UM 7.2.11)
WAKE = b"\x55\x55\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"

CHUNK = 96  # received bytes parsed per poll (two targets with 10-byte UIDs and ATS fit in one)
_RESP_MAX = const(128)  # longest TFI+data accepted; anything longer is a wire glitch
_MAX_NACKS = const(2)

# last_error values
ERR_TIMEOUT = "timeout"  # no ACK or no answer before the deadline
ERR_CHECKSUM = "checksum"  # LCS/DCS still wrong after the NACKs
ERR_FRAME = "frame"  # wrong TFI, wrong answer code, error frame or impossible target data
ERR_CHIP = "not_pn532"  # GetFirmwareVersion answered with another IC
ERR_BUS = "bus"  # the UART call raised

# parser states
_P_SYNC0 = 0
_P_SYNC1 = 1
_P_LEN = 2
_P_LCS = 3
_P_BODY = 4
_P_DCS = 5
# parser events
_EV_NONE = const(0)
_EV_ACK = const(1)
_EV_FRAME = const(2)
_EV_BAD = const(3)
# command states
_S_START = const(0)  # (re)start the sequence: wake-up + SAMConfiguration
_S_ACK = const(1)  # command sent, waiting for the ACK
_S_RESP = const(2)  # ACK seen, waiting for the answer
_S_IDLE = const(3)  # configured; next scan when period_ms has passed
_S_BACKOFF = const(4)  # after a failure: wait retry_ms, then restart


def _frame(data):
    """A normal information frame from the host carrying `data` (command code and parameters)."""
    n = len(data) + 1
    out = bytearray(b"\x00\x00\xff")
    out.append(n)
    out.append((-n) & 0xFF)
    out.append(TFI_HOST)
    s = TFI_HOST
    for b in data:
        out.append(b)
        s += b
    out.append((-s) & 0xFF)
    out.append(0)
    return bytes(out)


class PN532:
    def __init__(self, uart, period_ms=100, ack_ms=150, resp_ms=400, fault_ms=2000, away_ms=500,
                 retry_ms=200):
        """uart: a machine.UART at 115200 8N1 with timeout=0 (reads must never wait).
        period_ms: time between scans; ack_ms / resp_ms: deadlines for the ACK and the answer after a
        command (the slow work polls every 50 ms, so both span several polls); fault_ms: no good
        answer for this long -> fault "reader"; away_ms: empty field this long ends a presentation;
        retry_ms: pause after a failure before the sequence starts again."""
        self.uart = uart  # type: UART
        self.period_ms = period_ms
        self.ack_ms = ack_ms
        self.resp_ms = resp_ms
        self.fault_ms = fault_ms
        self.away_ms = away_ms
        self.retry_ms = retry_ms
        # the sequence: step i sends _cmds[i] and expects the answer code _codes[i] + 1
        self._cmds = (
            WAKE + _frame((CMD_SAM_CONFIGURATION, 0x01, 0x14, 0x00)),  # normal mode, no IRQ line
            _frame((CMD_GET_FIRMWARE_VERSION,)),
            _frame((CMD_RF_CONFIGURATION, _RF_ITEM_MAX_RETRIES, 0xFF, 0x01, 0x01)),
            _frame((CMD_IN_LIST_PASSIVE_TARGET, _MAX_TARGETS, _BRTY_106A)),
        )
        self._codes = (CMD_SAM_CONFIGURATION, CMD_GET_FIRMWARE_VERSION, CMD_RF_CONFIGURATION,
                       CMD_IN_LIST_PASSIVE_TARGET)
        self._scan_step = 3
        self._chunk = bytearray(CHUNK)
        self._resp = bytearray(_RESP_MAX)  # TFI + data of the last frame received
        self._rlen = 0
        self._p = _P_SYNC0
        self._plen = 0
        self._pi = 0
        self._psum = 0
        self._st = _S_START
        self._step = 0
        self._t = 0  # when the current command was sent / the idle or backoff pause began
        self._nacks = 0
        self._t_good = None  # last good scan answer (the first poll until then)
        self._cur = bytearray(10)  # UID of the tag being presented
        self._cur_len = 0
        self._cur_seen = 0
        self._uid_at = [0, 0]  # offsets of the targets' UIDs in _resp
        self._uid_len = [0, 0]
        self._report = None  # type: str | None
        self.fault = None  # type: str | None
        self.last_error = None  # type: str | None
        self.multiple = False  # two tags in the field at the last scan
        # (IC, Ver, Rev, Support) from GetFirmwareVersion
        self.firmware = None  # type: tuple | None
        self.errors = 0  # failed commands (each restarted the sequence)
        self.bad_frames = 0  # frames with a bad LCS/DCS (NACKed or ignored)
        self.inits = 0  # completed configuration sequences (> 1: the reader was re-initialised)
        self.scans = 0  # good InListPassiveTarget answers
        self.presentations = 0

    @property
    def ok(self):
        return self.fault is None

    @property
    def ready(self):
        """Configured and scanning."""
        return self._step == self._scan_step and self._st != _S_START and self._st != _S_BACKOFF

    # -- the poll --------------------------------------------------------------------------------
    def poll(self, now_ms):
        """One bounded step: parse what has arrived, act on it, send at most one command.
        Returns the UID (hex) of a new presentation, else None."""
        if self._t_good is None:
            self._t_good = now_ms
        try:
            self._receive(now_ms)
            st = self._st
            if st == _S_ACK:
                if ticks_diff(now_ms, self._t) >= self.ack_ms:
                    self._fail(now_ms, ERR_TIMEOUT)
            elif st == _S_RESP:
                if ticks_diff(now_ms, self._t) >= self.resp_ms:
                    self._fail(now_ms, ERR_TIMEOUT)
            elif st == _S_IDLE:
                if ticks_diff(now_ms, self._t) >= self.period_ms:
                    self._send(now_ms, self._scan_step)
            elif st == _S_BACKOFF:
                if ticks_diff(now_ms, self._t) >= self.retry_ms:
                    self._send(now_ms, 0)
            else:
                self._send(now_ms, 0)
        except OSError:
            self._fail(now_ms, ERR_BUS)
        if ticks_diff(now_ms, self._t_good) >= self.fault_ms:
            self.fault = FAULT_READER
        uid = self._report
        self._report = None
        return uid

    # -- commands --------------------------------------------------------------------------------
    def _send(self, now_ms, step):
        self._step = step
        self._nacks = 0
        self._t = now_ms
        self._st = _S_ACK
        self.uart.write(self._cmds[step])

    def _fail(self, now_ms, why):
        self.errors += 1
        self.last_error = why
        self._st = _S_BACKOFF
        self._step = 0
        self._t = now_ms
        self._p = _P_SYNC0
        try:
            self.uart.write(ACK)  # abort whatever the PN532 is still doing
            self._discard()
        except OSError:
            pass

    def _discard(self):
        """Drop what is in the receive buffer (stale answers, garbage), one chunk at most."""
        n = self.uart.any()
        if n:
            self.uart.readinto(self._chunk, n if n < CHUNK else CHUNK)

    def _receive(self, now_ms):
        n = self.uart.any()
        if not n:
            return
        got = self.uart.readinto(self._chunk, n if n < CHUNK else CHUNK)
        if not got:
            return
        buf = self._chunk
        for i in range(got):
            ev = self._parse(buf[i])
            if ev == _EV_NONE:
                continue
            st = self._st
            if ev == _EV_ACK:
                if st == _S_ACK:
                    self._st = _S_RESP
            elif ev == _EV_BAD:
                self.bad_frames += 1
                if st == _S_RESP:
                    if self._nacks < _MAX_NACKS:
                        self._nacks += 1
                        self._t = now_ms
                        self.uart.write(NACK)
                    else:
                        self._fail(now_ms, ERR_CHECKSUM)
                        return
                # before the ACK a bad frame is the mangled ACK: the answer or the deadline follows
            elif st == _S_ACK or st == _S_RESP:
                # an answer counts even when its ACK was lost on the wire: the answer proves receipt
                if not self._answer(now_ms):
                    return  # failed: the rest of the chunk is stale
            # a frame while idle is a stale repeat: ignored

    def _answer(self, now_ms):
        r = self._resp
        if self._rlen < 2 or r[0] != TFI_CHIP or r[1] != self._codes[self._step] + 1:
            self._fail(now_ms, ERR_FRAME)  # also the error frame (TFI 7F)
            return False
        step = self._step
        if step == 1:
            if self._rlen < 6 or r[2] != _IC_PN532:
                self._fail(now_ms, ERR_CHIP)
                return False
            if self.firmware is None:
                self.firmware = (r[2], r[3], r[4], r[5])
        elif step == self._scan_step:
            if not self._scan(now_ms):
                self._fail(now_ms, ERR_FRAME)
                return False
            self.scans += 1
            self.fault = None
            # only a scan counts as the reader working: one that answers its configuration and then
            # fails every scan (a broken RF front end) would otherwise never become a fault
            self._t_good = now_ms
        if step == self._scan_step - 1:
            self.inits += 1
        if step < self._scan_step:
            self._send(now_ms, step + 1)  # the configuration steps follow each other at once
        else:
            self._st = _S_IDLE  # _t stays the scan's send time: scans start every period_ms
        return True

    # -- frames ----------------------------------------------------------------------------------
    def _parse(self, b):
        """Feed one received byte; returns an _EV_ code."""
        p = self._p
        if p == _P_BODY:
            self._resp[self._pi] = b
            self._pi += 1
            self._psum += b
            if self._pi == self._plen:
                self._p = _P_DCS
            return _EV_NONE
        if p == _P_SYNC0:
            if b == 0x00:
                self._p = _P_SYNC1
            return _EV_NONE
        if p == _P_SYNC1:
            if b == 0xFF:
                self._p = _P_LEN
            elif b != 0x00:
                self._p = _P_SYNC0
            return _EV_NONE
        if p == _P_LEN:
            self._plen = b
            self._p = _P_LCS
            return _EV_NONE
        if p == _P_LCS:
            n = self._plen
            self._p = _P_SYNC0
            if n == 0 and b == 0xFF:
                return _EV_ACK
            if (n + b) & 0xFF or n > _RESP_MAX:
                return _EV_BAD  # also NACK and extended frames, which the PN532 does not send us
            self._pi = 0
            self._psum = 0
            self._p = _P_BODY
            return _EV_NONE
        # _P_DCS
        self._p = _P_SYNC0
        if (self._psum + b) & 0xFF:
            return _EV_BAD
        self._rlen = self._plen
        return _EV_FRAME

    # -- targets ---------------------------------------------------------------------------------
    def _scan(self, now_ms):
        """Check the InListPassiveTarget answer (D5 4B NbTg [Tg SENS_RES(2) SEL_RES NFCIDLength
        NFCID1 (ATS)]...) and track the presentation. False: impossible target data."""
        r = self._resp
        n = self._rlen
        if n < 3:
            return False
        count = r[2]
        if count > _MAX_TARGETS:
            return False
        i = 3
        for t in range(count):
            if i + 5 > n:
                return False
            sel = r[i + 3]
            idl = r[i + 4]
            i += 5
            if idl < 1 or idl > 10 or i + idl > n:
                return False
            self._uid_at[t] = i
            self._uid_len[t] = idl
            i += idl
            if sel & _SEL_RES_ISO14443_4:
                if i >= n or r[i] < 1:
                    return False
                i += r[i]  # TL counts itself
                if i > n:
                    return False
        if count == 0:
            self.multiple = False
            if self._cur_len and ticks_diff(now_ms, self._cur_seen) >= self.away_ms:
                self._cur_len = 0  # the presentation is over
        elif count == 2:
            self.multiple = True
            if self._is_cur(0) or self._is_cur(1):
                self._cur_seen = now_ms
        else:
            self.multiple = False
            if self._is_cur(0):
                self._cur_seen = now_ms
            else:
                self._present(now_ms)
        return True

    def _is_cur(self, t):
        n = self._uid_len[t]
        if n != self._cur_len:
            return False
        at = self._uid_at[t]
        r = self._resp
        cur = self._cur
        for k in range(n):
            if r[at + k] != cur[k]:
                return False
        return True

    def _present(self, now_ms):
        at = self._uid_at[0]
        n = self._uid_len[0]
        r = self._resp
        s = ""
        for k in range(n):
            self._cur[k] = r[at + k]
            s += "%02X" % r[at + k]
        self._cur_len = n
        self._cur_seen = now_ms
        self._report = s
        self.presentations += 1
