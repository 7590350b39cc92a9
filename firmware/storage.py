# Small persistent store on the device's LittleFS (or the simulator's state dir).
# Every write is atomic: write a temp file, flush it, rename it over the old one, so that a power
# cut leaves either the old or the new content, never a torn file.
import json
import os


class Storage:
    def __init__(self, root):
        self.root = root.rstrip("/") if root != "/" else ""
        if self.root:
            self._mkdirs(self.root)

    def _mkdirs(self, path):
        cur = ""
        for part in path.split("/"):
            if not part:
                cur = "/" if not cur else cur
                continue
            cur = (cur.rstrip("/") + "/" + part) if cur else part
            try:
                os.mkdir(cur)
            except OSError:
                pass

    def path(self, name):
        return self.root + "/" + name if self.root else name

    def write_bytes(self, name, data):
        self._write(name, "wb", data, None)

    def _write(self, name, mode, data, obj):
        p = self.path(name)
        tmp = p + ".tmp"
        with open(tmp, mode) as f:
            if obj is None:
                f.write(data)
            else:
                json.dump(obj, f)
            f.flush()
            if hasattr(os, "fsync"):  # CPython; LittleFS commits on close
                os.fsync(f.fileno())
        os.rename(tmp, p)

    def read_bytes(self, name):
        try:
            with open(self.path(name), "rb") as f:
                return f.read()
        except OSError:
            return None

    def write_json(self, name, obj):
        # streamed into the file: the document is never one string on the heap. The same bytes on
        # both runtimes: CPython's json writes ASCII (escapes), MicroPython's UTF-8 in text mode
        self._write(name, "w", None, obj)

    def read_json(self, name, default=None):
        data = self.read_bytes(name)
        if data is None:
            return default
        try:
            return json.loads(data)
        except ValueError:  # a file from an unknown writer; the atomic writes never leave one
            return default

    def remove(self, name):
        try:
            os.remove(self.path(name))
        except OSError:
            pass

    def list(self, prefix=""):
        try:
            names = os.listdir(self.root or "/")
        except OSError:
            return []
        return sorted(n for n in names if n.startswith(prefix) and not n.endswith(".tmp"))
