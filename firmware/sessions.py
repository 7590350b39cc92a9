# Flash-backed log of charging sessions (contract "session"). Every change is an atomic write
# (firmware.storage) before anything is published:
#   sess_open.json            the open session, rewritten at open and at every checkpoint
#   sess_BBBBBBBBBB_NNNNNN.json one closed record per file, named so that names sort oldest first;
#                             deleted only by ack()
# A power cut loses at most the energy since the last checkpoint: recover() at boot closes the
# open record with stop_reason power_loss and the meter reading of its last checkpoint.
# Ids are SERIAL-BOOT-N with the flash boot counter, so they are unique across reboots.

OPEN_NAME = "sess_open.json"
PREFIX = "sess_"
MAX_PENDING = 200  # unacknowledged closed records kept; beyond it the oldest is dropped


def _closed_name(boot, n):
    return "%s%010d_%06d.json" % (PREFIX, boot, n)


class SessionLog:
    def __init__(self, storage, serial, boot):
        self.st = storage
        self.serial = serial
        self.boot = int(boot)
        self.n = 0
        self.current = None
        self.dropped = 0  # records dropped because MAX_PENDING unacked ones were waiting
        self._pending = [n for n in storage.list(PREFIX) if n != OPEN_NAME]  # names, oldest first
        cur = storage.read_json(OPEN_NAME, None)
        self._orphan = cur if isinstance(cur, dict) and "id" in cur else None

    # ---- boot ----------------------------------------------------------------------------------
    def recover(self, meter_wh, ts):
        """Close a session that a power cut left open (power_loss, energy up to its last
        checkpoint). Returns the closed record or None."""
        rec = self._orphan
        self._orphan = None
        if rec is None:
            self.st.remove(OPEN_NAME)
            return None
        for name in self._pending:  # closed but the open file survived the cut: already done
            r = self.st.read_json(name, None)
            if isinstance(r, dict) and r.get("id") == rec["id"]:
                self.st.remove(OPEN_NAME)
                return None
        rec["stop_reason"] = "power_loss"
        if rec.get("ts_end") is None:
            rec["ts_end"] = rec.get("ts_last", ts)
        rec.pop("ts_last", None)
        name = rec.pop("_file", None) or _closed_name(self.boot, 0)
        self._store_closed(name, rec)
        self.st.remove(OPEN_NAME)
        return rec

    # ---- an open session -------------------------------------------------------------------------
    def open(self, auth_id, meter_wh, ts):
        if self.current is not None:
            self.close("restart", meter_wh, ts)
        self.n += 1
        sid = "%s-%d-%d" % (self.serial, self.boot, self.n)
        meter_wh = int(meter_wh)
        self.current = {
            "id": sid,
            "ts_start": ts,
            "ts_end": None,
            "wh": 0,
            "meter_start_wh": meter_wh,
            "meter_end_wh": meter_wh,
            "auth_id": auth_id,
            "stop_reason": None,
            "ts_last": ts,
            "_file": _closed_name(self.boot, self.n),
        }
        self.st.write_json(OPEN_NAME, self.current)
        return sid

    def checkpoint(self, meter_wh, ts=None):
        """Persist the energy so far (call periodically, e.g. every 60 s, and before a reset)."""
        cur = self.current
        if cur is None or meter_wh is None:
            return
        meter_wh = int(meter_wh)
        if meter_wh < cur["meter_end_wh"]:  # the lifetime register never goes back
            return
        cur["meter_end_wh"] = meter_wh
        cur["wh"] = meter_wh - cur["meter_start_wh"]
        if ts is not None:
            cur["ts_last"] = ts
        self.st.write_json(OPEN_NAME, cur)

    def close(self, reason, meter_wh, ts):
        """Close the open session; the record is on flash when this returns. None if none open."""
        cur = self.current
        if cur is None:
            return None
        if meter_wh is not None and int(meter_wh) >= cur["meter_end_wh"]:
            cur["meter_end_wh"] = int(meter_wh)
        cur["wh"] = cur["meter_end_wh"] - cur["meter_start_wh"]
        cur["ts_end"] = ts
        cur["stop_reason"] = reason
        cur.pop("ts_last", None)
        name = cur.pop("_file")
        self.current = None
        self._store_closed(name, cur)
        self.st.remove(OPEN_NAME)
        return cur

    # ---- closed records ----------------------------------------------------------------------------
    def _store_closed(self, name, rec):
        self.st.write_json(name, rec)
        if name not in self._pending:
            self._pending.append(name)
            self._pending.sort()
        while len(self._pending) > MAX_PENDING:
            old = self._pending.pop(0)
            self.st.remove(old)
            self.dropped += 1

    def pending(self, limit=None):
        """Closed records not yet acknowledged, oldest first (at most `limit` of them)."""
        out = []
        for name in self._pending:
            if limit is not None and len(out) >= limit:
                break
            r = self.st.read_json(name, None)
            if isinstance(r, dict):
                out.append(r)
        return out

    def ack(self, session_id):
        """Delete an acknowledged record. True when it was pending."""
        for name in self._pending:
            r = self.st.read_json(name, None)
            if isinstance(r, dict) and r.get("id") == session_id:
                self.st.remove(name)
                self._pending.remove(name)
                return True
        return False
