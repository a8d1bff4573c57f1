"""Password schemes: verify every stored format Courier accepts, name it, make new ones.

Public API:

* :func:`verify_password` ``(password: bytes, stored: str) -> bool``
* :func:`identify_scheme` ``(stored: str) -> str | None``
* :func:`make_password_hash` ``(password: bytes, scheme="sha512-crypt") -> str``
* :data:`SCHEMES`: the names :func:`make_password_hash` accepts.

Courier HMAC secrets (``hmac-md5pw`` ...) are not password hashes: see
``authkit.schemes.hmacstate``.  Formats, and where authkit differs from Courier, are
in docs/schemes.md.

This module is the registry only (like passlib's ``registry._locations``): it
imports nothing but ``sys``; a handler module (``digests`` for ``{MD5}``...,
``unixcrypt`` + ``cryptlib`` for crypt(3)) is imported the first time a stored
hash needs it.
"""

from __future__ import annotations

import sys

#: Schemes :func:`make_password_hash` can produce (and :func:`identify_scheme` names).
SCHEMES = (
    "des-crypt",
    "md5-crypt",
    "sha256-crypt",
    "sha512-crypt",
    "bcrypt",
    "yescrypt",
    "MD5",
    "MD5RAW",
    "SHA",
    "SSHA",
    "SHA256",
    "SHA512",
)

#: scheme name -> handler module (relative to this package), imported on first use.
_LOCATIONS = {
    "des-crypt": "unixcrypt",
    "md5-crypt": "unixcrypt",
    "sha256-crypt": "unixcrypt",
    "sha512-crypt": "unixcrypt",
    "bcrypt": "unixcrypt",
    "yescrypt": "unixcrypt",
    "crypt": "unixcrypt",
    "MD5": "digests",
    "MD5RAW": "digests",
    "SHA": "digests",
    "SSHA": "digests",
    "SHA256": "digests",
    "SHA512": "digests",
    "SMD5": "digests",  # verified, never made: Courier cannot verify it
}

#: ``{PREFIX}`` (upper case, without braces) -> scheme name.  ``{CRYPT}`` is handled apart.
_PREFIXES = {"MD5": "MD5", "MD5RAW": "MD5RAW", "SHA": "SHA", "SSHA": "SSHA", "SHA256": "SHA256",
             "SHA512": "SHA512", "SMD5": "SMD5"}

#: crypt(3) prefixes -> scheme name, checked in order with ``startswith``.
_CRYPT_PREFIXES = (
    ("$1$", "md5-crypt"),
    ("$5$", "sha256-crypt"),
    ("$6$", "sha512-crypt"),
    ("$2a$", "bcrypt"),
    ("$2b$", "bcrypt"),
    ("$2y$", "bcrypt"),
    ("$y$", "yescrypt"),
    # other libxcrypt methods: verified by crypt(3) like the rest
    ("$2x$", "crypt"),
    ("$3$", "crypt"),  # NT hash
    ("$7$", "crypt"),  # scrypt
    ("$gy$", "crypt"),  # gost-yescrypt
    ("$md5", "crypt"),  # Sun md5
    ("$sha1$", "crypt"),  # NetBSD sha1crypt
)

_H64 = frozenset("./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def _handler(scheme: str):
    """The handler module for ``scheme``, imported on first use."""
    name = __name__ + "." + _LOCATIONS[scheme]
    # Always through __import__: for a module another thread is still importing,
    # it waits on the module's import lock, where a bare sys.modules lookup would
    # hand out a half-initialised module (seen under courierpassd --listen).
    __import__(name)
    return sys.modules[name]


def _split_prefix(stored: str) -> tuple[str | None, str]:
    """``("PREFIX", body)`` for ``{prefix}body`` (prefix upper-cased, ASCII only),
    else ``(None, stored)``.  A ``{`` without ``}`` gives ``("", stored)``:
    unverifiable."""
    if not stored.startswith("{"):
        return None, stored
    end = stored.find("}")
    prefix = stored[1:end]
    if end < 0 or not prefix.isascii():
        return "", stored
    return prefix.upper(), stored[end + 1 :]


def _identify_crypt(value: str) -> str | None:
    for prefix, name in _CRYPT_PREFIXES:
        if value.startswith(prefix):
            return name
    if len(value) == 13 and _H64.issuperset(value):
        return "des-crypt"
    if len(value) == 20 and value[0] == "_" and _H64.issuperset(value[1:]):
        return "crypt"  # BSDi extended DES
    return None


def identify_scheme(stored: str) -> str | None:
    """The scheme of a stored password value, or ``None`` if it is unverifiable.

    Names: ``des-crypt``, ``md5-crypt``, ``sha256-crypt``, ``sha512-crypt``,
    ``bcrypt``, ``yescrypt``, ``crypt`` (another libxcrypt method), ``MD5``,
    ``MD5RAW``, ``SHA``, ``SSHA``, ``SHA256``, ``SHA512``, ``SMD5`` (OpenLDAP's
    salted MD5: verified, not in :data:`SCHEMES`).  ``{CRYPT}x`` is named
    after ``x``.  ``None`` for plain text, an unknown ``{X}`` and the empty string.
    This looks at the form only; it does not check that the hash is well formed."""
    if not stored:
        return None
    prefix, body = _split_prefix(stored)
    if prefix is None:
        return _identify_crypt(stored)
    if prefix == "CRYPT":
        return _identify_crypt(body)
    return _PREFIXES.get(prefix)


def verify_password(password: bytes, stored: str) -> bool:
    """True if ``password`` matches the stored value ``stored``; never raises for bad
    data.

    Accepts what Courier's checkpassword.c accepts: ``{MD5}``, ``{MD5RAW}``
    (lowercase hex), ``{SHA}``, ``{SSHA}``, ``{SHA256}``, ``{SHA512}`` (prefixes in
    any case), OpenLDAP's ``{SMD5}`` (which Courier does not verify),
    ``{CRYPT}`` + anything, and anything else through crypt(3)
    (libxcrypt).  Differences, all deliberate: ``{SSHA}`` with any salt length >= 1
    matches (Courier: exactly 4 bytes); an unknown ``{X}`` prefix never reaches
    crypt(3) (it could not match there anyway).  Never matches: an empty password,
    a password containing a NUL byte (C would truncate it), an empty stored value,
    plain text.  Comparisons are constant-time."""
    if not password or not stored or b"\0" in password:
        return False
    prefix, body = _split_prefix(stored)
    if prefix is not None:
        if prefix == "CRYPT":
            if not body:
                return False
            return _handler("crypt").verify(password, body)
        scheme = _PREFIXES.get(prefix)
        if scheme is None:
            return False
        return _handler(scheme).verify(password, scheme, body)
    return _handler("crypt").verify(password, stored)


def make_password_hash(password: bytes, scheme: str = "sha512-crypt", *, rounds: int = 0) -> str:
    """A new stored value for ``password`` in ``scheme`` (a name from :data:`SCHEMES`,
    matched case-insensitively), with a random salt from ``os.urandom``.

    Every result verifies through Courier's authdaemond.  ``{SSHA}`` gets a 4-byte
    salt (Courier's only length).  des-crypt uses only the first 8 bytes of the
    password and bcrypt the first 72 (as libxcrypt does); that is allowed, not
    refused.  ``rounds`` sets the cost of a crypt(3) scheme (0 = authkit's
    default: libxcrypt's, but cost 10 for bcrypt).

    Raises ``ValueError`` for an unknown scheme (the message lists
    :data:`SCHEMES`), an empty password, a password containing NUL, or ``rounds``
    with a scheme that has none."""
    name = _canonical(scheme)
    if not password:
        raise ValueError("refusing to hash an empty password: it can never be verified")
    if b"\0" in password:
        raise ValueError("password contains a NUL byte")
    handler = _handler(name)
    if _LOCATIONS[name] == "unixcrypt":
        return handler.make(password, name, rounds)
    if rounds:
        raise ValueError(f"scheme {name} has no rounds parameter")
    return handler.make(password, name)


def _canonical(scheme: str) -> str:
    for name in SCHEMES:
        if name.lower() == scheme.lower():
            return name
    raise ValueError(f"unknown password scheme {scheme!r}; known: {', '.join(SCHEMES)}")


__all__ = ["SCHEMES", "identify_scheme", "make_password_hash", "verify_password"]
