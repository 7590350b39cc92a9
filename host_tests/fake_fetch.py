# A stand-in for firmware/fetch.py's Fetcher in the update tests that run the updater's logic on
# both runtimes (test_trust.py, test_ocpp_firmware.py); the real Fetcher downloads from a real HTTP
# server in test_trust_e2e.py and test_ocpp_firmware_e2e.py.
import hashlib


class FakeFetcher:
    """Serves a manifest and files from memory the way firmware.fetch.Fetcher does (to_file writes
    the file and returns its sha256); fail: {path: [FetchError, ...]} raised by the next calls."""

    def __init__(self, manifest_raw, files, fail=None):
        self.buf = bytearray(256)
        self.manifest = manifest_raw
        self.files = files
        self.fail = fail or {}
        self.fetched = []

    def _fault(self, path):
        errs = self.fail.get(path)
        if errs:
            raise errs.pop(0)

    def get_small(self, url, limit):
        self._fault("manifest.json")
        return self.manifest.encode() if isinstance(self.manifest, str) else self.manifest

    def to_file(self, url, path, size, hasher_factory, progress=None):
        rel = url[url.index("/r/") + 3:]
        self.fetched.append(rel)
        self._fault(rel)
        data = self.files[rel]
        with open(path, "wb") as f:
            f.write(data)
        if progress:
            progress(len(data))
        return hashlib.sha256(data).digest()
