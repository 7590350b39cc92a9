"""Real network peers for the link tests (CPython only; not a test module).

- Broker: a mosquitto on a free 127.0.0.1 port with a generated config in a temp dir, safe as root
  (runs as the current user, anonymous, no persistence); stop()/start() keep the port so that a
  restart looks like a broker reboot. Broker(tls=Certs(...)) listens with TLS instead.
- Certs: a CA and a server certificate for 127.0.0.1/localhost made with openssl, plus a second,
  unrelated CA (the wrong one).
- Blackhole: a TCP listener that accepts and never answers.
- Proxy: a TCP forwarder in front of a broker that can pass, cut every connection, blackhole
  (keep connections, forward nothing) or dribble (forward one byte at a time, slowly).
- Client: a paho-mqtt 2.x client that records what it receives.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

from tools.refcloud.broker import MOSQUITTO, free_port, ours, wait_port  # noqa: F401  (re-exported to the tests)


class Certs:
    def __init__(self, folder):
        self.dir = folder
        os.makedirs(folder, exist_ok=True)
        self.ca_key, self.ca = self._ca("ca", "Test CA")
        self.other_ca_key, self.other_ca = self._ca("other", "Other CA")
        self.key = os.path.join(folder, "server.key")
        self.cert = os.path.join(folder, "server.crt")
        csr = os.path.join(folder, "server.csr")
        ext = os.path.join(folder, "server.ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                    "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
        self._ssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                  "-nodes", "-keyout", self.key, "-out", csr, "-subj", "/CN=localhost")
        self._ssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
                  "-CAcreateserial", "-out", self.cert, "-days", "30", "-extfile", ext)

    def _ca(self, name, cn):
        key = os.path.join(self.dir, name + ".key")
        crt = os.path.join(self.dir, name + ".crt")
        self._ssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                  "-nodes", "-keyout", key, "-out", crt, "-days", "30", "-subj", "/CN=" + cn,
                  "-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        return key, crt

    @staticmethod
    def _ssl(*args):
        subprocess.run(["openssl"] + list(args), check=True, capture_output=True)


class Broker:
    def __init__(self, port=None, tls=None, folder=None):
        self.port = port or free_port()
        self.tls = tls
        self.dir = folder or tempfile.mkdtemp(prefix="mosq-")
        self.proc = None
        self.conf = os.path.join(self.dir, "mosquitto.conf")
        lines = [
            "listener %d 127.0.0.1" % self.port,
            "allow_anonymous true",
            "persistence false",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "max_keepalive 65535",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # otherwise it drops to `mosquitto` and cannot read our files
        if tls is not None:
            lines += ["cafile " + tls.ca, "certfile " + tls.cert, "keyfile " + tls.key,
                      "require_certificate false"]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.log_path = os.path.join(self.dir, "mosquitto.log")

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", self.conf], stdout=self.log, stderr=self.log)
        if not ours(self.proc, self.port):
            self.stop()
            raise RuntimeError("mosquitto did not start: " + open(self.log_path).read()[-2000:])
        return self

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
            self.log.close()

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.close()


def _listener():
    """A TCP listener on a free 127.0.0.1 port: (socket, port)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock, sock.getsockname()[1]


class Blackhole:
    """Accepts TCP connections and never sends a byte."""

    def __init__(self):
        self.sock, self.port = _listener()
        self.conns = []
        self.accepted = 0
        self._stop = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(c)
            self.accepted += 1

    def close(self):
        self._stop = True
        for c in self.conns:
            c.close()
        self.sock.close()


class Proxy:
    """127.0.0.1:port -> target_port; mode in pass | cut | blackhole | dribble."""

    def __init__(self, target_port, dribble_s=0.05):
        self.target = target_port
        self.mode = "pass"
        self.dribble_s = dribble_s
        self.sock, self.port = _listener()
        self.pairs = []
        self.accepted = 0
        self._stop = False
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def set_mode(self, mode):
        self.mode = mode
        if mode == "cut":
            self.cut()

    def cut(self):
        with self._lock:
            pairs, self.pairs = self.pairs, []
        for a, b in pairs:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def _accept(self):
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            if self.mode == "cut":
                c.close()
                continue
            try:
                u = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                c.close()
                continue
            with self._lock:
                self.pairs.append((c, u))
            threading.Thread(target=self._pump, args=(c, u), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c), daemon=True).start()

    def _pump(self, src, dst):
        src.settimeout(0.1)
        while not self._stop:
            if self.mode == "blackhole":
                time.sleep(0.05)  # hold everything; the peer's kernel buffers fill up
                continue
            try:
                data = src.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                break
            if not data:
                break
            try:
                if self.mode == "dribble":
                    for i in range(len(data)):
                        dst.sendall(data[i:i + 1])
                        time.sleep(self.dribble_s)
                else:
                    dst.sendall(data)
            except OSError:
                break
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self._stop = True
        self.cut()
        self.sock.close()


class Client:
    """paho-mqtt 2.x client that records messages: list of (topic, payload bytes, retain)."""

    def __init__(self, port, topics=("#",), tls_ca=None, client_id=""):
        import paho.mqtt.client as mqtt

        self.msgs = []
        self.cond = threading.Condition()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        if tls_ca:
            self.c.tls_set(ca_certs=tls_ca)
        self.topics = topics
        self.c.on_message = self._on_message
        self.c.on_connect = self._on_connect
        self._subscribed = threading.Event()
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("paho did not connect")

    def _on_connect(self, client, userdata, flags, rc, props=None):
        for t in self.topics:
            client.subscribe(t, qos=1)
        self._subscribed.set()

    def _on_message(self, client, userdata, msg):
        with self.cond:
            self.msgs.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
            self.cond.notify_all()

    def publish(self, topic, payload, qos=1, retain=False):
        info = self.c.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(5)

    def wait_for(self, pred, timeout=10.0, start=0):
        """First recorded message (from index start) with pred(topic, payload, retain), or None."""
        end = time.time() + timeout
        with self.cond:
            while True:
                for i in range(start, len(self.msgs)):
                    if pred(*self.msgs[i]):
                        return self.msgs[i]
                left = end - time.time()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def count(self, pred):
        with self.cond:
            return sum(1 for m in self.msgs if pred(*m))

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()
