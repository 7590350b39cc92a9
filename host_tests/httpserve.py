"""A real HTTP server on 127.0.0.1 for the field-update tests (CPython only; not a test module):
python's http.server in a thread serving a folder, with byte ranges (`Range: bytes=N-`, answered
206) so that a download can resume, and faults a test can switch on:

- cut_after: close the connection after this many body bytes of a file (once per path, or always)
- status: answer every request for a path with this HTTP status
- hang: accept and never answer
- log: (path, range start) of every request
"""

import http.server
import os
import socketserver
import threading
import time


class Server:
    def __init__(self, folder, tls=None):
        """tls: (certificate file, key file) to serve https."""
        self.folder = folder
        self.cut_after = {}  # path -> bytes, or ("always", bytes)
        self.status = {}
        self.hang = False
        self.delay_s = 0.0
        self.log = []
        srv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                path = self.path.split("?")[0].lstrip("/")
                rng = self.headers.get("Range")
                start = 0
                if rng and rng.startswith("bytes=") and rng[6:].rstrip("-").isdigit():
                    start = int(rng[6:].rstrip("-"))
                srv.log.append((path, start))
                if srv.hang:
                    time.sleep(60)
                    return
                if path in srv.status:
                    self.send_error(srv.status[path])
                    return
                full = os.path.join(srv.folder, path)
                if ".." in path or not os.path.isfile(full):
                    self.send_error(404)
                    return
                with open(full, "rb") as f:
                    data = f.read()
                body = data[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                cut = srv.cut_after.get(path)
                if isinstance(cut, tuple):
                    cut = cut[1]
                elif cut is not None:
                    del srv.cut_after[path]
                if cut is not None and cut < len(body):
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                for i in range(0, len(body), 4096):
                    if srv.delay_s:
                        time.sleep(srv.delay_s)
                    self.wfile.write(body[i:i + 4096])

        class TS(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.httpd = TS(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.scheme = "http"
        if tls:
            import ssl

            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls[0], tls[1])
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, rel):
        return "%s://127.0.0.1:%d/%s" % (self.scheme, self.port, rel)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
