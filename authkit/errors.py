"""The one exception hierarchy of authkit.

Every failure a caller must tell apart is a class here, and each class carries the
exit code a checkpassword-style program maps it to (``exit_code``), the way h11's
errors carry ``error_status_hint``:

* :class:`Rejected` (exit 1): the credentials are not accepted.  Its subclasses
  :class:`UnknownUser`, :class:`BadPassword` and :class:`PolicyRefused` stay distinct
  inside the library and merge only at the program's edge (same text, same exit).
* :class:`Misuse` (exit 2): the caller broke the interface (malformed input, bad
  options).
* :class:`TemporaryFailure` (exit 111): the answer could not be found out (a userdb
  unreadable or corrupt, authdaemond down, a timeout).  Anything unexpected is
  treated as temporary by the programs.

Messages never contain a password, a hash or an HMAC state.  This module imports
nothing, so that the per-login path can use it for free.
"""

from __future__ import annotations


class AuthError(Exception):
    """Base class.  ``exit_code`` is what a checkpassword program exits with."""

    exit_code: int = 111


class Rejected(AuthError):
    """The credentials (or the requested change) are not accepted: exit 1."""

    exit_code = 1


class UnknownUser(Rejected):
    """No account of that name (or the record is incomplete and so invisible)."""


class BadPassword(Rejected):
    """The account exists but the password (or CRAM response) does not match,
    or the account has no password usable for the service."""


class PolicyRefused(Rejected):
    """A password change refused by policy: uid below the minimum, new password
    too short or too long, equal to the old one, or holding forbidden bytes."""


class Misuse(AuthError):
    """The caller misused the interface (bad options, malformed fd-3 data): exit 2."""

    exit_code = 2


class TemporaryFailure(AuthError):
    """The verdict could not be reached: exit 111.  The message names the file,
    socket or setting at fault."""

    exit_code = 111


class ConfigError(TemporaryFailure):
    """The configuration names no usable account source, or is malformed."""


class UnsupportedScheme(BadPassword):
    """The stored password is in a format that cannot be verified here (plain text,
    an unknown ``{SCHEME}``, an empty field): the password never matches."""


__all__ = [
    "AuthError",
    "Rejected",
    "UnknownUser",
    "BadPassword",
    "PolicyRefused",
    "Misuse",
    "TemporaryFailure",
    "ConfigError",
    "UnsupportedScheme",
]
