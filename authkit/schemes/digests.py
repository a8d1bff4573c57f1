"""Handler for Courier's ``{SCHEME}`` digests: ``{MD5}``, ``{MD5RAW}``, ``{SHA}``,
``{SSHA}``, ``{SHA256}``, ``{SHA512}`` (checkpasswordmd5.c, checkpasswordsha1.c).

* ``{MD5}``, ``{SHA}``, ``{SHA256}``, ``{SHA512}``: standard base64 (with ``=``
  padding) of the digest, compared as text exactly as Courier's ``strcmp`` does.
* ``{MD5RAW}``: lowercase hex of the MD5 digest; upper-case hex never matches (as in
  Courier).
* ``{SSHA}``: base64(sha1(password + salt) + salt).  Courier only accepts a 4-byte
  salt; authkit accepts ANY salt of 1 byte or more (OpenLDAP's slappasswd uses 4,
  other tools 8 or 16).  New hashes use 4 bytes so Courier can verify them.
* ``{SMD5}``: base64(md5(password + salt) + salt), OpenLDAP's salted MD5 (any salt
  of 1 byte or more).  Courier does not know it; authkit verifies it (LDAP
  directories hold it) and never makes it.

The body (text after the prefix) is passed in without the prefix.  Uses the builtin
hash modules (``_md5``, ``_sha1``...) and ``binascii``, not hashlib/base64, so that
the per-login path stays lean.  Not here: prefix matching (``__init__``).
"""

from __future__ import annotations

from _operator import _compare_digest
from binascii import Error as _B64Error
from binascii import a2b_base64, b2a_base64


def _digest(scheme: str, data: bytes) -> bytes:
    """The raw digest of ``data`` for ``scheme`` (MD5/MD5RAW/SHA/SSHA/SHA256/SHA512)."""
    if scheme in ("MD5", "MD5RAW", "SMD5"):
        try:
            from _md5 import md5 as h
        except ImportError:  # pragma: no cover - interpreter built without it
            from hashlib import md5 as h
    elif scheme in ("SHA", "SSHA"):
        try:
            from _sha1 import sha1 as h
        except ImportError:  # pragma: no cover
            from hashlib import sha1 as h
    elif scheme == "SHA256":
        try:
            from _sha256 import sha256 as h
        except ImportError:  # pragma: no cover
            from hashlib import sha256 as h
    elif scheme == "SHA512":
        try:
            from _sha512 import sha512 as h
        except ImportError:  # pragma: no cover
            from hashlib import sha512 as h
    else:
        raise ValueError("not a digest scheme")
    return h(data).digest()


def _b64(raw: bytes) -> bytes:
    return b2a_base64(raw, newline=False)


def verify(password: bytes, scheme: str, body: str) -> bool:
    """True if ``body`` (the stored value after ``{SCHEME}``) matches ``password``."""
    try:
        stored = body.encode("ascii")
    except UnicodeEncodeError:
        return False
    if scheme in ("SSHA", "SMD5"):
        try:
            raw = a2b_base64(stored, strict_mode=True)
        except (_B64Error, ValueError):
            return False
        size = 20 if scheme == "SSHA" else 16  # the digest, then at least one salt byte
        if len(raw) <= size:
            return False
        return _compare_digest(_digest(scheme, password + raw[size:]), raw[:size])
    if scheme == "MD5RAW":
        expected = _digest("MD5", password).hex().encode("ascii")
    else:
        expected = _b64(_digest(scheme, password))
    return _compare_digest(expected, stored)


def make(password: bytes, scheme: str) -> str:
    """``{SCHEME}`` + body for ``password``; ``{SSHA}`` gets a fresh 4-byte salt."""
    if scheme == "SSHA":
        import os

        salt = os.urandom(4)
        body = _b64(_digest("SHA", password + salt) + salt)
    elif scheme == "MD5RAW":
        body = _digest("MD5", password).hex().encode("ascii")
    else:
        body = _b64(_digest(scheme, password))
    return "{" + scheme + "}" + body.decode("ascii")
