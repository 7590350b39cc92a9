# The signed update manifest (contract v1.1, tools/release): parsing, signature, board and version
# checks. manifest.json is {"manifest": "<JSON text>", "sig": "<hex>"}: the signature covers the
# UTF-8 bytes of that text exactly, so nothing has to be re-serialised the same way on both sides.
# The inner document: {"v": 1, "board": "sim", "version": "0.2.0", "size": TOTAL,
#                      "files": [{"path": "firmware/app.mpy", "size": N, "sha256": "<hex>"}, ...]}
import hashlib

from firmware import protocol, rsa
from firmware.signed import unhex

MAX_MANIFEST = 16384  # bytes of manifest.json
MAX_FILES = 256
MAX_FILE = 1024 * 1024
MAX_PATH = 96
_PATH_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./"
# the boot selector and the device entry are never replaced by an update (they pick the slot)
BOOT_FILES = ("boot.py", "main.py", "bootsel.py", "bootsel.mpy")


class UpdateError(Exception):
    """code: the contract's update error (download, hash, signature, board, downgrade, space, ...)."""

    def __init__(self, code, detail, version=None):
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.version = version  # the manifest's, when it was read that far


def parse_version(v):
    """'1.2.10' -> (1, 2, 10); None when v is not dotted integers."""
    if not isinstance(v, str) or not v or len(v) > 32:
        return None
    out = []
    for part in v.split("."):
        if not part or not part.isdigit() or len(part) > 9:
            return None
        out.append(int(part))
    return tuple(out)


def compare(a, b):
    """-1, 0, 1 for version strings a < b, a == b, a > b (missing parts count as 0)."""
    x, y = list(parse_version(a)), list(parse_version(b))
    while len(x) < len(y):
        x.append(0)
    while len(y) < len(x):
        y.append(0)
    return (x > y) - (x < y)


def safe_path(p):
    if not isinstance(p, str) or not p or len(p) > MAX_PATH or p[0] == "/":
        return False
    for c in p:
        if c not in _PATH_CHARS:
            return False
    for part in p.split("/"):
        if part in ("", ".", ".."):
            return False
    return p not in BOOT_FILES


class Manifest:
    def __init__(self, board, version, files):
        self.board = board
        self.version = version
        self.files = files  # [(path, size, sha256 bytes)]
        self.size = 0
        for f in files:
            self.size += f[1]


def parse(raw, pubkey, board, running):
    """The verified Manifest, or UpdateError(signature | board | downgrade)."""
    try:
        outer = protocol.parse_object(raw)
    except protocol.ProtocolError:
        raise UpdateError("signature", "manifest.json is not a JSON object") from None
    text = outer.get("manifest")
    sig = outer.get("sig")
    if not isinstance(text, str) or not isinstance(sig, str) or len(sig) % 2 or len(sig) > 1024:
        raise UpdateError("signature", "manifest.json needs manifest (string) and sig (hex)")
    sig_b = unhex(sig, len(sig) // 2)
    if sig_b is None or not rsa.verify(pubkey, hashlib.sha256(text.encode()).digest(), sig_b):
        raise UpdateError("signature", "bad signature")
    try:
        doc = protocol.parse_object(text)
    except protocol.ProtocolError:
        raise UpdateError("signature", "signed manifest is not a JSON object") from None
    version = doc.get("version")
    if parse_version(version) is None:
        raise UpdateError("signature", "manifest version must be dotted integers")
    if doc.get("board") != board:
        raise UpdateError("board", "manifest is for board %s, this is %s" % (str(doc.get("board"))[:32], board),
                          version)
    if parse_version(running) is not None and compare(version, running) < 0:
        raise UpdateError("downgrade", "version %s is older than the running %s" % (version, running), version)
    files = doc.get("files")
    if not isinstance(files, list) or not files or len(files) > MAX_FILES:
        raise UpdateError("signature", "manifest needs 1..%d files" % MAX_FILES)
    out = []
    seen = {}
    for f in files:
        if not isinstance(f, dict):
            raise UpdateError("signature", "manifest file entries must be objects")
        p, size, h = f.get("path"), f.get("size"), unhex(f.get("sha256"), 32)
        if not safe_path(p) or p in seen:
            raise UpdateError("signature", "bad or repeated file path in manifest")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise UpdateError("signature", "file size must be a non-negative integer")
        if size > MAX_FILE:
            raise UpdateError("space", "%s is larger than %d bytes" % (p, MAX_FILE))
        if h is None:
            raise UpdateError("signature", "file sha256 must be 64 hex digits")
        seen[p] = True
        out.append((p, size, h))
    return Manifest(board, version, out)
