# OCPP 1.6 Firmware Management on the field updater (firmware/update.py): UpdateFirmware starts the
# same update as the MQTT contract's `update` command (signed manifest, A/B slots, the trial boot,
# rollback), and the updater's phases go out as FirmwareStatusNotifications. Loaded by
# firmware/ocpp.py only when an update key is provisioned.
#
# `location` is the URL of the signed manifest (tools/release). A `retrieveDate` in the future waits
# on flash (a reboot does not lose it) until the charger's clock reaches it. `retries` and
# `retryInterval` are taken as given: the updater resumes broken downloads on its own.
from firmware import ocpp_rpc as R
from firmware.ocpp_rpc import CallError
from firmware.ocpp_smart import parse_time

WAIT_FILE = "ocpp_fw.json"  # {"location": URL, "at": Unix s}: an UpdateFirmware waiting for its date
CMD_ID = "ocpp-update"  # the cmd_id of updates the central system asked for (update.json, events)
QUEUE_MAX = 8

# updater phase -> FirmwareStatusNotification status (deferred and rebooting: nothing new to say)
STATUS = {"downloading": "Downloading", "verifying": "Downloaded", "installing": "Installing",
          "committed": "Installed", "rolled_back": "InstallationFailed"}
DOWNLOAD_ERRORS = ("download", "space")  # other `failed` errors happen after the download


def status_of(phase, error=None):
    """The FirmwareStatusNotification status of an updater phase (None: nothing to report)."""
    if phase == "failed":
        return "DownloadFailed" if error in DOWNLOAD_ERRORS else "InstallationFailed"
    return STATUS.get(phase)


class FirmwareManagement:
    def __init__(self, station, updater):
        self.station = station
        self.updater = updater
        self.store = station.store
        self.queue = []  # statuses to send, oldest first
        self._downloading = False  # Downloading said for the update under way
        w = self.store.read_json(WAIT_FILE, None)
        ok = isinstance(w, dict) and isinstance(w.get("location"), str) and isinstance(w.get("at"), int)
        self.waiting = w if ok else None

    def update_firmware(self, p, now):
        """The UpdateFirmware CALL: its (empty) result, or CallError."""
        loc = p.get("location")
        date = p.get("retrieveDate")
        if not isinstance(loc, str) or not isinstance(date, str):
            raise CallError(R.OCCURENCE, "location and retrieveDate are required strings")
        for k in ("retries", "retryInterval"):
            v = p.get(k)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise CallError(R.TYPE, k + " must be a non-negative integer")
        at = None
        try:
            at = parse_time(date)
        except ValueError:
            pass
        if at is None:
            raise CallError(R.FORMATION, "retrieveDate is not an RFC 3339 date-time")
        if self.updater.job is not None or self.waiting is not None:
            raise CallError(R.GENERIC, "an update is in progress")
        t = self.station.ts(now)
        if t is not None and at > t:
            self.waiting = {"location": loc, "at": at}
            self.store.write_json(WAIT_FILE, self.waiting)
            return {}
        _, err = self.updater.request(CMD_ID, loc)
        if err is not None:
            raise CallError(R.PROPERTY, err[1])
        self._started()
        return {}

    def _started(self):
        # the manifest is being fetched (unless deferred while charging): Downloading from now on,
        # so a manifest that is refused still follows Downloading as a central system expects
        job = self.updater.job
        if job is not None and job.get("phase") == "downloading" and not self._downloading:
            self._downloading = True
            self._say("Downloading")

    def service(self, now):
        """Slow work: a waiting update whose date came, the updater's events -> the queue."""
        w = self.waiting
        if w is not None:
            t = self.station.ts(now)
            if t is not None and t >= w["at"]:
                self.waiting = None
                self.store.remove(WAIT_FILE)
                _, err = self.updater.request(CMD_ID, w["location"])
                if err is not None:
                    self._say("DownloadFailed")
        for ev in self.updater.pop_events():
            ph = ev.get("phase")
            if ph == "downloading" and self._downloading:
                continue  # said when the manifest's download began
            s = status_of(ph, ev.get("error"))
            if s is not None:
                self._say(s)
            if ph in ("failed", "committed", "rolled_back"):
                self._downloading = False
        self._started()  # a waiting or deferred update that has just begun

    def _say(self, status):
        if len(self.queue) >= QUEUE_MAX:
            self.queue.pop(0)
        self.queue.append(status)

    def current(self):
        """TriggerMessage's FirmwareStatusNotification: Idle unless an update is under way."""
        job = self.updater.job
        ph = job.get("phase") if job is not None else None
        if ph == "rebooting":
            return "Installing"
        return status_of(ph) or "Idle"
