"""A lookup cache in front of an account source (authkitd's ``cache_ttl``).

:class:`CachingSource` keeps the answer of :meth:`lookup` (the account, or the
``UnknownUser`` of a name no source knows: negative entries too) for ``ttl``
seconds per ``(name, service)``.  An entry is dropped early when

* a password change of that name goes through this source (``PASSWD`` through
  authkitd), whatever its outcome;
* ``stamp()`` changes: for a userdb it is the inode, size and mtime of every
  file of it (text file or directory files, ``userdb.dat``, ``userdbshadow.dat``),
  so an edit by Courier's ``userdb``/``makeuserdb`` or by authkit is seen at the
  next request.

Only lookups are cached: ``authenticate`` and ``authenticate_cram`` always ask
the source (the password check is the expensive part and must see the current
hash), and so does ``enumerate``.  A ``TemporaryFailure`` is never cached.
Thread-safe.
"""

from __future__ import annotations

import os
import threading
from time import monotonic

from .errors import UnknownUser
from .source import AccountSource

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Iterator

    from .account import Account


def userdb_stamp(path: str) -> "tuple":
    """``(inode, size, mtime_ns)`` of every file of the userdb at ``path``
    (missing files count as ``None``)."""
    from .userdb import compiled_paths

    paths = [path, *compiled_paths(path)]
    if os.path.isdir(path):
        from .userdb.files import userdb_files

        try:
            paths += [file for file, _ in userdb_files(path)]
        except Exception:  # noqa: BLE001 - an unreadable userdb: a changing stamp
            paths.append("\0unreadable")
    out = []
    for item in paths:
        try:
            st = os.stat(item)
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except (OSError, ValueError):
            out.append(None)
    return tuple(out)


class CachingSource(AccountSource):
    """``source`` with its lookups cached for ``ttl`` seconds; ``stamp`` (no
    argument, any comparable value) flushes the cache when its value changes."""

    def __init__(self, source: AccountSource, ttl: float,
                 stamp: "Callable[[], object] | None" = None) -> None:
        self.source = source
        self.ttl = ttl
        self.stamp = stamp
        self.description = f"{source.description} (lookups cached {ttl:g} s)"
        self._lock = threading.Lock()
        self._entries: "dict[tuple[str, str], tuple[float, object]]" = {}
        self._stamp: object = stamp() if stamp is not None else None

    def _check_stamp(self) -> None:
        if self.stamp is None:
            return
        current = self.stamp()
        with self._lock:
            if current != self._stamp:
                self._entries.clear()
                self._stamp = current

    def invalidate(self, name: str) -> None:
        """Drop every entry of ``name``."""
        with self._lock:
            for key in [key for key in self._entries if key[0] == name]:
                del self._entries[key]

    def lookup(self, name: str, service: str = "login") -> "Account":
        self._check_stamp()
        key = (name, service)
        now = monotonic()
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            if isinstance(entry[1], UnknownUser):
                raise UnknownUser(str(entry[1]))
            return entry[1]  # type: ignore[return-value]
        try:
            account = self.source.lookup(name, service)
        except UnknownUser as exc:
            with self._lock:
                self._entries[key] = (now + self.ttl, exc)
            raise
        with self._lock:
            self._entries[key] = (now + self.ttl, account)
        return account

    def authenticate(self, name: str, password: bytes, service: str = "login") -> "Account":
        return self.source.authenticate(name, password, service)

    def authenticate_cram(self, challenge: bytes, name: str, response_hex: str,
                          algorithm: str, service: str = "login") -> "Account":
        return self.source.authenticate_cram(challenge, name, response_hex, algorithm, service)

    def change_password(self, name: str, old: bytes, new: bytes, service: str = "login",
                        *, check_account: "Callable[[Account], None] | None" = None) -> "Account":
        try:
            return self.source.change_password(name, old, new, service, check_account=check_account)
        finally:
            self.invalidate(name)

    def enumerate(self) -> "Iterator[Account]":
        return self.source.enumerate()

    def close(self) -> None:
        self.source.close()


__all__ = ["CachingSource", "userdb_stamp"]
