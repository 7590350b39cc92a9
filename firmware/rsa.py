# RSA signature verification, RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017 section 8.2.2), for the
# signed update manifests: the public key is provisioned (`update_pubkey`), the private key never
# leaves the release machine (tools/release). Only verification runs here: s^e mod n with the public
# exponent (65537: 16 modular squarings and one multiplication of 2048-bit numbers) and one SHA-256.
#
# Verification re-encodes the expected block EM' = 00 01 FF..FF 00 || DigestInfo || H and compares it
# whole with s^e mod n, instead of parsing the decrypted block: parsing invites the classic
# padding-check forgeries (RFC 8017 8.2.2 step 3 and its note).
# The public key: SubjectPublicKeyInfo (RFC 5280) or PKCS#1 RSAPublicKey, in PEM or DER.
import hashlib

# DER of DigestInfo's AlgorithmIdentifier for SHA-256 plus the OCTET STRING header of the hash
# (RFC 8017 section 9.2, note 1)
SHA256_PREFIX = bytes((0x30, 0x31, 0x30, 0x0D, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04,
                       0x02, 0x01, 0x05, 0x00, 0x04, 0x20))
RSA_OID = bytes((0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01))  # 1.2.840.113549.1.1.1
MIN_BITS = 2048
MAX_BITS = 4096


class KeyError_(ValueError):
    pass


def _der(data, pos, tag):
    """(start, end) of the value of the DER element with this tag at pos."""
    if pos + 2 > len(data) or data[pos] != tag:
        raise KeyError_("unexpected DER element")
    n = data[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if k < 1 or k > 3 or pos + k > len(data):
            raise KeyError_("bad DER length")
        n = 0
        for i in range(k):
            n = (n << 8) | data[pos + i]
        pos += k
    if pos + n > len(data):
        raise KeyError_("truncated DER")
    return pos, pos + n


def _int_at(data, pos):
    s, e = _der(data, pos, 0x02)
    return int.from_bytes(bytes(data[s:e]), "big"), e


def _rsa_public_key(der, pos=0):
    # RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }
    s, _ = _der(der, pos, 0x30)
    n, p = _int_at(der, s)
    e, _ = _int_at(der, p)
    return n, e


def load_public_key(data):
    """(n, e) from a PEM or DER public key: SubjectPublicKeyInfo ("PUBLIC KEY", what tools/release
    writes) or PKCS#1 ("RSA PUBLIC KEY"). Raises ValueError for anything else."""
    import binascii

    if isinstance(data, str):
        data = data.encode()
    if b"-----BEGIN" in data:
        start = data.find(b"\n", data.find(b"-----BEGIN")) + 1
        end = data.find(b"-----END", start)
        if start <= 0 or end < 0:
            raise KeyError_("bad PEM")
        data = binascii.a2b_base64(b"".join(data[start:end].split()))
    s, e = _der(data, 0, 0x30)
    if s < len(data) and data[s] == 0x30:
        # SubjectPublicKeyInfo: SEQUENCE { AlgorithmIdentifier, BIT STRING { RSAPublicKey } }
        a_s, a_e = _der(data, s, 0x30)
        o_s, o_e = _der(data, a_s, 0x06)
        if bytes(data[o_s:o_e]) != RSA_OID:
            raise KeyError_("not an RSA key")
        b_s, b_e = _der(data, a_e, 0x03)
        if data[b_s] != 0:
            raise KeyError_("bad BIT STRING")
        n, e = _rsa_public_key(data, b_s + 1)
    else:
        n, e = _rsa_public_key(data, 0)
    bits = 0
    x = n
    while x:
        x >>= 1
        bits += 1
    if bits < MIN_BITS or bits > MAX_BITS or e < 3 or e % 2 == 0:
        raise KeyError_("RSA key must be 2048..4096 bits with an odd exponent")
    return n, e


def _byte_len(n):
    k = 0
    while n:
        n >>= 8
        k += 1
    return k


def modexp(s, e, n):
    """pow(s, e, n) one modular multiplication at a time. The verification runs in the update's
    worker thread, and MicroPython switches threads only between bytecodes: one three-argument pow
    would hold the control loop for the whole exponentiation (estimated 50-100 ms for 2048 bits on an
    ESP32), one step of it for a 17th of that. (m * m) % n, not pow(m, 2, n): the same result at half
    the cost on MicroPython's mpz (measured on the unix port). host_tests/test_trust.py checks it
    against the three-argument pow."""
    if e < 1:
        return 1 % n
    bits = 0
    x = e
    while x:
        x >>= 1
        bits += 1
    m = s % n
    for i in range(bits - 2, -1, -1):
        m = (m * m) % n
        if (e >> i) & 1:
            m = (m * s) % n
    return m


def verify(pubkey, message_hash, signature):
    """True when signature (bytes) is a PKCS#1 v1.5 SHA-256 signature of the message whose
    SHA-256 digest is message_hash, under pubkey (n, e)."""
    n, e = pubkey
    k = _byte_len(n)
    if len(signature) != k or len(message_hash) != 32:
        return False
    s = int.from_bytes(bytes(signature), "big")
    if s >= n:
        return False
    m = modexp(s, e, n)
    t = SHA256_PREFIX + bytes(message_hash)
    pad = k - len(t) - 3
    if pad < 8:
        return False
    expected = int.from_bytes(b"\x00\x01" + b"\xff" * pad + b"\x00" + t, "big")
    return m == expected


def verify_bytes(pubkey, data, signature):
    return verify(pubkey, hashlib.sha256(data).digest(), signature)
