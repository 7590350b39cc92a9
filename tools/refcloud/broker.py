"""A throwaway mosquitto on a free 127.0.0.1 port (fleet runner, `make sim`, the fleet test).

The config lives in a temp dir; as root mosquitto would drop to the `mosquitto` user, so it is told
`user root` and given that writable folder. The broker runs in its own process group; stop() ends it.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def ours(proc, port):
    """The port answers and it is our mosquitto that answers: one that lost the race for a free port
    to another process exits at once (bind error) while the port still answers."""
    if not wait_port(port):
        return False
    time.sleep(0.2)
    return proc.poll() is None


class Broker:
    def __init__(self, port=None):
        self.fixed_port = port is not None
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="refcloud-mosq-")
        self.proc = None

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def start(self):
        conf = os.path.join(self.dir, "mosquitto.conf")
        lines = ["listener %d 127.0.0.1" % self.port, "allow_anonymous true", "persistence false",
                 "log_dest file %s" % os.path.join(self.dir, "mosquitto.log"), "log_type error",
                 "log_type warning", "max_queued_messages 10000"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            lines.append("user root")
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        if not ours(self.proc, self.port):
            if self.proc.poll() is not None and not self.fixed_port:
                self.port = free_port()  # lost the port to another process: try another one
                return self.start()
            self.stop()
            raise RuntimeError("mosquitto did not start on port %d (see %s)" % (self.port, self.dir))
        return self

    def stop(self):
        p = self.proc
        self.proc = None
        if p is not None and p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
