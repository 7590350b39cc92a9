# Frame-level twin of an NXP PN532 on HSU, for drivers/pn532.py. `PN532Sim(clock).uart` is the
# host's end of the serial line, with the machine.UART calls the driver uses (write, any, readinto,
# read); the chip parses the host's frames byte by byte, ACKs good commands at once and answers after
# `resp_delay_ms` of board time, as the real one does (UM0701-02 frame format, see drivers/pn532.py).
#
# Modelled: power-on in low-VBat mode (asleep until a 0x55 arrives, then only SAMConfiguration is
# accepted), GetFirmwareVersion, RFConfiguration MaxRetries (with the default 0xFF an empty field
# makes InListPassiveTarget wait for a tag for ever), InListPassiveTarget at 106 kbps type A with up
# to two targets (4/7/10-byte UIDs, an ATS for ISO 14443-4 tags), ACK from the host = abort, NACK =
# send the last answer again, an error frame for an unknown command.
# Misbehaviours: corrupt(n, kind) (bad DCS / data / LCS / ACK on the next n frames), mute (no answer
# at all, a cut wire), broken_rf (configuration answered, scans answered with error frames),
# garbage(data) (bytes on the line), reset() (the chip restarts, mid-command or not: the answer it
# owed is lost and its configuration with it), present() of two tags, long holds.
# tag_source (e.g. plant.pop_tag) is asked at every bus access: a uid it returns is presented for
# tag_hold_ms, which is how the simulator's `tag` op reaches the reader. Allocation-free while
# scanning (steady state), so the driver's heap_locked test covers driver and twin together.
from firmware.ticks import ticks_add, ticks_diff

TFI_HOST = 0xD4
TFI_CHIP = 0xD5

CMD_GET_FIRMWARE_VERSION = 0x02
CMD_SAM_CONFIGURATION = 0x14
CMD_RF_CONFIGURATION = 0x32
CMD_IN_LIST_PASSIVE_TARGET = 0x4A

FIRMWARE = (0x32, 0x01, 0x06, 0x07)  # IC PN532, version 1.6, ISO 14443A/B + ISO 18092 supported
ATS = (0x05, 0x78, 0x80, 0x70, 0x02)  # TL=5, T0, TA, TB, TC of a typical ISO 14443-4 tag

KIND_DCS = "dcs"  # the DCS byte itself
KIND_DATA = "data"  # the last data byte (a UID byte in a scan answer): only the DCS can tell
KIND_LCS = "lcs"
KIND_ACK = "ack"

_P_SYNC0 = 0
_P_SYNC1 = 1
_P_LEN = 2
_P_LCS = 3
_P_BODY = 4
_P_DCS = 5

_OUT_MAX = 512  # the host UART's receive buffer: bytes beyond it are lost (overrun)


class SimUART:
    """The host's end of the line (the subset of machine.UART that drivers/pn532.py uses)."""

    def __init__(self, chip):
        self._chip = chip

    def init(self, *args, **kwargs):
        pass

    def deinit(self):
        pass

    def any(self):
        return self._chip._host_any()

    def readinto(self, buf, nbytes=-1):
        n = len(buf) if nbytes < 0 or nbytes > len(buf) else nbytes
        got = self._chip._host_read(buf, n)
        return got if got else None  # timeout=0 with nothing there: None, as on the port

    def read(self, nbytes=-1):
        avail = self.any()
        n = avail if nbytes < 0 or nbytes > avail else nbytes
        if not n:
            return None
        buf = bytearray(n)
        self._chip._host_read(buf, n)
        return bytes(buf)

    def write(self, buf):
        self._chip._host_write(buf)
        return len(buf)

    def flush(self):
        pass


def uid_bytes(uid_hex):
    """'04A1B2C3' -> b'\\x04\\xa1\\xb2\\xc3'; ValueError unless it is 1..10 bytes of hex."""
    if not isinstance(uid_hex, str) or not uid_hex or len(uid_hex) % 2 or len(uid_hex) > 20:
        raise ValueError("uid must be 1..10 bytes of hex")
    out = bytearray()
    for i in range(0, len(uid_hex), 2):
        out.append(int(uid_hex[i:i + 2], 16))
    return bytes(out)


class PN532Sim:
    def __init__(self, clock, tag_source=None, tag_hold_ms=1000, resp_delay_ms=15, scan_delay_ms=25):
        self.clock = clock
        self.uart = SimUART(self)
        self.tag_source = tag_source
        self.tag_hold_ms = tag_hold_ms
        self.resp_delay_ms = resp_delay_ms  # command -> answer
        self.scan_delay_ms = scan_delay_ms  # InListPassiveTarget -> answer (RF activation tries)
        self._out = bytearray(_OUT_MAX)  # chip -> host, not yet read
        self._olen = 0
        self._opos = 0
        self._ans = bytearray(160)  # the answer being prepared (frame bytes)
        self._alen = 0
        self._last = bytearray(160)  # last answer sent (for NACK)
        self._last_len = 0
        self._cmd = bytearray(64)  # TFI + data of the command being parsed / executed
        self._clen = 0
        self._p = _P_SYNC0
        self._plen = 0
        self._pi = 0
        self._psum = 0
        self._busy = False  # a command is accepted and its answer is owed
        self._due = 0  # when the answer is ready
        self.tags = []  # [uid bytes, sel_res, until ticks or None], in the order presented
        self.mute = False
        self.broken_rf = False  # configuration answered, every scan answered with an error frame
        self._corrupt = 0
        self._corrupt_kind = KIND_DCS
        # observable state for tests
        self.asleep = True
        self.sam_configured = False
        self.max_retries_pa = 0xFF
        self.commands = 0  # commands accepted (ACKed)
        self.scans = 0  # InListPassiveTarget answers sent
        self.nacks = 0
        self.aborts = 0
        self.resets = 0
        self.bad_host_frames = 0
        self.ignored = 0  # commands ignored in low-VBat mode
        self.dropped_ids = 0  # tag_source ids that are not a UID
        self.overruns = 0

    # -- test / simulator API ------------------------------------------------------------------
    def present(self, uid_hex, hold_ms=None, sel_res=None):
        """Put a tag in the field (for hold_ms, None = until remove()). sel_res defaults by UID size:
        4 bytes 0x08 (MIFARE Classic), 7 bytes 0x00 (Ultralight/NTAG), 10 bytes 0x20 (ISO 14443-4,
        with an ATS). The same uid again only renews its hold."""
        uid = uid_bytes(uid_hex)
        if sel_res is None:
            sel_res = 0x08 if len(uid) == 4 else 0x20 if len(uid) == 10 else 0x00
        until = None if hold_ms is None else ticks_add(self.clock.ticks_ms(), hold_ms)
        for t in self.tags:
            if t[0] == uid:
                t[1] = sel_res
                t[2] = until
                return
        if len(self.tags) >= 2:
            raise ValueError("the twin models at most two tags in the field")
        self.tags.append([uid, sel_res, until])

    def remove(self, uid_hex=None):
        """Take one tag (or all) out of the field."""
        if uid_hex is None:
            self.tags = []
            return
        uid = uid_bytes(uid_hex)
        self.tags = [t for t in self.tags if t[0] != uid]

    def corrupt(self, n=1, kind=KIND_DCS):
        """The next n frames the chip sends (answers, or ACKs with kind 'ack') go out damaged."""
        self._corrupt = n
        self._corrupt_kind = kind

    def garbage(self, data):
        """Bytes on the line towards the host (a wire glitch)."""
        for b in data:
            self._emit(b)

    def reset(self):
        """The chip restarts (brown-out, RSTPDN): the answer it owed is lost, the configuration too,
        and it sleeps in low-VBat mode until woken. Bytes already on the line stay there."""
        self._busy = False
        self._p = _P_SYNC0
        self.asleep = True
        self.sam_configured = False
        self.max_retries_pa = 0xFF
        self.resets += 1

    # -- the host's side of the UART -----------------------------------------------------------
    def _host_any(self):
        self._sync()
        return self._olen - self._opos

    def _host_read(self, buf, n):
        self._sync()
        avail = self._olen - self._opos
        if n > avail:
            n = avail
        out = self._out
        pos = self._opos
        for i in range(n):
            buf[i] = out[pos + i]
        self._opos = pos + n
        if self._opos == self._olen:
            self._opos = 0
            self._olen = 0
        return n

    def _host_write(self, buf):
        self._sync()
        if self.mute:
            return
        for b in buf:
            self._rx(b)

    # -- time ----------------------------------------------------------------------------------
    def _sync(self):
        now = self.clock.ticks_ms()
        src = self.tag_source
        if src is not None:
            uid = src()
            if uid is not None:
                self._feed(uid)
        tags = self.tags
        for i in range(len(tags) - 1, -1, -1):
            until = tags[i][2]
            if until is not None and ticks_diff(now, until) >= 0:
                tags.pop(i)
        if self._busy and not self.mute and ticks_diff(now, self._due) >= 0:
            self._execute()

    def _feed(self, uid):
        """A `tag` op: whatever the op put down before is taken away, this one is held."""
        try:
            uid_bytes(uid)
        except ValueError:
            self.dropped_ids += 1
            return
        for t in self.tags:
            if t[0] == uid_bytes(uid):
                self.present(uid, self.tag_hold_ms)
                return
        self.tags = []
        self.present(uid, self.tag_hold_ms)

    # -- receiving the host's frames -----------------------------------------------------------
    def _rx(self, b):
        if self.asleep:
            if b == 0x55:
                self.asleep = False
                self._p = _P_SYNC0
            return
        p = self._p
        if p == _P_BODY:
            if self._pi < len(self._cmd):
                self._cmd[self._pi] = b
            self._pi += 1
            self._psum += b
            if self._pi == self._plen:
                self._p = _P_DCS
        elif p == _P_SYNC0:
            if b == 0x00:
                self._p = _P_SYNC1
        elif p == _P_SYNC1:
            if b == 0xFF:
                self._p = _P_LEN
            elif b != 0x00:
                self._p = _P_SYNC0
        elif p == _P_LEN:
            self._plen = b
            self._p = _P_LCS
        elif p == _P_LCS:
            n = self._plen
            self._p = _P_SYNC0
            if n == 0 and b == 0xFF:
                self._host_ack()
            elif n == 0xFF and b == 0x00:
                self._host_nack()
            elif (n + b) & 0xFF or n < 2 or n > len(self._cmd):
                self.bad_host_frames += 1
            else:
                self._pi = 0
                self._psum = 0
                self._p = _P_BODY
        else:  # _P_DCS
            self._p = _P_SYNC0
            if (self._psum + b) & 0xFF or self._cmd[0] != TFI_HOST:
                self.bad_host_frames += 1
            else:
                self._clen = self._plen
                self._command()

    def _host_ack(self):
        if self._busy:
            self._busy = False
            self.aborts += 1

    def _host_nack(self):
        self.nacks += 1
        self._send_frame(self._last, self._last_len)  # the repeat can be hit by a glitch too

    def _command(self):
        code = self._cmd[1]
        if not self.sam_configured and code != CMD_SAM_CONFIGURATION:
            self.ignored += 1  # low-VBat mode: nothing but SAMConfiguration
            return
        self.commands += 1
        self._send_ack()
        self._busy = True
        delay = self.scan_delay_ms if code == CMD_IN_LIST_PASSIVE_TARGET else self.resp_delay_ms
        self._due = ticks_add(self.clock.ticks_ms(), delay)

    # -- answering -----------------------------------------------------------------------------
    def _execute(self):
        c = self._cmd
        code = c[1]
        n = self._clen  # TFI + code + parameters
        a = self._ans
        self._alen = 0
        if code == CMD_SAM_CONFIGURATION and n >= 3:
            self.sam_configured = True
            self._begin(code)
        elif code == CMD_GET_FIRMWARE_VERSION:
            self._begin(code)
            for b in FIRMWARE:
                self._put(b)
        elif code == CMD_RF_CONFIGURATION and n >= 3:
            if c[2] == 0x05 and n >= 6:
                self.max_retries_pa = c[5]
            self._begin(code)
        elif code == CMD_IN_LIST_PASSIVE_TARGET and n >= 4 and 1 <= c[2] <= 2 and not self.broken_rf:
            tags = self.tags
            if not tags and self.max_retries_pa == 0xFF:
                return  # retries for ever: keeps waiting for a tag (stays busy)
            self._begin(code)
            count = 0 if c[3] != 0x00 else min(len(tags), c[2])
            self._put(count)
            for i in range(count):
                uid = tags[i][0]
                sel = tags[i][1]
                self._put(i + 1)
                self._put(0x00)
                self._put(0x04 if len(uid) == 4 else 0x44 if len(uid) == 7 else 0x84)
                self._put(sel)
                self._put(len(uid))
                for b in uid:
                    self._put(b)
                if sel & 0x20:
                    for b in ATS:
                        self._put(b)
            self.scans += 1
        else:
            self._busy = False
            self._error_frame()
            return
        self._busy = False
        self._finish()
        for i in range(self._alen):
            self._last[i] = a[i]
        self._last_len = self._alen
        self._send_frame(a, self._alen)

    def _begin(self, code):
        a = self._ans
        a[0] = 0x00
        a[1] = 0x00
        a[2] = 0xFF
        a[3] = 0  # LEN, LCS: set by _finish
        a[4] = 0
        a[5] = TFI_CHIP
        a[6] = code + 1
        self._alen = 7

    def _put(self, b):
        self._ans[self._alen] = b
        self._alen += 1

    def _finish(self):
        a = self._ans
        n = self._alen - 5  # TFI + data
        a[3] = n
        a[4] = (-n) & 0xFF
        s = 0
        for i in range(5, self._alen):
            s += a[i]
        self._put((-s) & 0xFF)
        self._put(0x00)

    def _send_frame(self, a, n):
        bad = -1
        if self._corrupt > 0 and self._corrupt_kind != KIND_ACK:
            self._corrupt -= 1
            kind = self._corrupt_kind
            bad = n - 2 if kind == KIND_DCS else n - 3 if kind == KIND_DATA else 4
        for i in range(n):
            self._emit(a[i] ^ 0x5A if i == bad else a[i])

    def _send_ack(self):
        bad = False
        if self._corrupt > 0 and self._corrupt_kind == KIND_ACK:
            self._corrupt -= 1
            bad = True
        self._emit(0x00)
        self._emit(0x00)
        self._emit(0xFF)
        self._emit(0x00)
        self._emit(0xFE if bad else 0xFF)
        self._emit(0x00)

    def _error_frame(self):
        for b in (0x00, 0x00, 0xFF, 0x01, 0xFF, 0x7F, 0x81, 0x00):
            self._emit(b)

    def _emit(self, b):
        if self._olen >= _OUT_MAX:
            self.overruns += 1
            return
        self._out[self._olen] = b
        self._olen += 1
