# firmware/sessions.py: ids, persistence before publishing, power-loss recovery, ack, bound.
from firmware import sessions
from firmware.storage import Storage
from mpcompat import TempDir


def _log(path, boot):
    return sessions.SessionLog(Storage(path), "SIM0001", boot)


def test_open_checkpoint_close_and_ack():
    d = TempDir("sess")
    log = _log(d.path, 7)
    assert log.recover(1000, None) is None
    sid = log.open("tag:04A1B2", 1000, 1763710000)
    assert sid == "SIM0001-7-1" and log.current["id"] == sid
    log.checkpoint(1500)
    # the open record is on flash after every checkpoint
    assert Storage(d.path).read_json(sessions.OPEN_NAME)["meter_end_wh"] == 1500
    rec = log.close("ev_unplugged", 2100, 1763713600)
    assert rec["id"] == sid and rec["wh"] == 1100 and rec["meter_start_wh"] == 1000
    assert rec["meter_end_wh"] == 2100 and rec["auth_id"] == "tag:04A1B2"
    assert rec["stop_reason"] == "ev_unplugged" and rec["ts_start"] == 1763710000
    assert rec["ts_end"] == 1763713600
    for k in ("id", "ts_start", "ts_end", "wh", "meter_start_wh", "meter_end_wh", "auth_id", "stop_reason"):
        assert k in rec
    assert sorted(rec.keys()) == sorted(
        ["id", "ts_start", "ts_end", "wh", "meter_start_wh", "meter_end_wh", "auth_id", "stop_reason"]
    )
    assert log.current is None
    # persisted before publishing: a fresh log (after a reboot) still has it
    log2 = _log(d.path, 8)
    assert log2.recover(2100, None) is None
    assert [r["id"] for r in log2.pending()] == [sid]
    assert log2.ack("nope") is False
    assert log2.ack(sid) is True
    assert log2.pending() == [] and _log(d.path, 9).pending() == []
    assert log2.ack(sid) is False


def test_ids_unique_across_reboots_and_pending_oldest_first():
    d = TempDir("sess")
    ids = []
    for boot in (1, 2, 3):
        log = _log(d.path, boot)
        log.recover(0, None)
        for k in range(2):
            ids.append(log.open(None, 10 * k, None))
            log.close("ev_unplugged", 10 * k + 5, None)
    assert len(set(ids)) == 6
    log = _log(d.path, 4)
    assert [r["id"] for r in log.pending()] == ids
    assert [r["id"] for r in log.pending(2)] == ids[:2]


def test_power_loss_recovery_keeps_last_checkpoint():
    d = TempDir("sess")
    log = _log(d.path, 3)
    sid = log.open(None, 5000, 100)
    log.checkpoint(5200, 160)
    log.checkpoint(5400, 220)
    # power cut: the object is gone; energy after the last checkpoint is lost, not invented
    log = _log(d.path, 4)
    rec = log.recover(5600, 999)
    assert rec is not None and rec["id"] == sid and rec["stop_reason"] == "power_loss"
    assert rec["meter_end_wh"] == 5400 and rec["wh"] == 400 and rec["ts_end"] == 220
    assert log.current is None
    assert [r["id"] for r in log.pending()] == [sid]
    # recovering twice (another cut during boot) does not duplicate it
    log = _log(d.path, 5)
    assert log.recover(5600, 999) is None
    assert [r["id"] for r in log.pending()] == [sid]
    # the next session of the new boot has a fresh id
    assert log.open(None, 5600, None) == "SIM0001-5-1"


def test_cut_between_closed_write_and_open_removal():
    d = TempDir("sess")
    st = Storage(d.path)
    log = _log(d.path, 1)
    log.open(None, 0, None)
    log.checkpoint(50)
    snapshot = st.read_bytes(sessions.OPEN_NAME)
    rec = log.close("ev_unplugged", 60, None)
    st.write_bytes(sessions.OPEN_NAME, snapshot)  # as if the cut hit before the remove
    log = _log(d.path, 2)
    assert log.recover(60, None) is None
    p = log.pending()
    assert len(p) == 1 and p[0]["id"] == rec["id"] and p[0]["stop_reason"] == "ev_unplugged"


def test_checkpoint_never_goes_backwards():
    d = TempDir("sess")
    log = _log(d.path, 1)
    log.open(None, 100, None)
    log.checkpoint(300)
    log.checkpoint(200)
    log.checkpoint(None)
    assert log.current["meter_end_wh"] == 300
    rec = log.close("cmd_stop", 250, None)
    assert rec["wh"] == 200 and rec["meter_end_wh"] == 300


def test_bounded_pending_drops_oldest():
    d = TempDir("sess")
    old = sessions.MAX_PENDING
    sessions.MAX_PENDING = 5
    try:
        log = _log(d.path, 1)
        ids = []
        for k in range(8):
            ids.append(log.open(None, k, None))
            log.close("ev_unplugged", k, None)
        assert [r["id"] for r in log.pending()] == ids[3:]
        assert log.dropped == 3
    finally:
        sessions.MAX_PENDING = old
