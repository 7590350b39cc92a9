# MicroPython driver for the link tests (host_tests/test_link.py): runs firmware.link in its thread
# next to a fake 10 ms control loop that measures its longest gap, and reports on stdout:
#   @status {"connected":..,"connect_count":..,"gap_ms":<max gap in the last second>,"max_gap_ms":..}
#   @in <topic> <payload length or -1 when discarded as too large>
#   @shutdown <true|false>
# Every inbound message is echoed to <p>/<id>/event as {"echo":topic,"n":len or null}; a payload of
# b"shutdown" triggers link.shutdown(); a `state` message {"n":k} is queued every second.
# Usage: micropython link_driver.py HOST PORT ID [key=value ...]  (ca=FILE keepalive=S seconds=N
#        hostname=NAME io_ms=N backoff_max_ms=N user=U password=P)
import json
import sys
import time

from firmware.link import Link

PERIOD_MS = 10


def main():
    host, port, cid = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    opt = {}
    for a in sys.argv[4:]:
        k, v = a.split("=", 1)
        opt[k] = v
    ca = None
    if "ca" in opt:
        with open(opt["ca"], "rb") as f:
            ca = f.read()
    kw = {}
    for k in ("poll_ms", "io_ms", "backoff_max_ms", "backoff_min_ms", "connect_ms", "tls_ms"):
        if k in opt:
            kw[k] = int(opt[k])
    p = "evse/" + cid + "/"
    link = Link(cid, host, port, [p + "cmd", p + "limit", p + "config"], user=opt.get("user"),
                password=opt.get("password"), cadata=ca, online_topic=p + "online",
                server_hostname=opt.get("hostname"), keepalive_s=int(opt.get("keepalive", "30")), **kw)
    link.start()
    seconds = int(opt.get("seconds", "600"))
    t_end = time.ticks_add(time.ticks_ms(), seconds * 1000)
    last = time.ticks_us()
    gap = 0
    max_gap = 0
    tick = 0
    n = 0
    was = None
    while time.ticks_diff(t_end, time.ticks_ms()) > 0:
        now = time.ticks_us()
        g = time.ticks_diff(now, last)
        last = now
        if g > gap:
            gap = g
        tick += 1
        if tick % 10 == 0:  # "slow loop" every 100 ms
            while True:
                m = link.recv()
                if m is None:
                    break
                topic, payload = m
                print("@in", topic, -1 if payload is None else len(payload))
                if payload == b"shutdown":
                    print("@shutdown", json.dumps(link.shutdown(3000)))
                    return
                link.publish(p + "event", json.dumps({"echo": topic, "n": None if payload is None else len(payload)}))
            c = link.connected
            if c != was:
                was = c
                st = link.status()
                print("@link", json.dumps(st))
        if tick % 100 == 0:  # every second
            n += 1
            link.publish(p + "state", json.dumps({"n": n}), True, 1, "state")
            if gap > max_gap:
                max_gap = gap
            st = link.status()
            st["gap_ms"] = gap / 1000
            st["max_gap_ms"] = max_gap / 1000
            print("@status", json.dumps(st))
            gap = 0
        # sleep to the next 10 ms boundary, like the app's loop
        spent = time.ticks_diff(time.ticks_us(), now)
        wait = PERIOD_MS * 1000 - spent
        if wait > 0:
            time.sleep_us(wait)
    print("@end")


main()
