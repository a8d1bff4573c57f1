"""A tiny crypt(3) shim over libxcrypt, the same library Courier's authdaemond uses.

* :func:`crypt` computes ``crypt(password, setting)``.  It uses the C extension
  ``_crypt`` (Python 3.11/3.12) or ``_crypt_r`` (the crypt-r package on 3.13+) when
  one is importable and the password decodes as UTF-8 strictly; otherwise (no
  extension, or password bytes that are not UTF-8) a ctypes binding to
  ``libcrypt.so.1`` ``crypt_rn``, which takes bytes.
* :func:`crypt_gensalt` is libxcrypt's ``crypt_gensalt_rn`` through ctypes, fed
  with bytes from ``os.urandom``: it makes settings for bcrypt, yescrypt etc.

Both return ``None`` for every failure (unknown or malformed setting, libxcrypt's
failure tokens ``*0``/``*1``, a NULL return, an embedded NUL), never raise for
bad input.

Threads: ``_crypt``/``_crypt_r`` hold the GIL while hashing; the ctypes path
releases it (ctypes drops the GIL around foreign calls), so a threaded server such
as courierpassd should call :func:`crypt_bytes` directly to hash in parallel.

This module is not a hashing policy (see ``authkit.schemes.unixcrypt``) and
imports ``ctypes`` (about 3 ms) only when the ctypes path is first needed.
"""

from __future__ import annotations

try:  # Python 3.11/3.12
    from _crypt import crypt as _c_crypt
except ImportError:  # pragma: no cover - 3.13+
    try:
        from _crypt_r import crypt as _c_crypt
    except ImportError:
        _c_crypt = None

#: sizeof(struct crypt_data) in libxcrypt (CRYPT_DATA_RESERVED_SIZE + internals).
_CRYPT_DATA_SIZE = 32768
#: CRYPT_GENSALT_OUTPUT_SIZE in libxcrypt's crypt.h.
_GENSALT_OUTPUT_SIZE = 192

_lib = None


def _libcrypt():
    """The loaded ``libcrypt.so.1`` with argument types set (cached)."""
    global _lib
    if _lib is None:
        import ctypes

        lib = ctypes.CDLL("libcrypt.so.1")
        lib.crypt_rn.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int)
        lib.crypt_rn.restype = ctypes.c_char_p
        lib.crypt_gensalt_rn.argtypes = (
            ctypes.c_char_p,
            ctypes.c_ulong,
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
        )
        lib.crypt_gensalt_rn.restype = ctypes.c_char_p
        _lib = lib
    return _lib


def _checked(result: str | None) -> str | None:
    """``None`` for a missing result or a libxcrypt failure token (starts with ``*``)."""
    if not result or result[0] == "*":
        return None
    return result


def crypt_bytes(password: bytes, setting: bytes) -> str | None:
    """``crypt_rn(password, setting)`` through ctypes, GIL released.

    Returns the hash as ``str`` or ``None`` on failure (including a NUL byte in
    either argument, which C would silently truncate at)."""
    if b"\0" in password or b"\0" in setting:
        return None
    import ctypes

    lib = _libcrypt()
    data = ctypes.create_string_buffer(_CRYPT_DATA_SIZE)
    try:
        out = lib.crypt_rn(password, setting, data, _CRYPT_DATA_SIZE)
    except Exception:  # noqa: BLE001 - a foreign call must not leak exceptions
        return None
    if out is None:
        return None
    try:
        return _checked(out.decode("ascii"))
    except UnicodeDecodeError:
        return None


def prefer_ctypes() -> None:
    """Use the ctypes binding for every later :func:`crypt` call.  It releases the
    GIL while libxcrypt works (``_crypt`` holds it), so a threaded server such as
    ``courierpassd --listen`` verifies on both cores at once.  Costs the ctypes
    import (about 3 ms) once."""
    global _c_crypt
    _libcrypt()
    _c_crypt = None


def crypt(password: bytes, setting: str) -> str | None:
    """crypt(3) of ``password`` with ``setting`` (a full stored hash works as the
    setting).  Returns the hash string, or ``None`` on any failure."""
    if _c_crypt is not None:
        try:
            word = password.decode("utf-8")
        except UnicodeDecodeError:
            word = None
        if word is not None:
            try:
                return _checked(_c_crypt(word, setting))
            except (OSError, ValueError):  # NULL return; embedded NUL; unencodable
                return None
    try:
        raw_setting = setting.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return crypt_bytes(password, raw_setting)


def crypt_gensalt(prefix: str, count: int = 0, nrbytes: int = 16) -> str | None:
    """libxcrypt's ``crypt_gensalt_rn(prefix, count, os.urandom(nrbytes))``.

    ``prefix`` selects the method (``"$2b$"``, ``"$y$"``, ``"$6$"`` ...), ``count``
    its cost (0 = libxcrypt's default).  Returns the setting string, or ``None``
    if libxcrypt refuses (unknown prefix, cost out of range)."""
    import ctypes
    import os

    lib = _libcrypt()
    out = ctypes.create_string_buffer(_GENSALT_OUTPUT_SIZE)
    rbytes = os.urandom(nrbytes)
    res = lib.crypt_gensalt_rn(prefix.encode("ascii"), count, rbytes, nrbytes, out, _GENSALT_OUTPUT_SIZE)
    if res is None:
        return None
    return _checked(res.decode("ascii"))
