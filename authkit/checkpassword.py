"""The checkpassword fd-3 framing, sans-I/O: bytes in, a typed request out.

This module turns the bytes a caller writes on descriptor 3 (djb's checkpassword
interface, http://cr.yp.to/checkpwd/interface.html) into one of four requests:

* :class:`PlainLogin`: ``user\\0password\\0`` with an optional third field
  (``user\\0pass\\0`` from TMDA and qmail-smtpd, ``user\\0pass\\0\\0`` from Dovecot,
  ``user\\0pass\\0Y123456\\0`` from qpsmtpd, ``user\\0pass\\0<ts>\\0`` from
  qmail-popup);
* :class:`CramLogin`: with ``-C md5|sha1|sha256``, ``user\\0response\\0<challenge>\\0``
  (Hoffmann's qmail-smtpd patch) or ``user\\0<challenge>\\0response\\0`` (Dabrowski's):
  the challenge is the field shaped ``<...>``, the response the field of exactly
  the algorithm's hex digest length;
* :class:`PasswordChange`: with ``-c``, ``user\\0old\\0new\\0``;
* :class:`Lookup`: Dovecot's password-less lookup, exactly ``user\\0\\0\\0``
  while the environment has ``AUTHORIZED=1``.

Errors carry djb's exit codes (``authkit.errors``): more than 512 bytes is
``Rejected`` (exit 1, as djb's ``checkpassword.c`` does); no data, or a missing
NUL after the login name or the password, is ``Misuse`` (exit 2).

What it is not: it reads no descriptor, looks up no account and verifies nothing;
messages never contain the password.  :class:`InputCollector` is fed what the
caller's ``read()`` returned (``b""`` means end of file) and refuses the 513th
byte.  It imports nothing but ``authkit.errors``.
"""

from __future__ import annotations

from .errors import Misuse, Rejected

#: At most this many bytes before end of file (djb: ``static char up[513]``).
MAX_INPUT = 512

#: Length of a CRAM response in hex, per algorithm (what ``-C`` accepts).
CRAM_HEX_LENGTHS = {"md5": 32, "sha1": 40, "sha256": 64}

_HEX = frozenset(b"0123456789abcdefABCDEF")


class Request:
    """Base class of the parsed requests.  ``user`` is the login name as sent
    (bytes).  ``repr`` never shows a password, a response or a new password."""

    __slots__ = ("user",)
    kind = "request"
    _shown: tuple = ("user",)

    def _values(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__ if name != "user") + (self.user,)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._shown)
        return f"{self.__class__.__name__}({inner})"


class PlainLogin(Request):
    """A login name and password.  ``timestamp`` is the third field (``b""`` when
    absent or empty); it is not used to verify anything."""

    __slots__ = ("password", "timestamp")
    kind = "login"

    def __init__(self, user: bytes, password: bytes, timestamp: bytes = b"") -> None:
        self.user, self.password, self.timestamp = user, password, timestamp


class CramLogin(Request):
    """A CRAM response: ``response`` (ASCII hex, as sent) to ``challenge`` (the
    ``<...>`` field, bytes, brackets included) with ``algorithm``.
    ``challenge_first`` is True for the Dabrowski order (``user\\0chal\\0resp\\0``)."""

    __slots__ = ("challenge", "response", "algorithm", "challenge_first")
    kind = "cram"
    _shown = ("user", "challenge", "algorithm", "challenge_first")

    def __init__(self, user: bytes, challenge: bytes, response: str, algorithm: str,
                 challenge_first: bool = False) -> None:
        self.user, self.challenge, self.response = user, challenge, response
        self.algorithm, self.challenge_first = algorithm, challenge_first


class PasswordChange(Request):
    """``-c``: replace ``old`` by ``new`` for ``user``."""

    __slots__ = ("old", "new")
    kind = "change"

    def __init__(self, user: bytes, old: bytes, new: bytes) -> None:
        self.user, self.old, self.new = user, old, new


class Lookup(Request):
    """Dovecot's lookup without a password (``AUTHORIZED=1``, empty password)."""

    __slots__ = ()
    kind = "lookup"

    def __init__(self, user: bytes) -> None:
        self.user = user


class InputCollector:
    """Accumulates the bytes of fd 3 until end of file, refusing more than
    ``limit`` bytes.

    Feed each ``read()`` result to :meth:`receive_data`; it returns True once it
    was given ``b""`` (end of file), after which :attr:`data` is the whole input.
    Raises ``Rejected`` (exit 1) as soon as more than ``limit`` bytes arrived,
    without waiting for end of file, as djb's checkpassword.c does."""

    __slots__ = ("_chunks", "_size", "limit", "done")

    def __init__(self, limit: int = MAX_INPUT) -> None:
        self._chunks: list = []
        self._size = 0
        self.limit = limit
        self.done = False

    def receive_data(self, data: bytes) -> bool:
        """Add one chunk (``b""`` = end of file); True when the input is complete."""
        if self.done:
            raise RuntimeError("input already complete")
        if not data:
            self.done = True
            return True
        self._size += len(data)
        if self._size > self.limit:
            raise Rejected(f"more than {self.limit} bytes of input")
        self._chunks.append(bytes(data))
        return False

    @property
    def data(self) -> bytes:
        """The bytes received so far."""
        return b"".join(self._chunks)


def split_credentials(data: bytes) -> tuple[bytes, bytes, bytes, bool]:
    """``(user, password, third, third_terminated)`` by djb's rules.

    ``third`` is the bytes after the password's NUL up to the next NUL (or the
    end); ``third_terminated`` says whether a NUL ended it.  Raises ``Misuse``
    for no data or a missing NUL after the login name or the password, and
    ``Rejected`` for more than :data:`MAX_INPUT` bytes."""
    if len(data) > MAX_INPUT:
        raise Rejected(f"more than {MAX_INPUT} bytes of input")
    if not data:
        raise Misuse("no data on the input descriptor")
    end_user = data.find(b"\0")
    if end_user < 0:
        raise Misuse("no NUL after the login name")
    end_pass = data.find(b"\0", end_user + 1)
    if end_pass < 0:
        raise Misuse("no NUL after the password")
    end_third = data.find(b"\0", end_pass + 1)
    terminated = end_third >= 0
    third = data[end_pass + 1 : end_third if terminated else len(data)]
    return data[:end_user], data[end_user + 1 : end_pass], third, terminated


def is_challenge(field: bytes) -> bool:
    """True if ``field`` is shaped like a CRAM/APOP challenge: ``<...>``."""
    return len(field) >= 3 and field[:1] == b"<" and field[-1:] == b">"


def is_response(field: bytes, algorithm: str) -> bool:
    """True if ``field`` is a hex digest of the length ``algorithm`` gives."""
    return len(field) == CRAM_HEX_LENGTHS[algorithm] and _HEX.issuperset(field)


def parse_request(data: bytes, *, change: bool = False, cram: str | None = None,
                  authorized: bool = False) -> Request:
    """The request ``data`` (the whole fd-3 input) holds.

    * ``change`` (``-c``): ``user\\0old\\0new\\0``; the new password must end in
      NUL (``Misuse`` otherwise).  ``cram`` and ``authorized`` are ignored.
    * ``authorized`` (``AUTHORIZED=1``) and exactly ``user\\0\\0\\0`` (what
      Dovecot sends for a lookup): :class:`Lookup`.
    * ``cram`` (``md5``, ``sha1`` or ``sha256``): :class:`CramLogin` when one of
      fields 2 and 3 is a challenge ``<...>`` and the other a hex response of the
      algorithm's length (field 3 NUL-terminated); otherwise the input is a
      :class:`PlainLogin`, since a qmail-smtpd offering CRAM-MD5 and LOGIN runs one
      program for both.
    * otherwise :class:`PlainLogin`.

    Raises ``Misuse`` (exit 2) for malformed input or an unknown ``cram`` and
    ``Rejected`` (exit 1) for more than 512 bytes."""
    if cram is not None and cram not in CRAM_HEX_LENGTHS:
        raise Misuse(f"unknown CRAM type {cram!r} (md5, sha1, sha256)")
    user, second, third, terminated = split_credentials(data)
    if change:
        if not terminated:
            raise Misuse("no NUL after the new password")
        return PasswordChange(user, second, third)
    if authorized and not second and not third and terminated:
        # exactly Dovecot's lookup shape, user NUL NUL NUL: a stray AUTHORIZED=1 in
        # the environment of another caller (TMDA sends user NUL pass NUL) can
        # never turn an empty password into a lookup
        return Lookup(user)
    if cram is not None and terminated:
        if is_challenge(third) and is_response(second, cram):
            return CramLogin(user, third, second.decode("ascii"), cram, False)
        if is_challenge(second) and is_response(third, cram):
            return CramLogin(user, second, third.decode("ascii"), cram, True)
    return PlainLogin(user, second, third)


__all__ = [
    "MAX_INPUT",
    "CRAM_HEX_LENGTHS",
    "Request",
    "PlainLogin",
    "CramLogin",
    "PasswordChange",
    "Lookup",
    "InputCollector",
    "split_credentials",
    "is_challenge",
    "is_response",
    "parse_request",
]
