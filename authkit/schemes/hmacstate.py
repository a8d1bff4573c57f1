"""Courier's HMAC secrets (``hmac-md5pw``, ``hmac-sha1pw``, ``hmac-sha256pw``) and
CRAM verification against them.

A Courier HMAC "password" is not a digest but the precomputed HMAC key state
(libs/libhmac/hmac.c ``hmac_hashkey``, written by ``userdbpw -hmac-<alg>``):

    K     = password, replaced by H(password) if longer than 64 bytes, zero-padded to 64
    value = hex(compress(IV, K ^ 0x5c...)) + hex(compress(IV, K ^ 0x36...))

outer state first, then inner; the chaining words are written little-endian for MD5
and big-endian for SHA-1/SHA-256, with no finalisation.  hashlib cannot resume
from such a state, so this module carries its own MD5, SHA-1 and SHA-256
compression functions (pure Python, about 0.1 ms per CRAM check).

* :func:`hmac_state` reproduces ``userdbpw -hmac-<alg>`` byte for byte.
* :func:`verify_cram` finishes HMAC(secret, challenge) from a stored state and
  compares it with a client's hex response in constant time.

Algorithms: ``md5``, ``sha1``, ``sha256``.  Not here: the CRAM/SASL framing
(base64 of "user response") and choosing which userdb field to read.
"""

from __future__ import annotations

from _operator import _compare_digest
from _struct import pack, unpack

_M = 0xFFFFFFFF

# ---------------------------------------------------------------- MD5 (RFC 1321)
_MD5_IV = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476)
_MD5_S = (7, 12, 17, 22) * 4 + (5, 9, 14, 20) * 4 + (4, 11, 16, 23) * 4 + (6, 10, 15, 21) * 4
# fmt: off
_MD5_K = (
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
)
# fmt: on
_MD5_G = tuple(i if i < 16 else (5 * i + 1) % 16 if i < 32 else (3 * i + 5) % 16 if i < 48 else (7 * i) % 16 for i in range(64))


def md5_compress(state: tuple, block: bytes) -> tuple:
    """One MD5 compression of a 64-byte ``block`` into ``state`` (4 words)."""
    x = unpack("<16I", block)
    a, b, c, d = state
    for i in range(64):
        if i < 16:
            f = (b & c) | (~b & d)
        elif i < 32:
            f = (d & b) | (~d & c)
        elif i < 48:
            f = b ^ c ^ d
        else:
            f = c ^ (b | (~d & _M))
        f = (f + a + _MD5_K[i] + x[_MD5_G[i]]) & _M
        s = _MD5_S[i]
        a, d, c = d, c, b
        b = (b + ((f << s) | (f >> (32 - s)))) & _M
    return ((state[0] + a) & _M, (state[1] + b) & _M, (state[2] + c) & _M, (state[3] + d) & _M)


# ---------------------------------------------------------------- SHA-1 (FIPS 180-4)
_SHA1_IV = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0)


def sha1_compress(state: tuple, block: bytes) -> tuple:
    """One SHA-1 compression of a 64-byte ``block`` into ``state`` (5 words)."""
    w = list(unpack(">16I", block))
    for t in range(16, 80):
        v = w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16]
        w.append(((v << 1) | (v >> 31)) & _M)
    a, b, c, d, e = state
    for t in range(80):
        if t < 20:
            f = (b & c) | (~b & d)
            k = 0x5A827999
        elif t < 40:
            f = b ^ c ^ d
            k = 0x6ED9EBA1
        elif t < 60:
            f = (b & c) | (b & d) | (c & d)
            k = 0x8F1BBCDC
        else:
            f = b ^ c ^ d
            k = 0xCA62C1D6
        temp = ((((a << 5) | (a >> 27)) & _M) + f + e + k + w[t]) & _M
        e, d, c, b, a = d, c, ((b << 30) | (b >> 2)) & _M, a, temp
    return tuple((s + v) & _M for s, v in zip(state, (a, b, c, d, e)))


# ---------------------------------------------------------------- SHA-256 (FIPS 180-4)
_SHA256_IV = (0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19)
# fmt: off
_SHA256_K = (
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
)
# fmt: on


def _ror(x: int, n: int) -> int:
    return ((x >> n) | (x << (32 - n))) & _M


def sha256_compress(state: tuple, block: bytes) -> tuple:
    """One SHA-256 compression of a 64-byte ``block`` into ``state`` (8 words)."""
    w = list(unpack(">16I", block))
    for t in range(16, 64):
        x, y = w[t - 15], w[t - 2]
        s0 = _ror(x, 7) ^ _ror(x, 18) ^ (x >> 3)
        s1 = _ror(y, 17) ^ _ror(y, 19) ^ (y >> 10)
        w.append((w[t - 16] + s0 + w[t - 7] + s1) & _M)
    a, b, c, d, e, f, g, h = state
    for t in range(64):
        s1 = _ror(e, 6) ^ _ror(e, 11) ^ _ror(e, 25)
        ch = (e & f) ^ (~e & g)
        t1 = (h + s1 + ch + _SHA256_K[t] + w[t]) & _M
        s0 = _ror(a, 2) ^ _ror(a, 13) ^ _ror(a, 22)
        maj = (a & b) ^ (a & c) ^ (b & c)
        t2 = (s0 + maj) & _M
        h, g, f, e, d, c, b, a = g, f, e, (d + t1) & _M, c, b, a, (t1 + t2) & _M
    return tuple((s + v) & _M for s, v in zip(state, (a, b, c, d, e, f, g, h)))


def _new_hash(algorithm: str):
    if algorithm == "md5":
        from _md5 import md5 as h
    elif algorithm == "sha1":
        from _sha1 import sha1 as h
    else:
        from _sha256 import sha256 as h
    return h


#: algorithm -> (compress, IV, word byte order for struct, digest size)
_ALGORITHMS = {
    "md5": (md5_compress, _MD5_IV, "<", 16),
    "sha1": (sha1_compress, _SHA1_IV, ">", 20),
    "sha256": (sha256_compress, _SHA256_IV, ">", 32),
}


def _algorithm(algorithm: str) -> tuple:
    try:
        return _ALGORITHMS[algorithm.lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"unknown HMAC algorithm {algorithm!r}; known: md5, sha1, sha256") from None


def hmac_state(password: bytes, algorithm: str) -> str:
    """The Courier HMAC secret of ``password`` for ``algorithm`` (``md5``, ``sha1``,
    ``sha256``), exactly as ``userdbpw -hmac-<algorithm>`` prints it: lowercase hex
    of the outer then the inner key state (64, 80 or 128 hex characters).

    Raises ``ValueError`` for an unknown algorithm, and for an empty password or
    one containing NUL (``userdbpw`` refuses the first and cannot read the second)."""
    compress, iv, order, size = _algorithm(algorithm)
    if not password or b"\0" in password:
        raise ValueError("refusing an empty password or one containing NUL")
    key = password
    if len(key) > 64:
        key = _new_hash(algorithm.lower())(key).digest()
    key = key.ljust(64, b"\0")
    outer = compress(iv, bytes(b ^ 0x5C for b in key))
    inner = compress(iv, bytes(b ^ 0x36 for b in key))
    fmt = f"{order}{len(iv)}I"
    return pack(fmt, *outer).hex() + pack(fmt, *inner).hex()


def _finish(compress, state: tuple, order: str, data: bytes) -> bytes:
    """The digest of (one already-consumed 64-byte block + ``data``) from ``state``."""
    bits = (64 + len(data)) * 8
    padded = data + b"\x80" + b"\0" * ((55 - len(data)) % 64)
    padded += pack(order + "Q", bits)
    for i in range(0, len(padded), 64):
        state = compress(state, padded[i : i + 64])
    return pack(f"{order}{len(state)}I", *state)


_HEX = frozenset("0123456789abcdefABCDEF")


def verify_cram(stored_state_hex: str, algorithm: str, challenge: bytes, response_hex: str) -> bool:
    """True if ``response_hex`` is HMAC-<algorithm>(secret, ``challenge``) in hex (any
    case), where the secret is given by its Courier state ``stored_state_hex``.

    A malformed stored state (wrong length, not hex) or response gives ``False``,
    never an exception.  Raises ``ValueError`` only for an unknown ``algorithm``.
    The comparison is constant-time."""
    compress, iv, order, size = _algorithm(algorithm)
    if not isinstance(stored_state_hex, str) or len(stored_state_hex) != 4 * size:
        return False
    if not _HEX.issuperset(stored_state_hex):
        return False
    if not isinstance(response_hex, str) or not response_hex.isascii():
        return False
    fmt = f"{order}{len(iv)}I"
    raw = bytes.fromhex(stored_state_hex)
    outer, inner = unpack(fmt, raw[:size]), unpack(fmt, raw[size:])
    inner_digest = _finish(compress, inner, order, bytes(challenge))
    mac = _finish(compress, outer, order, inner_digest)
    return _compare_digest(mac.hex().encode("ascii"), response_hex.lower().encode("ascii"))


__all__ = ["hmac_state", "verify_cram", "md5_compress", "sha1_compress", "sha256_compress"]
