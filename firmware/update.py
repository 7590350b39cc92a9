# Field update of the application (contract v1.1): a part of its own that any backend drives. The MQTT
# backend (firmware/cloud.py) maps `cmd update` to request() and pop_events() to `update` events; an
# OCPP backend maps UpdateFirmware to request() and the same events to FirmwareStatusNotification
# (downloading -> Downloading, installing -> Downloaded then Installing, committed -> Installed,
# failed/download|hash|space -> DownloadFailed, failed/other or rolled_back -> InstallationFailed).
#
# Interface
#   Updater(store, board, running, pubkey, cadata=None, free_bytes=None)
#   .charging  () -> bool     set by the app: no download start and no switch while a vehicle charges
#   .healthy   () -> bool     set by the backend: its link to the cloud is up (part of the health proof)
#   .restart   (cmd_id) -> None  set by the app: its clean restart (reply out, offline, reset)
#   request(cmd_id, url) -> (result, None) | (None, (code, detail))
#   service(now)              the app's slow work: deferral, the switch, the health watch
#   status() -> None | {"phase", "version", "pct"};  .version changes with the phase
#   pop_events() -> [{"cmd_id", "version", "phase"[, "error"]}]
#
# Flash: update.json holds the update in progress (cmd_id, url, version, slot, phase); slots.json is
# the boot selector's (bootsel.py). The image goes into ROOT/slot_a or ROOT/slot_b (never the one
# running), one file at a time through a bounded buffer (firmware/fetch.py), each file written as
# PATH.part, hash-checked, then renamed; a complete file of the right hash is reused by a later
# update. The download runs in a worker thread (DNS, TLS, slow servers block), which only writes
# files of the new slot and appends events; the switch and the commit happen in the slow work.
import hashlib
import os
import time

from firmware import manifest as mf
from firmware.fetch import Fetcher, FetchError, join, parse_url
from firmware.manifest import UpdateError
from firmware.ticks import ticks_diff
from firmware.units import BAD_REQUEST, BUSY

UPDATE_FILE = "update.json"
SLOTS_FILE = "slots.json"
PRE_SWITCH = ("deferred", "downloading", "verifying", "installing")
HEALTH_MS = 10000  # the new version runs this long with its backend connected before it commits
HEALTH_DEADLINE_MS = 180000  # not healthy by then: it asks for the rollback and resets
RETRIES = 6  # attempts per file; each resumes where the last one broke
BACKOFF_MAX_S = 8
MARGIN = 32768  # flash left free beyond the new image (settings, sessions, LittleFS' own needs)

try:
    import _thread
except ImportError:  # CPython tests without threads never start a worker
    _thread = None


def _sha256():
    return hashlib.sha256()


def _isdir(p):
    try:
        return (os.stat(p)[0] & 0x4000) != 0
    except OSError:
        return False


def _size(p):
    try:
        return os.stat(p)[6]
    except OSError:
        return -1


def _mkdirs(path):
    cur = "/" if path.startswith("/") else ""
    for part in path.split("/"):
        if not part:
            continue
        cur = cur + part if cur in ("", "/") else cur + "/" + part
        if not _isdir(cur):
            try:
                os.mkdir(cur)
            except OSError:
                pass


def _remove(p):
    try:
        os.remove(p)
    except OSError:
        pass


def tree_bytes(path):
    """Bytes in the files under path (the simulator's flash use)."""
    total = 0
    try:
        names = os.listdir(path)
    except OSError:
        return 0
    for n in names:
        p = path + "/" + n
        if _isdir(p):
            total += tree_bytes(p)
        else:
            total += max(0, _size(p))
    return total


def _files(path, rel=""):
    out = []
    try:
        names = os.listdir(path)
    except OSError:
        return out
    for n in names:
        p = path + "/" + n
        r = rel + n
        if _isdir(p):
            out.extend(_files(p, r + "/"))
        else:
            out.append(r)
    return out


def flash_free(root):
    st = os.statvfs(root or "/")
    return st[1] * st[4]  # f_frsize * f_bavail


def file_sha256(path, buf):
    h = hashlib.sha256()
    mv = memoryview(buf)
    with open(path, "rb") as f:
        while True:
            n = f.readinto(mv)
            if not n:
                break
            h.update(mv[:n])
    return h.digest()


class Updater:
    def __init__(self, store, board, running, pubkey, cadata=None, free_bytes=None):
        self.store = store
        self.root = store.root
        self.board = board
        self.running = running
        self.pubkey = pubkey
        self.cadata = cadata
        self.free_bytes = free_bytes or (lambda: flash_free(self.root))
        self.charging = lambda: False
        self.healthy = lambda: False
        self.restart = None
        self.threaded = _thread is not None
        self.fetch_timeout_s = 10
        self.fetcher = lambda: Fetcher(self.cadata, self.fetch_timeout_s)  # tests hand in a fake
        self.version = 0
        self._events = []
        self._lock = _thread.allocate_lock() if _thread is not None else None
        self.job = None
        self._total = 0
        self._got = 0
        self._worker_done = None  # (error code or None, detail) from the worker
        self._installed = False
        self._watch = False  # this boot is the trial of a new image
        self._boot_ms = None
        self._gave_up = False
        self._restart_due = False
        slots = store.read_json(SLOTS_FILE, None)
        self.slots = slots if isinstance(slots, dict) else {}
        # after bootsel.select(): the slot running now
        self.slot = self.slots.get("trial") or self.slots.get("active")
        self._review()

    # ---- events and status ----------------------------------------------------------------------
    def _emit(self, phase, error=None):
        job = self.job or {}
        ev = {"cmd_id": job.get("cmd_id"), "version": job.get("version"), "phase": phase}
        if error is not None:
            ev["error"] = error
        if self._lock is not None:
            with self._lock:
                self._events.append(ev)
        else:
            self._events.append(ev)
        self.version += 1

    def drain(self, backend, now_ms):
        """The MQTT backend's `update` events (firmware/cloud.py)."""
        if self._events:
            for ev in self.pop_events():
                backend.emit_event("update", ev, now_ms)

    def pop_events(self):
        if not self._events:
            return ()
        if self._lock is not None:
            with self._lock:
                evs, self._events = self._events, []
        else:
            evs, self._events = self._events, []
        return evs

    def status(self):
        job = self.job
        if job is None:
            return None
        ph = job.get("phase")
        pct = 0
        if ph == "downloading":
            pct = self._got * 100 // self._total if self._total else 0
        elif ph != "deferred":
            pct = 100
        return {"phase": ph, "version": job.get("version"), "pct": min(100, pct)}

    def _set_phase(self, phase, persist=True):
        self.job["phase"] = phase
        if persist:
            self.store.write_json(UPDATE_FILE, self.job)
        self._emit(phase)

    def _end(self, phase, error=None):
        """The update is over (committed, failed, rolled_back): say so, forget it."""
        self._emit(phase, error)
        self.job = None
        self._installed = False
        self._watch = False
        self.store.remove(UPDATE_FILE)

    # ---- boot: what the last update left ------------------------------------------------------------
    def _review(self):
        u = self.store.read_json(UPDATE_FILE, None)
        if not isinstance(u, dict):
            return
        self.job = u
        ph = u.get("phase")
        slot = u.get("slot")
        s = self.slots
        if ph == "rebooting":
            if s.get("trial") == slot and s.get("tries") == 1:
                self._watch = True  # this is the new image's one trial boot
                return
            if s.get("active") == slot:
                self._end("committed")  # committed just before a power cut, not yet reported
                return
            if s.get("rolled_back") == slot:
                why = s.get("why") if s.get("why") in ("crash", "health") else "crash"
                for k in ("rolled_back", "why"):
                    if k in s:
                        del s[k]
                self.store.write_json(SLOTS_FILE, s)
                self._end("rolled_back", why)
                return
        if ph in PRE_SWITCH or ph == "rebooting":
            # cut before the switch: the old image runs; a new `update` may reuse the verified files
            self._end("failed", "download")
            return
        self.job = None
        self.store.remove(UPDATE_FILE)

    # ---- the backend's command ----------------------------------------------------------------------
    def request(self, cmd_id, url):
        if self.job is not None:
            return None, (BUSY, "an update is in progress (%s)" % self.job.get("phase"))
        try:
            parse_url(url)
        except ValueError as e:
            return None, (BAD_REQUEST, str(e))
        target = "b" if self.slots.get("active") == "a" else "a"
        self.job = {"cmd_id": cmd_id, "url": url, "version": None, "slot": target, "phase": None}
        if self.charging():
            self._set_phase("deferred")  # nothing is fetched until the session ends
            return {"accepted": True, "deferred": "charging"}, None
        self._begin()
        return {"accepted": True, "deferred": None}, None

    def _begin(self):
        self._total = 0
        self._got = 0
        self._worker_done = None
        self.job["phase"] = "downloading"  # the event goes out once the manifest named the version
        self.store.write_json(UPDATE_FILE, self.job)
        self.version += 1
        job = self.job
        if self.threaded:
            _thread.start_new_thread(self._work, (job,))
        else:
            self._work(job)

    # ---- the slow work --------------------------------------------------------------------------------
    def service(self, now):
        if self._boot_ms is None:
            self._boot_ms = now
        job = self.job
        if job is None:
            return
        if self._restart_due:
            self._restart_due = False
            if self.restart is not None:
                self.restart(job.get("cmd_id"))
            return
        ph = job.get("phase")
        if ph == "deferred":
            if not self.charging():
                self._begin()
            return
        done = self._worker_done
        if done is not None:
            self._worker_done = None
            if done[0] is not None:
                self._end("failed", done[0])
                return
            self._installed = True
        if self._installed and ph == "installing":
            if not self.charging():  # the switch happens with the contactor open
                self._switch()
            return
        if self._watch:
            self._health(now)

    def _switch(self):
        job = self.job
        self._set_phase("rebooting")  # update.json first: a cut before slots.json ends as `failed`
        s = dict(self.slots)
        s["trial"] = job["slot"]
        s["tries"] = 0
        for k in ("rolled_back", "why"):
            if k in s:
                del s[k]
        self.store.write_json(SLOTS_FILE, s)
        self.slots = s
        self._installed = False
        self._restart_due = True  # at the next service(): the backend sends `rebooting` first

    def _health(self, now):
        up = ticks_diff(now, self._boot_ms)
        if up >= HEALTH_MS and self.healthy():
            s = dict(self.slots)
            s["active"] = self.job["slot"]
            s["trial"] = None
            s["tries"] = 0
            s["previous"] = self.slots.get("active")
            self.store.write_json(SLOTS_FILE, s)
            self.slots = s
            self._end("committed")
        elif up >= HEALTH_DEADLINE_MS and not self._gave_up:
            self._gave_up = True
            s = dict(self.slots)
            s["why"] = "health"  # bootsel rolls back at the next boot and keeps this reason
            self.store.write_json(SLOTS_FILE, s)
            self.slots = s
            if self.restart is not None:
                self.restart(None)

    # ---- the worker ---------------------------------------------------------------------------------
    def _work(self, job):
        try:
            self._run(job)
            self._worker_done = (None, None)
        except UpdateError as e:
            self._log("update failed: %s: %s" % (e.code, e.detail))
            if e.version is not None:
                job["version"] = e.version
            self._worker_done = (e.code, e.detail)
        except Exception as e:  # noqa: BLE001  a bug or a full flash: the update fails, the charger runs on
            self._log("update failed: %r" % (e,))
            self._worker_done = ("download", repr(e))

    def _log(self, line):
        try:
            print(line)
        except Exception:  # noqa: BLE001
            pass

    def _retrying(self, fn):
        for attempt in range(RETRIES):
            try:
                return fn()
            except FetchError as e:
                if not e.retry or attempt == RETRIES - 1:
                    raise UpdateError("download", e.detail) from None
                self._log("update: %s, retrying" % e.detail)
                time.sleep(min(BACKOFF_MAX_S, 1 << attempt))
        raise UpdateError("download", "unreachable")

    def _run(self, job):
        f = self.fetcher()
        url = job["url"]
        raw = self._retrying(lambda: f.get_small(url, mf.MAX_MANIFEST))
        man = mf.parse(raw, self.pubkey, self.board, self.running)
        job["version"] = man.version
        self._set_phase("downloading")
        top = self.root + "/slot_" + job["slot"]
        have = 0
        for path, size, _ in man.files:
            p = top + "/" + path
            have += max(0, min(size, max(_size(p), _size(p + ".part"))))
        if man.size - have + MARGIN > self.free_bytes():
            raise UpdateError("space", "%d bytes needed, %d free" % (man.size - have + MARGIN, self.free_bytes()))
        self._total = man.size
        self._got = 0
        for path, size, digest in man.files:
            final = top + "/" + path
            _mkdirs(final[:final.rfind("/")])
            if _size(final) == size and file_sha256(final, f.buf) == digest:
                self._got += size  # verified by an earlier attempt
                continue
            _remove(final)
            part = final + ".part"

            def one(part=part, path=path, size=size):
                return f.to_file(join(url, path), part, size, _sha256, self._progress)

            got = self._retrying(one)
            if got != digest:
                _remove(part)
                raise UpdateError("hash", "sha256 of %s does not match the manifest" % path)
            os.rename(part, final)
        self._set_phase("verifying")
        wanted = {}
        for path, size, digest in man.files:
            wanted[path] = True
            p = top + "/" + path
            if _size(p) != size or file_sha256(p, f.buf) != digest:
                raise UpdateError("hash", "%s changed on flash" % path)
        for rel in _files(top):
            if rel not in wanted and rel != "release.json":
                _remove(top + "/" + rel)  # a module of an older image in this slot must not shadow
        self._set_phase("installing")
        self.store.write_json("slot_" + job["slot"] + "/release.json", {"version": man.version, "board": man.board})

    def _progress(self, n):
        self._got += n
