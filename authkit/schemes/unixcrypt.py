"""Handler for the crypt(3) family: DES, md5-crypt, sha256/sha512-crypt, bcrypt,
yescrypt and every other method libxcrypt knows (``$3$``, ``$md5``, ``_``, ``$7$``,
``$gy$``, ``$sha1``...).

Verification is what Courier does (checkpassword.c): ``crypt(password, stored)``
compared with ``stored``, here in constant time.  There is no plain-text path: a
stored value crypt(3) cannot parse gives a failure token and never matches.

Not here: the ``{CRYPT}`` prefix (stripped by the registry in ``__init__``) and the
libxcrypt binding itself (``cryptlib``).
"""

from __future__ import annotations

from _operator import _compare_digest

from . import cryptlib

#: scheme name -> (crypt_gensalt prefix, default cost; 0 = libxcrypt's default)
_SETTINGS = {
    "des-crypt": ("", 0),
    "md5-crypt": ("$1$", 0),
    "sha256-crypt": ("$5$", 0),  # 5000 rounds, written without rounds=
    "sha512-crypt": ("$6$", 0),  # 5000 rounds, written without rounds=
    "bcrypt": ("$2b$", 10),  # libxcrypt's default (5) is too cheap for new hashes
    "yescrypt": ("$y$", 0),  # j9T, as mkpasswd and Debian's passwd
}


def verify(password: bytes, stored: str) -> bool:
    """True if ``crypt(password, stored) == stored`` (constant-time compare)."""
    result = cryptlib.crypt(password, stored)
    if result is None:
        return False
    try:
        return _compare_digest(result.encode("ascii"), stored.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        return False


def make(password: bytes, scheme: str, rounds: int = 0) -> str:
    """A new ``scheme`` hash of ``password`` with a salt from ``os.urandom``.

    ``rounds`` is the cost parameter passed to libxcrypt (0 = the default of the
    table above).  Raises ``ValueError`` if libxcrypt refuses the setting."""
    prefix, default_cost = _SETTINGS[scheme]
    setting = cryptlib.crypt_gensalt(prefix, rounds or default_cost)
    if setting is None:
        raise ValueError(f"libxcrypt refused to make a {scheme} setting (rounds={rounds})")
    result = cryptlib.crypt(password, setting)
    if result is None:
        raise ValueError(f"crypt(3) failed for scheme {scheme}")
    return result
