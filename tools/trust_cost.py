# Cost of the contract v1.1 trust parts on the unix port (not a test: prints numbers).
#   MICROPYPATH=.:host_tests:build/lib .venv/bin/micropython -X heapsize=512K tools/trust_cost.py [URL SIZE]
# HMAC: Verifier.open() of a signed `cmd` (envelope JSON, mac, constant-time compare; the counter's
# flash write excluded by a store that does not write). RSA: manifest.parse() of a signed manifest
# (2048-bit PKCS#1 v1.5 verify, SHA-256, JSON). With URL and SIZE: one file of SIZE bytes downloaded
# by firmware.fetch into flash, with the heap that the download allocated (GC off) and held.
import gc
import sys
import time

import trust_vectors as V

from firmware import manifest, rsa, signed


class NoFlash:
    root = "build/tmp"

    def read_json(self, name, default=None):
        return default

    def write_json(self, name, obj):
        pass


def per_call(fn, n):
    t0 = time.ticks_us()
    for _ in range(n):
        fn()
    return time.ticks_diff(time.ticks_us(), t0) / n


def main():
    key = signed.parse_key("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
    v = signed.Verifier(NoFlash(), key)
    msg = '{"id":"c-1","op":"get"}'
    ctr = [0]

    def one():
        ctr[0] += 1
        mac = signed.hmac_sha256(key, ("cmd\n%d\n%s" % (ctr[0], msg)).encode())
        env = '{"msg":"%s","ctr":%d,"mac":"%s"}' % (msg.replace('"', '\\"'), ctr[0],
                                                  "".join("%02x" % b for b in mac))
        return env

    envs = [one() for _ in range(200)]
    it = iter(envs)
    print("HMAC envelope verify (Verifier.open): %.0f us" % per_call(lambda: v.open("cmd", next(it)), 200))
    print("HMAC-SHA256 alone: %.0f us" % per_call(lambda: signed.hmac_sha256(key, b"cmd\n1\n" + msg.encode()), 200))
    pk = rsa.load_public_key(V.PUB_PEM)
    print("RSA-2048 manifest verify (manifest.parse): %.0f us" %
          per_call(lambda: manifest.parse(V.MANIFEST_OK, pk, "sim", "0.1.0"), 20))
    sig = bytes(int(V.MSG_SIG[i:i + 2], 16) for i in range(0, len(V.MSG_SIG), 2))
    print("RSA-2048 verify alone (stepwise pow): %.0f us" % per_call(lambda: rsa.verify_bytes(pk, V.MSG, sig), 20))
    if len(sys.argv) > 2:
        import hashlib

        from firmware.fetch import Fetcher

        f = Fetcher()
        gc.collect()
        held0 = gc.mem_alloc()
        gc.disable()
        a0 = gc.mem_alloc()
        t0 = time.ticks_ms()
        f.to_file(sys.argv[1], "build/tmp/trust_cost.bin", int(sys.argv[2]), hashlib.sha256)
        dt = time.ticks_diff(time.ticks_ms(), t0)
        allocated = gc.mem_alloc() - a0
        gc.enable()
        gc.collect()
        print("download %s bytes: %d ms, %d bytes allocated in all (GC off), %d bytes held after" %
              (sys.argv[2], dt, allocated, gc.mem_alloc() - held0))


main()
