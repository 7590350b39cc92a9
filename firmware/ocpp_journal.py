# Transaction MeterValues taken while the central system is unreachable, on flash until delivered
# (OCPP 1.6 section 3.7: transaction messages are kept and sent in order after the outage). One small
# file per sample, written atomically (firmware/storage.py), named so that names sort oldest first;
# deleted once the central system has answered it. Bounded: past MAX_ENTRIES the oldest sample is
# dropped and counted (`dropped`); the StartTransaction and StopTransaction are never in here (the
# session log keeps those, firmware/sessions.py), so a full journal loses meter samples, never a
# transaction.
PREFIX = "ocmv_"
MAX_ENTRIES = 60  # 10 minutes at the default 10 s sample interval, about 40 KB of flash


class MeterJournal:
    def __init__(self, store, boot):
        self.store = store
        self.boot = int(boot)
        self.n = 0
        self.dropped = 0
        self.names = []  # oldest first
        self._sid = {}  # name -> session id, so that looking one up reads no flash
        for name in store.list(PREFIX):
            rec = store.read_json(name, None)
            if isinstance(rec, dict) and isinstance(rec.get("sid"), str):
                self.names.append(name)
                self._sid[name] = rec["sid"]
            else:
                store.remove(name)  # not ours: nothing to deliver

    def __len__(self):
        return len(self.names)

    def add(self, sid, payload):
        self.n += 1
        name = "%s%010d_%06d.json" % (PREFIX, self.boot, self.n)
        self.store.write_json(name, {"sid": sid, "p": payload})
        self.names.append(name)
        self._sid[name] = sid
        while len(self.names) > MAX_ENTRIES:
            self.remove(self.names[0])
            self.dropped += 1

    def first(self, sid):
        """(name, payload) of the oldest sample of session sid, or None."""
        for name in self.names:
            if self._sid.get(name) == sid:
                rec = self.store.read_json(name, None)
                if isinstance(rec, dict):
                    return name, rec.get("p")
                self.remove(name)
                return None
        return None

    def remove(self, name):
        if name in self.names:
            self.names.remove(name)
        self._sid.pop(name, None)
        self.store.remove(name)

    def drop_session(self, sid):
        for name in [n for n in self.names if self._sid.get(n) == sid]:
            self.remove(name)
