"""The locks every writer of a Courier userdb takes, in one order.

* ``<dir>/.lock.<file>``: what Courier's ``userdb`` script locks for the text
  file ``<dir>/<file>``.  For a text file reached through a symbolic link the
  lock is the *target's* (``.lock.<target>`` beside the target), as Courier's
  script, which follows the link, takes it.
* ``<root>.lock``: makeuserdb's lock (``/etc/courier/userdb.lock``), taken by
  every change whether or not the compiled pair exists yet, so that a change made
  while the first makeuserdb runs waits for it instead of being compiled away.

A change holds both for its whole length, always the text lock first
(:class:`ChangeLocks`); makeuserdb takes only ``<root>.lock``.  Locks are
``flock`` locks on files that are never removed, so a killed holder leaves
nothing behind.  A lock file is opened with ``O_NOFOLLOW``: a symbolic link
planted at its name is refused (``TemporaryFailure``), never followed, so root
never creates or opens a file somewhere else through it.
"""

from __future__ import annotations

import errno
import os

from ..errors import TemporaryFailure


class FileLock:
    """An exclusive ``flock`` on the lock file ``path``, created 0600 if missing
    (never through a symbolic link) and never removed.  Waits up to ``timeout``
    seconds, then raises ``TemporaryFailure``."""

    def __init__(self, path: str, timeout: float = 30.0) -> None:
        self.path = path
        self.timeout = timeout
        self.fd = -1

    def __enter__(self) -> "FileLock":
        import fcntl
        import time

        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise TemporaryFailure(
                    f"lock file {self.path} is a symbolic link: refusing to follow it "
                    "(remove it; authkit creates a regular lock file)") from None
            raise TemporaryFailure(f"cannot open lock file {self.path}: {exc.strerror}") from None
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(self.fd)
                    self.fd = -1
                    raise TemporaryFailure(f"timed out waiting for lock {self.path}") from None
                time.sleep(0.005)

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing drops the flock
            self.fd = -1


def text_lock_path(path: str) -> str:
    """Courier's ``userdb`` script lock for a text file: ``<dir>/.lock.<name>``
    of the file ``path`` resolves to (its target, for a symbolic link)."""
    directory, name = os.path.split(os.path.realpath(path))
    return os.path.join(directory, ".lock." + name)


def compiled_lock_path(root: str) -> str:
    """makeuserdb's lock: ``<userdb>.lock`` (``/etc/courier/userdb.lock``)."""
    return root + ".lock"


class ChangeLocks:
    """Both locks of a change of text file ``path`` of the userdb at ``root``, in
    the one order every writer uses: ``.lock.<file>`` (of the link's target),
    then ``<root>.lock``.  Holding both for the whole change means makeuserdb
    never compiles a text whose compiled record is half updated, and never
    compiles away a change made while it runs."""

    def __init__(self, root: str, path: str, timeout: float = 30.0) -> None:
        self.text = FileLock(text_lock_path(path), timeout)
        self.compiled = FileLock(compiled_lock_path(root), timeout)

    def __enter__(self) -> "ChangeLocks":
        self.text.__enter__()
        try:
            self.compiled.__enter__()
        except BaseException:
            self.text.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.compiled.__exit__()
        self.text.__exit__()


__all__ = ["FileLock", "ChangeLocks", "text_lock_path", "compiled_lock_path"]
