# The WebSocket client's framing and handshake (firmware/ws.py) as pure functions of bytes: masked
# client frames with 7/16/64-bit lengths, the incremental parser fed byte by byte (a half-received
# frame is only parser state), fragmentation with a ping between the fragments, the close frame,
# and every protocol violation refused with its close code. Runs on CPython and MicroPython.
import sys

from firmware import ws
from mpcompat import raises

# 64 KB payloads do not fit the ESP32's 112K heap (the device bounds messages at ws.MAX_MESSAGE); the
# 64-bit length form is checked there with a short payload in the long form instead
BIG = sys.implementation.name != "micropython"


def server_frame(op, payload, fin=True, mask=None, rsv=0):
    """A frame as a server sends it (unmasked unless mask is given)."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload)
    b0 = (0x80 if fin else 0) | rsv | op
    m = 0x80 if mask else 0
    if n < 126:
        head = bytes((b0, m | n))
    elif n < 65536:
        head = bytes((b0, m | 126, n >> 8, n & 0xFF))
    else:
        head = bytes((b0, m | 127)) + bytes([(n >> (8 * (7 - i))) & 0xFF for i in range(8)])
    if mask:
        body = bytearray(payload)
        for i in range(n):
            body[i] ^= mask[i & 3]
        return head + mask + bytes(body)
    return head + payload


def unmask(frame):
    """(fin, opcode, payload) of one client frame; it must be masked."""
    b0 = frame[0]
    b1 = frame[1]
    assert b1 & 0x80, "client frames are masked"
    n = b1 & 0x7F
    off = 2
    if n == 126:
        n = frame[2] << 8 | frame[3]
        off = 4
    elif n == 127:
        n = 0
        for i in range(8):
            n = n << 8 | frame[2 + i]
        off = 10
    key = frame[off:off + 4]
    body = bytearray(frame[off + 4:off + 4 + n])
    assert len(body) == n
    for i in range(n):
        body[i] ^= key[i & 3]
    return bool(b0 & 0x80), b0 & 0x0F, bytes(body)


def test_client_frames_are_masked_with_all_three_length_forms():
    sizes = ((0, 6), (125, 6), (126, 8), (65535, 8), (65536, 14)) if BIG else ((0, 6), (125, 6), (126, 8), (9000, 8))
    for n, hdr in sizes:
        f = ws.encode_frame(ws.OP_TEXT, b"x" * n)
        assert len(f) == hdr + n, (n, len(f))
        fin, op, body = unmask(f)
        assert fin and op == ws.OP_TEXT and body == b"x" * n
    f = ws.encode_frame(ws.OP_TEXT, "h\u00e9", mask=b"\x01\x02\x03\x04")
    assert f[:2] == b"\x81\x83" and f[2:6] == b"\x01\x02\x03\x04"
    assert unmask(f)[2] == "h\u00e9".encode()
    a = ws.encode_frame(ws.OP_TEXT, b"same")
    b = ws.encode_frame(ws.OP_TEXT, b"same")
    assert a[2:6] != b[2:6] or a[6:] != b[6:]  # a fresh random key per frame (practically)


def test_parser_byte_by_byte_all_lengths():
    for n in ((0, 1, 125, 126, 1000, 65535, 65536) if BIG else (0, 1, 125, 126, 1000, 5000)):
        p = ws.Parser(max_message=70000)
        data = server_frame(ws.OP_TEXT, "a" * n)
        got = None
        for i in range(0, len(data), 997 if n > 2000 else 1):
            p.feed(data[i:i + (997 if n > 2000 else 1)])
            ev = p.next()
            if ev is not None:
                got = ev
        assert got == (ws.OP_TEXT, "a" * n), (n, got and len(got[1]))
        assert p.next() is None


def test_the_64_bit_length_form_is_read():
    p = ws.Parser()
    p.feed(bytes((0x81, 127, 0, 0, 0, 0, 0, 0, 0, 5)) + b"hello")
    assert p.next() == (ws.OP_TEXT, "hello")


def test_fragmented_message_with_a_ping_between_fragments():
    p = ws.Parser()
    p.feed(server_frame(ws.OP_TEXT, "[2,\"1\",", fin=False))
    assert p.next() is None
    p.feed(server_frame(ws.OP_PING, b"hi"))
    assert p.next() == (ws.OP_PING, b"hi")  # answered at once, inside the fragmented message
    p.feed(server_frame(ws.OP_CONT, "\"Heartbeat\",", fin=False))
    p.feed(server_frame(ws.OP_CONT, "{}]", fin=True) + server_frame(ws.OP_PONG, b""))
    assert p.next() == (ws.OP_TEXT, '[2,"1","Heartbeat",{}]')
    assert p.next() == (ws.OP_PONG, b"")
    assert p.next() is None


def test_close_frame_codes():
    p = ws.Parser()
    p.feed(server_frame(ws.OP_CLOSE, bytes((0x03, 0xE9)) + b"bye"))
    assert p.next() == (ws.OP_CLOSE, (1001, b"bye"))
    p.feed(server_frame(ws.OP_CLOSE, b""))
    assert p.next() == (ws.OP_CLOSE, (None, b""))
    assert ws.close_payload(1000) == b"\x03\xe8"


def _violation(frames, code, max_message=ws.MAX_MESSAGE):
    p = ws.Parser(max_message)

    def run():
        p.feed(frames)
        while p.next() is not None:
            pass

    e = raises(ws.WsError, run)
    assert e.code == code, (e.code, e.msg)


def test_protocol_violations_are_refused_with_their_close_code():
    _violation(server_frame(ws.OP_TEXT, "x", mask=b"abcd"), ws.CLOSE_PROTOCOL)  # masked from the server
    _violation(server_frame(ws.OP_TEXT, "x", rsv=0x40), ws.CLOSE_PROTOCOL)  # RSV1 without an extension
    _violation(server_frame(3, "x"), ws.CLOSE_PROTOCOL)  # reserved opcode
    _violation(server_frame(ws.OP_PING, "x", fin=False), ws.CLOSE_PROTOCOL)  # fragmented control frame
    _violation(server_frame(ws.OP_PING, "x" * 126), ws.CLOSE_PROTOCOL)  # long control frame
    _violation(server_frame(ws.OP_CONT, "x"), ws.CLOSE_PROTOCOL)  # continuation of nothing
    _violation(server_frame(ws.OP_TEXT, "a", fin=False) + server_frame(ws.OP_TEXT, "b"), ws.CLOSE_PROTOCOL)
    _violation(server_frame(ws.OP_CLOSE, b"\x03"), ws.CLOSE_PROTOCOL)  # 1-byte close payload
    _violation(server_frame(ws.OP_TEXT, b"\xff\xfe"), ws.CLOSE_BAD_DATA)  # not UTF-8
    _violation(server_frame(ws.OP_TEXT, b"\xed\xa0\x80"), ws.CLOSE_BAD_DATA)  # an encoded surrogate
    _violation(server_frame(ws.OP_TEXT, "x" * 300), ws.CLOSE_TOO_BIG, 256)
    _violation(server_frame(ws.OP_TEXT, "x" * 200, fin=False) + server_frame(ws.OP_CONT, "y" * 200),
               ws.CLOSE_TOO_BIG, 256)


def test_a_huge_announced_length_is_refused_before_it_is_buffered():
    p = ws.Parser(1024)
    head = bytes((0x81, 127, 0, 0, 0, 1, 0, 0, 0, 0))  # 4 GiB announced

    def run():
        p.feed(head)
        p.next()

    assert raises(ws.WsError, run).code == ws.CLOSE_TOO_BIG


def test_handshake_key_accept_and_subprotocol():
    # RFC 6455 section 1.3's example
    assert ws.accept_for("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    key = ws.new_key()
    assert len(key) == 24 and key != ws.new_key()
    req = ws.handshake_request("10.0.0.1", 8180, "/ocpp/CP1", key, "ocpp1.6", "CP1", "pw").decode()
    assert req.startswith("GET /ocpp/CP1 HTTP/1.1\r\n") and req.endswith("\r\n\r\n")
    assert "Host: 10.0.0.1:8180\r\n" in req and "Sec-WebSocket-Protocol: ocpp1.6\r\n" in req
    assert "Sec-WebSocket-Version: 13\r\n" in req and "Sec-WebSocket-Key: %s\r\n" % key in req
    assert "Authorization: Basic Q1AxOnB3\r\n" in req  # base64("CP1:pw")
    assert "Authorization" not in ws.handshake_request("h", 80, "/", key, "ocpp1.6").decode()
    acc = ws.accept_for(key)
    good = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: ocpp1.6" % acc).encode()
    assert ws.check_handshake(good, key, "ocpp1.6")["sec-websocket-protocol"] == "ocpp1.6"
    bad = [
        good.replace(acc.encode(), ws.accept_for("other").encode()),
        good.replace(b"\r\nSec-WebSocket-Protocol: ocpp1.6", b""),  # no subprotocol in the answer
        good.replace(b"ocpp1.6", b"ocpp2.0.1"),
        good.replace(b"101 Switching Protocols", b"401 Unauthorized"),
        good.replace(b"Upgrade: websocket", b"Upgrade: h2c"),
        b"\xff\xfe",
    ]
    for b in bad:
        raises(ws.WsError, ws.check_handshake, b, key, "ocpp1.6")


def test_sha1_fallback():
    # FIPS 180-4 examples, and the padding edges against hashlib where the port has it
    assert ws.sha1(b"abc").hex() == "a9993e364706816aba3e25717850c26c9cd0d89d"
    assert ws.sha1(b"").hex() == "da39a3ee5e6b4b0d3255bfef95601890afd80709"
    msg = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
    assert ws.sha1(msg).hex() == "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
    import hashlib

    if hasattr(hashlib, "sha1"):
        for n in (1, 55, 56, 63, 64, 65, 119, 120, 1000):
            assert ws.sha1(b"x" * n) == hashlib.sha1(b"x" * n).digest(), n


def test_urls():
    assert ws.parse_url("ws://127.0.0.1:9000/ocpp") == (False, "127.0.0.1", 9000, "/ocpp")
    assert ws.parse_url("wss://cs.example.net/ocpp/16") == (True, "cs.example.net", 443, "/ocpp/16")
    assert ws.parse_url("ws://h") == (False, "h", 80, "/")
    assert ws.parse_url("ws://[::1]:81/x") == (False, "::1", 81, "/x")
    for bad in ("http://h/", "ws://", "ws://u:p@h/", "ws://h:0/", "ws://h:99999/"):
        raises(ValueError, ws.parse_url, bad)
    raises(ValueError, ws.WsLink, "wss://h/x")  # TLS needs the CA


def test_backoff_grows_and_is_capped():
    assert 500 <= ws.backoff_ms(0) <= 1000
    assert 4000 <= ws.backoff_ms(3) <= 8000
    assert 30000 <= ws.backoff_ms(50) <= 60000
