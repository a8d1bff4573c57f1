"""The one small interface for where accounts come from.

An account source answers four questions, each a method of :class:`AccountSource`:

* :meth:`~AccountSource.lookup`: the account of a name (no password check);
* :meth:`~AccountSource.authenticate`: the account, if a plain password is right;
* :meth:`~AccountSource.authenticate_cram`: the account, if a CRAM response is right;
* :meth:`~AccountSource.change_password`: replace a password, old one required;

plus :meth:`~AccountSource.enumerate` for listing.  Implementations: the Courier
userdb (``authkit.userdb.source.UserdbSource``) and a running authdaemond
(``authkit.authdaemon.source.AuthdaemonSource``).  Programs get one from
``authkit.config.open_source()``.

Errors (``authkit.errors``): ``UnknownUser`` and ``BadPassword`` (both ``Rejected``,
exit 1) stay distinct here; ``TemporaryFailure`` (exit 111) means the source could
not be asked.  A method never returns a "no" value: it returns an ``Account`` or
raises.  This module does no I/O and imports nothing heavy.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Iterator

    from .account import Account


class AccountSource:
    """Base class of every account source.  Subclasses override what they support;
    what they do not support raises ``TemporaryFailure`` naming the operation."""

    #: A short human-readable description ("userdb /etc/courier/userdb"), for
    #: error messages and ``authkit test``; never contains a secret.
    description: str = "account source"

    def lookup(self, name: str, service: str = "login") -> "Account":
        """The account called ``name`` exactly (case-sensitive).

        ``service`` selects which stored hash lands in ``encrypted_password``.
        Raises ``UnknownUser`` or ``TemporaryFailure``."""
        raise NotImplementedError

    def authenticate(self, name: str, password: bytes, service: str = "login") -> "Account":
        """The account, if ``password`` matches its password for ``service``
        (``<service>pw``, else ``systempw``).

        Raises ``UnknownUser``, ``BadPassword`` (also for an empty password, or an
        account without a password for the service) or ``TemporaryFailure``.
        Sources spend about the same time on an unknown user as on a wrong
        password."""
        raise NotImplementedError

    def authenticate_cram(
        self, challenge: bytes, name: str, response_hex: str, algorithm: str, service: str = "login"
    ) -> "Account":
        """The account, if ``response_hex`` is HMAC-<algorithm>(secret, challenge)
        for the account's stored secret (``<service>-hmac-<alg>pw``, else
        ``hmac-<alg>pw``).  ``algorithm`` is ``md5``, ``sha1`` or ``sha256``.

        Raises ``UnknownUser``, ``BadPassword`` or ``TemporaryFailure``;
        ``Misuse`` for an unknown algorithm."""
        raise NotImplementedError

    def change_password(
        self, name: str, old: bytes, new: bytes, service: str = "login",
        *, check_account: "Callable[[Account], None] | None" = None,
    ) -> "Account":
        """Replace the password of ``name`` for ``service`` after checking ``old``,
        the way Courier's authdaemond does: the field ``<service>pw`` if the record
        has it, else ``systempw``, gets a new hash; each HMAC field that held the
        old password's state gets the new one.  The change is durable (and visible
        to Courier's own authdaemond) when this returns.

        ``old`` is verified once, by the change itself: a caller does not
        authenticate first.  ``check_account(account)``, if given, is called with
        the account of ``name`` before anything is written (e.g. the uid policy,
        ``lambda account: authkit.policy.check_uid(account, settings)``); when it
        raises, nothing is written and its exception propagates, but only once
        ``old`` is known to be right (a wrong ``old`` is ``BadPassword`` whatever
        ``check_account`` would say, so the policy's answer tells nothing to one
        who lacks the password).

        Raises ``UnknownUser``, ``BadPassword``, ``PolicyRefused`` (bytes the store
        cannot hold, or from ``check_account``) or ``TemporaryFailure``.  The
        policy on the new password's length is the caller's (see
        ``authkit.policy``)."""
        raise NotImplementedError

    def enumerate(self) -> "Iterator[Account]":
        """Every visible account, in the store's order.  Raises
        ``TemporaryFailure``."""
        raise NotImplementedError

    def close(self) -> None:
        """Release files or sockets held open.  Safe to call twice."""

    def __enter__(self) -> "AccountSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["AccountSource"]
