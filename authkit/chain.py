"""A chain of account sources: the first that knows the user decides.

``source = userdb, ldap`` in authkit.conf makes authkitd ask its userdb first and
LDAP for the names the userdb does not have.  The rule, per method:

* a member that raises ``UnknownUser`` does not know the name: the next one is
  asked; when none knows it, ``UnknownUser``;
* any other answer of a member is the chain's answer: an ``Account``,
  ``BadPassword`` or ``PolicyRefused`` (it knows the user and said no), or
  ``TemporaryFailure`` (it could not tell; the chain must not let a later member
  answer for a user the earlier one may have, so the whole request is a
  temporary failure, never a rejection);
* :meth:`ChainSource.enumerate` lists every member in order, each account once
  (the first member's wins, as a login would).

An ``authdaemon`` member cannot tell an unknown user from a wrong password on a
login (the daemon answers ``FAIL`` to both), so it decides every login that
reaches it: put it last.  The chain itself does no I/O; it is opened by
``authkit.config.open_source`` for authkitd only (other programs reach a chain
through authkitd's socket).
"""

from __future__ import annotations

from .errors import UnknownUser
from .source import AccountSource

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Iterator, Sequence

    from .account import Account


class ChainSource(AccountSource):
    """The sources ``members``, asked in order.  ``names`` labels them (Courier
    module names such as ``authuserdb``, used by authkitd for ``PRE <module>``
    and ENUMERATE headers); default ``source1``, ``source2``..."""

    def __init__(self, members: "Sequence[AccountSource]", names: "Sequence[str] | None" = None) -> None:
        if not members:
            raise ValueError("a chain needs at least one source")
        self.members = list(members)
        self.names = list(names) if names is not None else [
            f"source{index}" for index in range(1, len(self.members) + 1)]
        if len(self.names) != len(self.members):
            raise ValueError("one name per member")
        self.description = "chain: " + ", ".join(member.description for member in self.members)

    def _first(self, call: str, name: str, *args: object, **keywords: object) -> "Account":
        for member in self.members:
            try:
                return getattr(member, call)(*args, **keywords)
            except UnknownUser:
                continue
        raise UnknownUser(f"no account {name!r} in any source of the chain")

    def lookup(self, name: str, service: str = "login") -> "Account":
        return self._first("lookup", name, name, service)

    def authenticate(self, name: str, password: bytes, service: str = "login") -> "Account":
        return self._first("authenticate", name, name, password, service)

    def authenticate_cram(self, challenge: bytes, name: str, response_hex: str,
                          algorithm: str, service: str = "login") -> "Account":
        return self._first("authenticate_cram", name, challenge, name, response_hex,
                           algorithm, service)

    def change_password(self, name: str, old: bytes, new: bytes, service: str = "login",
                        *, check_account: "Callable[[Account], None] | None" = None) -> "Account":
        """The first member that knows ``name`` changes it; ``check_account``
        goes to that member (a member that refuses by it knows the user: the
        chain's answer, as for any other refusal)."""
        return self._first("change_password", name, name, old, new, service,
                           check_account=check_account)

    def enumerate(self) -> "Iterator[Account]":
        seen: "set[str]" = set()
        for member in self.members:
            for account in member.enumerate():
                if account.address not in seen:
                    seen.add(account.address)
                    yield account

    def close(self) -> None:
        for member in self.members:
            member.close()

    def __repr__(self) -> str:
        return f"ChainSource({self.members!r})"


__all__ = ["ChainSource"]
