# A bounded HTTP/1.1 GET for the field update (firmware/update.py): http:// and https:// (the
# server's certificate checked against the provisioned CA), a Range request to resume a file after a
# broken connection, and a body copied to flash through one preallocated buffer, so that a download
# never holds more than that buffer of the image in RAM. Runs in the update's worker thread: every
# call here may block (DNS, connect, TLS, a slow server) up to the socket timeout.
import socket

HEADER_LINE_MAX = 512  # a status or header line longer than this is not from a sane server
HEADERS_MAX = 32
CHUNK = 1024  # the download buffer (bytes of the image in RAM at any time)


class FetchError(Exception):
    """A download that did not work. retry: a broken connection or a server error (try again,
    resuming), as opposed to a refusal (4xx) or a malformed URL."""

    def __init__(self, detail, retry=True):
        super().__init__(detail)
        self.detail = detail
        self.retry = retry


def parse_url(url):
    """-> (https, host, port, path); ValueError for anything but http(s)://host[:port]/path."""
    if not isinstance(url, str) or len(url) > 512:
        raise ValueError("url must be a string of at most 512 characters")
    if url.startswith("http://"):
        tls, rest = False, url[7:]
    elif url.startswith("https://"):
        tls, rest = True, url[8:]
    else:
        raise ValueError("url must start with http:// or https://")
    slash = rest.find("/")
    hostport, path = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
    for c in path:
        if ord(c) <= 32 or ord(c) >= 127:
            raise ValueError("url path must be printable ASCII without spaces")
    host, port = hostport, 443 if tls else 80
    if ":" in hostport:
        host, _, p = hostport.rpartition(":")
        if not p or not p.isdigit() or not 0 < int(p) < 65536:
            raise ValueError("bad port in url")
        port = int(p)
    if not host or "@" in host or "[" in host:
        raise ValueError("url needs a host name or IPv4 address")
    for c in host:
        if not (c.isalpha() or c.isdigit() or c in "-."):
            raise ValueError("bad host in url")
    return tls, host, port, path


def join(base_url, rel):
    """The URL of a file named relative to the manifest's URL."""
    return base_url[:base_url.rfind("/") + 1] + rel


class Response:
    def __init__(self, sock, stream, status, length, start):
        self.sock = sock
        self.stream = stream
        self.status = status
        self.length = length  # body bytes announced (Content-Length), None when not given
        self.start = start  # first byte of the body within the file (Range honoured: 206)

    def readinto(self, mv):
        n = self.stream.readinto(mv)
        return n or 0

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Fetcher:
    def __init__(self, cadata=None, timeout_s=10, chunk=CHUNK):
        self.cadata = cadata
        self.timeout_s = timeout_s
        self.buf = bytearray(chunk)
        self._one = bytearray(1)
        self._ctx = None

    def _context(self):
        if self._ctx is None:
            if not self.cadata:
                raise FetchError("https needs a provisioned CA", False)
            from firmware.mqtt_socket import make_context

            self._ctx = make_context(self.cadata)
        return self._ctx

    def _line(self, stream):
        out = bytearray()
        one = self._one
        while True:
            n = stream.readinto(one)
            if not n:
                raise FetchError("connection closed in the headers")
            if one[0] == 10:
                return bytes(out).rstrip(b"\r")
            out.append(one[0])
            if len(out) > HEADER_LINE_MAX:
                raise FetchError("header line too long", False)

    def open(self, url, offset=0):
        """GET url from byte offset. The caller closes the Response."""
        try:
            tls, host, port, path = parse_url(url)
        except ValueError as e:
            raise FetchError(str(e), False) from None
        try:
            ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
            s = socket.socket(ai[0], socket.SOCK_STREAM)
        except OSError as e:
            raise FetchError("no address for %s (%r)" % (host, e)) from None
        try:
            s.settimeout(self.timeout_s)
            s.connect(ai[-1])
            if tls:
                s = self._context().wrap_socket(s, server_hostname=host)
            stream = s if hasattr(s, "readline") else s.makefile("rwb", 0)  # CPython: raw SocketIO
            req = "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nUser-Agent: evse-mpy\r\n" % (path, host)
            if offset:
                req += "Range: bytes=%d-\r\n" % offset
            stream.write((req + "\r\n").encode())
            status_line = self._line(stream)
            parts = status_line.split(b" ")
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
                raise FetchError("not an HTTP response", False)
            status = int(parts[1])
            length = None
            start = 0
            for _ in range(HEADERS_MAX + 1):
                line = self._line(stream)
                if not line:
                    break
                k, _, v = line.partition(b":")
                k = k.strip().lower()
                v = v.strip()
                if k == b"content-length" and v.isdigit():
                    length = int(v)
                elif k == b"content-range" and v.startswith(b"bytes "):
                    first = v[6:].split(b"-")[0]
                    if first.isdigit():
                        start = int(first)
                elif k == b"transfer-encoding" and v.lower() != b"identity":
                    raise FetchError("chunked transfer encoding is not supported", False)
            else:
                raise FetchError("too many headers", False)
        except FetchError:
            s.close()
            raise
        except Exception as e:  # noqa: BLE001  OSError, TLS errors (ValueError on MicroPython)
            s.close()
            raise FetchError("connection to %s:%d failed (%r)" % (host, port, e)) from None
        if status == 200:
            start = 0
        elif status != 206:
            s.close()
            raise FetchError("HTTP %d" % status, status >= 500)
        return Response(s, stream, status, length, start)

    def get_small(self, url, limit):
        """The whole body of a small document (the manifest), at most limit bytes."""
        r = self.open(url)
        try:
            if r.length is not None and r.length > limit:
                raise FetchError("document larger than %d bytes" % limit, False)
            out = bytearray()
            mv = memoryview(self.buf)
            while len(out) <= limit:
                n = r.readinto(mv)
                if not n:
                    break
                out.extend(mv[:n])
            if len(out) > limit:
                raise FetchError("document larger than %d bytes" % limit, False)
            if r.length is not None and len(out) != r.length:
                raise FetchError("document truncated")
            return bytes(out)
        except OSError as e:
            raise FetchError("read failed (%r)" % e) from None
        finally:
            r.close()

    def to_file(self, url, path, size, hasher_factory, progress=None):
        """Download url into path (resuming what path already holds) until it holds size bytes.
        Returns the sha256 digest of the whole file. Raises FetchError (retry: resume later)."""
        have, h = self._resume(path, size, hasher_factory)
        if have < size:
            r = self.open(url, have)
            try:
                if r.start != have:  # the server ignored the Range: start over
                    have = 0
                    h = hasher_factory()
                    f = open(path, "wb")
                else:
                    f = open(path, "ab")
                try:
                    mv = memoryview(self.buf)
                    cap = len(self.buf)
                    while have < size:
                        want = size - have
                        n = r.readinto(mv[:want] if want < cap else mv)
                        if not n:
                            break
                        chunk = mv[:n]
                        f.write(chunk)
                        h.update(chunk)
                        have += n
                        if progress is not None:
                            progress(n)
                finally:
                    f.close()
            except OSError as e:
                raise FetchError("download broken at byte %d (%r)" % (have, e)) from None
            finally:
                r.close()
            if have < size:
                raise FetchError("download broken at byte %d of %d" % (have, size))
        return h.digest()

    def _resume(self, path, size, hasher_factory):
        """(bytes already in path, hash over them); a file longer than size is started over."""
        h = hasher_factory()
        have = 0
        try:
            f = open(path, "rb")
        except OSError:
            return 0, h
        try:
            mv = memoryview(self.buf)
            while True:
                n = f.readinto(mv)
                if not n:
                    break
                h.update(mv[:n])
                have += n
        finally:
            f.close()
        if have > size:
            import os

            os.remove(path)
            return 0, hasher_factory()
        return have, h
