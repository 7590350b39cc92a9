# PN532 driver against its frame-level twin (board/sim/pn532_sim.py), polled every 50 ms as the slow
# work does: the configuration sequence, 4/7/10-byte UIDs, one report per presentation, two tags,
# damaged frames (NACKed, never reported), a silent reader -> fault "reader" and recovery, a reset
# in the middle of a command, bounded work and no allocation per poll.
from board.sim.clock import VirtualClock
from board.sim.pn532_sim import PN532Sim
from drivers import pn532 as R
from mpcompat import heap_locked

POLL_MS = 50
UID4 = "04A1B2C3"
UID7 = "04112233445566"
UID10 = "0411223344556677889A"


def rig(start_ms=0, **kw):
    clock = VirtualClock(start_ms)
    chip = PN532Sim(clock)
    return clock, chip, R.PN532(chip.uart, **kw)


def run(clock, rd, ms):
    """Poll every 50 ms for `ms`; the uids reported, in order."""
    got = []
    for _ in range(ms // POLL_MS):
        clock.advance(POLL_MS)
        uid = rd.poll(clock.ticks_ms())
        if uid is not None:
            got.append(uid)
    return got


def ready(**kw):
    clock, chip, rd = rig(**kw)
    assert run(clock, rd, 500) == []
    assert rd.ready and rd.ok and rd.errors == 0
    return clock, chip, rd


class ScriptUART:
    """A UART whose incoming bytes the test writes by hand; records what the driver sends."""

    def __init__(self):
        self.rx = bytearray()
        self.tx = bytearray()

    def any(self):
        return len(self.rx)

    def readinto(self, buf, n):
        n = min(n, len(self.rx), len(buf))
        for i in range(n):
            buf[i] = self.rx[i]
        self.rx = self.rx[n:]
        return n or None

    def write(self, buf):
        self.tx.extend(buf)
        return len(buf)


def test_frame_layout_matches_the_user_manual():
    # InListPassiveTarget, 1 target, 106 kbps A: the frame the manual's example shows
    assert R._frame((0x4A, 0x01, 0x00)) == bytes((0x00, 0x00, 0xFF, 0x04, 0xFC, 0xD4, 0x4A, 0x01, 0x00,
                                                   0xE1, 0x00))
    assert R._frame((0x02,)) == bytes((0x00, 0x00, 0xFF, 0x02, 0xFE, 0xD4, 0x02, 0x2A, 0x00))


def test_configuration_sequence():
    clock, chip, rd = rig()
    assert chip.asleep and not rd.ready
    clock.advance(POLL_MS)
    assert rd.poll(clock.ticks_ms()) is None
    assert not chip.asleep and chip.commands == 1  # woken, SAMConfiguration accepted
    assert run(clock, rd, 300) == []
    assert chip.sam_configured  # low-VBat mode left
    assert rd.ready and rd.ok and rd.fault is None
    assert rd.firmware == (0x32, 1, 6, 7)
    assert chip.max_retries_pa == 0x01  # never the default 0xFF: every scan gets an answer
    assert rd.inits == 1 and rd.errors == 0 and rd.bad_frames == 0
    n = rd.scans
    run(clock, rd, 1000)
    assert 9 <= rd.scans - n <= 11  # one scan per period_ms (100 ms)


def test_uids_of_4_7_and_10_bytes():
    clock, chip, rd = ready()
    for uid in (UID4, UID7, UID10):
        chip.present(uid)
        assert run(clock, rd, 300) == [uid]
        chip.remove()
        assert run(clock, rd, 1000) == []
    assert rd.presentations == 3 and rd.errors == 0


def test_tag_held_for_a_long_time_is_one_presentation():
    clock, chip, rd = ready()
    chip.present(UID7)
    n = rd.scans
    assert run(clock, rd, 60000) == [UID7]
    assert rd.scans - n > 500  # it kept scanning all the while


def test_new_presentation_only_after_the_tag_was_away():
    clock, chip, rd = ready()
    chip.present(UID4)
    assert run(clock, rd, 300) == [UID4]
    chip.remove()
    run(clock, rd, 200)  # shorter than away_ms: a tag at the edge of the field, not a new tap
    chip.present(UID4)
    assert run(clock, rd, 1000) == []
    chip.remove()
    assert run(clock, rd, 1000) == []
    chip.present(UID4)
    assert run(clock, rd, 300) == [UID4]
    chip.remove(UID4)
    chip.present(UID7)  # another card straight away: a presentation of its own
    assert run(clock, rd, 300) == [UID7]


def test_two_tags_in_the_field():
    for _ in range(2):  # deterministic: the same story twice gives the same reports
        clock, chip, rd = ready()
        chip.present(UID4)
        chip.present(UID7)
        assert run(clock, rd, 2000) == [] and rd.multiple
        chip.remove(UID4)
        assert run(clock, rd, 300) == [UID7] and not rd.multiple
        # the presented tag stays presented while a second one joins and leaves
        chip.present(UID10)
        assert run(clock, rd, 1000) == [] and rd.multiple
        chip.remove(UID10)
        assert run(clock, rd, 1000) == []
        # the second one stays when the presented one goes: now it is presented
        chip.present(UID10)
        run(clock, rd, 300)
        chip.remove(UID7)
        assert run(clock, rd, 300) == [UID10]


def test_damaged_answer_is_nacked_and_read_again():
    for kind in ("dcs", "data", "lcs"):
        clock, chip, rd = ready()
        chip.present(UID7)
        chip.corrupt(1, kind)
        assert run(clock, rd, 300) == [UID7], kind
        assert rd.bad_frames == 1 and chip.nacks == 1 and rd.errors == 0, kind


def test_damaged_uid_is_never_reported():
    clock, chip, rd = ready()
    chip.present(UID4)
    chip.corrupt(3, "data")  # the answer and both repeats flip a UID byte: only the DCS shows it
    got = run(clock, rd, 2000)
    assert got == [UID4]  # after the re-init, the good one; never the damaged one
    assert rd.errors == 1 and rd.last_error == R.ERR_CHECKSUM and chip.nacks == 2
    assert rd.inits == 2 and rd.ok


def test_damaged_ack_and_garbage_on_the_line():
    clock, chip, rd = ready()
    chip.present(UID10)
    chip.corrupt(1, "ack")
    assert run(clock, rd, 300) == [UID10]  # the answer itself proves receipt
    assert rd.bad_frames == 1 and rd.errors == 0
    chip.remove()
    run(clock, rd, 1000)
    chip.garbage(b"\x00\xff\x07\x12\xd5\x4b\x00\xff\x00\x00\xff")  # a frame start, half a frame
    chip.present(UID4)
    assert run(clock, rd, 1000) == [UID4]
    assert rd.ok


def test_wrong_tfi_error_frame_and_other_ic_are_rejected():
    for answer, err in (
        (b"\x00\x00\xff\x00\xff\x00" + b"\x00\x00\xff\x02\xfe\xd4\x15\x17\x00", R.ERR_FRAME),  # TFI D4
        (b"\x00\x00\xff\x01\xff\x7f\x81\x00", R.ERR_FRAME),  # error frame
        (b"\x00\x00\xff\x00\xff\x00" + b"\x00\x00\xff\x02\xfe\xd5\x13\x18\x00", R.ERR_FRAME),  # code
    ):
        u = ScriptUART()
        rd = R.PN532(u)
        assert rd.poll(0) is None
        assert bytes(u.tx) == R.WAKE + R._frame((0x14, 0x01, 0x14, 0x00))
        u.rx.extend(answer)
        rd.poll(50)
        assert rd.errors == 1 and rd.last_error == err and not rd.ready
        assert bytes(u.tx).endswith(R.ACK)  # the command was aborted
    # SAMConfiguration answered, then GetFirmwareVersion says another IC (0x31)
    u = ScriptUART()
    rd = R.PN532(u)
    rd.poll(0)
    u.rx.extend(b"\x00\x00\xff\x00\xff\x00\x00\x00\xff\x02\xfe\xd5\x15\x16\x00")
    rd.poll(50)
    assert rd.errors == 0 and bytes(u.tx).endswith(R._frame((0x02,)))
    u.rx.extend(b"\x00\x00\xff\x00\xff\x00\x00\x00\xff\x06\xfa\xd5\x03\x31\x01\x06\x07\xe9\x00")
    rd.poll(100)
    assert rd.errors == 1 and rd.last_error == R.ERR_CHIP


def test_silent_reader_becomes_a_fault_and_recovers():
    clock, chip, rd = ready()
    chip.present(UID4)
    assert run(clock, rd, 300) == [UID4]
    t_good = clock.ticks_ms()  # the last good scan answered at this poll, at the latest
    chip.mute = True  # a cut wire: nothing in, nothing out
    t_fault = None
    for _ in range(60):
        clock.advance(POLL_MS)
        assert rd.poll(clock.ticks_ms()) is None
        if t_fault is None and not rd.ok:
            t_fault = clock.ticks_ms()
    assert rd.fault == R.FAULT_READER and not rd.ok and rd.errors >= 3
    assert 2000 - 100 <= t_fault - t_good <= 2000 + POLL_MS, t_fault - t_good
    chip.mute = False
    assert run(clock, rd, 1000) == []  # the tag held through the outage is not presented again
    assert rd.ok and rd.ready and rd.inits >= 2
    chip.remove()
    run(clock, rd, 1000)
    chip.present(UID7)
    assert run(clock, rd, 300) == [UID7]


def test_reader_that_configures_but_never_scans_is_a_fault():
    clock, chip, rd = ready()
    chip.broken_rf = True
    run(clock, rd, 1800)
    assert rd.ok and rd.inits >= 3  # it keeps re-initialising: each configuration step answers
    run(clock, rd, 300)
    assert rd.fault == R.FAULT_READER and rd.last_error == R.ERR_FRAME
    chip.broken_rf = False
    run(clock, rd, 1000)
    assert rd.ok


def test_no_reader_at_boot_is_a_fault():
    clock, chip, rd = rig()
    chip.mute = True
    run(clock, rd, 1900)
    assert rd.ok  # not yet: fault_ms is 2000
    run(clock, rd, 200)
    assert rd.fault == R.FAULT_READER and not rd.ready and rd.firmware is None
    chip.mute = False
    run(clock, rd, 1000)
    assert rd.ok and rd.ready


def test_reset_in_the_middle_of_a_scan():
    clock, chip, rd = ready()
    chip.present(UID4)
    assert run(clock, rd, 300) == [UID4]
    for _ in range(10):  # stop right after a poll that sent a scan: the chip owes the answer
        clock.advance(POLL_MS)
        rd.poll(clock.ticks_ms())
        if chip._busy:
            break
    assert chip._busy
    chip.reset()
    assert run(clock, rd, 1500) == []  # the tag held through the reset is not presented again
    assert rd.ok and rd.ready and rd.inits == 2 and rd.last_error == R.ERR_TIMEOUT
    assert chip.sam_configured and chip.max_retries_pa == 0x01  # configured again
    chip.remove()
    run(clock, rd, 1000)
    chip.present(UID10)
    assert run(clock, rd, 300) == [UID10]


def test_reset_between_scans_and_tick_wrap():
    clock, chip, rd = ready(start_ms=VirtualClock(0).ticks_ms() - 1200)  # starts 1.2 s before the wrap
    chip.reset()  # asleep: the next scan is ignored, its deadline passes across the wrap
    run(clock, rd, 1500)
    assert rd.ok and rd.ready and rd.inits == 2 and chip.ignored == 0  # asleep: not even parsed
    chip.present(UID7)
    assert run(clock, rd, 300) == [UID7]


def test_the_simulators_tag_op_reaches_the_driver():
    from board.sim.plant import Plant

    clock = VirtualClock(0)
    plant = Plant(clock)
    chip = PN532Sim(clock, tag_source=plant.pop_tag)  # the SimBoard wiring (docs/hardware.md)
    rd = R.PN532(chip.uart)
    run(clock, rd, 500)
    assert plant.ev_op({"op": "tag", "id": "04A1B2"}) is None
    assert run(clock, rd, 300) == ["04A1B2"]
    assert run(clock, rd, 2000) == []  # held for tag_hold_ms, then taken away: one presentation
    assert plant.ev_op({"op": "tag", "id": "DEADBEEF"}) is None
    run(clock, rd, 100)
    assert plant.ev_op({"op": "tag", "id": "04A1B2"}) is None  # the next card replaces it
    assert run(clock, rd, 300) == ["04A1B2"]
    assert plant.ev_op({"op": "tag", "id": "not-hex"}) is None  # the op takes it; no tag has it
    assert run(clock, rd, 2000) == [] and chip.dropped_ids == 1 and rd.ok


class CountingUART:
    """Counts what the driver asks of the UART in one poll."""

    def __init__(self, inner):
        self.inner = inner
        self.read = 0
        self.writes = 0

    def any(self):
        return self.inner.any()

    def readinto(self, buf, n):
        got = self.inner.readinto(buf, n)
        self.read += got or 0
        return got

    def write(self, buf):
        self.writes += 1
        return self.inner.write(buf)


def test_bounded_work_per_poll():
    clock = VirtualClock(0)
    chip = PN532Sim(clock)
    u = CountingUART(chip.uart)
    rd = R.PN532(u)
    worst_read = 0
    worst_writes = 0
    for i in range(400):
        if i % 50 == 10:
            chip.garbage(bytes(300))  # a flood on the line
        if i % 50 == 20:
            chip.corrupt(3, "dcs")
        if i % 50 == 30:
            chip.reset()
        if i % 50 == 35:
            chip.present(UID10)
            chip.present(UID7)
        if i % 50 == 45:
            chip.remove()
        u.read = 0
        u.writes = 0
        clock.advance(POLL_MS)
        rd.poll(clock.ticks_ms())
        worst_read = max(worst_read, u.read)
        worst_writes = max(worst_writes, u.writes)
    assert worst_read <= 2 * R.CHUNK  # one chunk, plus one discarded after a failure
    assert worst_writes <= 2  # a command, or a NACK / abort ACK and the next command
    run(clock, rd, 2000)
    assert rd.ok and rd.ready


def test_steady_state_polls_allocate_nothing():
    clock, chip, rd = ready()

    def polls():
        n = 0
        for _ in range(40):
            clock.advance(POLL_MS)
            if rd.poll(clock.ticks_ms()) is not None:
                n += 1
        return n

    s0 = rd.scans
    assert heap_locked(polls) == 0  # empty field
    chip.present(UID10)  # 10-byte UID with an ATS: the longest answer
    assert run(clock, rd, 300) == [UID10]
    assert heap_locked(polls) == 0  # the tag held
    chip.present(UID4)
    assert heap_locked(polls) == 0  # two tags
    assert rd.scans - s0 >= 55 and rd.errors == 0 and rd.multiple
