"""One record of the compiled pair: read it, and store it by copy-on-write.

The one way authkit changes a single record of ``<root>.dat`` /
``<root>shadow.dat`` without recompiling: for each of the two files whose value
for the name differs from the wanted one, copy the file (in the kernel), store
(or delete) the record in the copy, fsync it, and rename it into place
(:mod:`authkit.userdb.atomic`; temporary names ``.tmp.authkit.<file>``).  A
running authdaemond (which re-reads ``userdb.dat`` when its inode changes and
opens ``userdbshadow.dat`` per lookup) sees the change at once.

Each compiled file is opened once, without following a symbolic link; the value
compared, the bytes copied, the owner, mode and extended attributes all come
from that one descriptor (through ``/proc/self/fd`` for libgdbm), never from a
second lookup of the name.  The caller holds the change locks
(:mod:`authkit.userdb.locks`).
"""

from __future__ import annotations

import os

from . import atomic, compiled_paths
from .text import decode, encode

TYPE_CHECKING = False
if TYPE_CHECKING:
    Pair = tuple[str | None, str | None]


def _by_fd(fd: int, fallback: str) -> str:
    """A name libgdbm can open that is the file open as ``fd`` itself."""
    path = f"/proc/self/fd/{fd}"
    return path if os.path.exists(path) else fallback


def _value_in(fd: int, path: str, key: bytes) -> str | None:
    from . import gdbm

    with gdbm.open_reader(_by_fd(fd, path)) as db:
        raw = db.get(key)
    return None if raw is None else decode(raw)


def read(root: str, name: str) -> "Pair | None":
    """What the compiled pair holds for ``name`` now: ``(main, shadow)`` (None
    for an absent record), or None when there is no ``<root>.dat``."""
    key = encode(name)
    values: list[str | None] = []
    for path in compiled_paths(root):
        fd = atomic.open_existing(path)
        if fd is None:
            if not values:
                return None
            values.append(None)
            continue
        try:
            values.append(_value_in(fd, path, key))
        finally:
            os.close(fd)
    return values[0], values[1]


def prepare(root: str, name: str, pair: "Pair | None") -> "list[atomic.Replacement]":
    """New versions of the compiled files whose value for ``name`` is not
    ``pair`` (None: no record), written and fsync'ed but not yet in place; none
    when there is no ``<root>.dat``.  On an error nothing is left behind and
    ``TemporaryFailure`` is raised."""
    wanted = (None, None) if pair is None else pair
    key = encode(name)
    out: list[atomic.Replacement] = []
    try:
        for index, path in enumerate(compiled_paths(root)):
            fd = atomic.open_existing(path)
            try:
                if fd is None and index == 0:
                    return []  # no compiled pair: the text is all there is
                have = None if fd is None else _value_in(fd, path, key)
                if have != wanted[index]:
                    out.append(_prepare_copy(path, fd, key, wanted[index], index == 1))
            finally:
                if fd is not None:
                    os.close(fd)
    except BaseException:
        for replacement in out:
            replacement.abort()
        raise
    return out


def _prepare_copy(path: str, src: int | None, key: bytes, value: str | None, shadow: bool) -> "atomic.Replacement":
    """The copy of compiled file ``path`` (open as ``src``; None if missing: a
    new file, 0600 for the shadow file, 0644 for ``userdb.dat``, as makeuserdb
    makes them) with ``key`` stored as ``value`` (None: deleted)."""
    from . import gdbm

    directory, name = os.path.split(path)
    tmp = os.path.join(directory, ".tmp.authkit." + name)
    mode = 0o600 if shadow else 0o644

    def body(fd: int) -> None:
        if src is not None:
            atomic.copy_range(src, fd, 0, os.fstat(src).st_size)
            writer = gdbm.open_writer(_by_fd(fd, tmp))
        else:
            writer = gdbm.create(_by_fd(fd, tmp), mode)
        with writer:
            if value is None:
                try:
                    writer.delete(key)
                except KeyError:
                    pass
            else:
                writer.store(key, encode(value))
            writer.sync()

    return atomic.prepare(path, body, src, tmp_path=tmp, new_mode=mode)


def commit(replacements: "list[atomic.Replacement]") -> None:
    """Put prepared versions in place, in order (``userdb.dat`` first); if one
    fails, the ones not yet in place are removed and ``TemporaryFailure`` raised."""
    for done, replacement in enumerate(replacements):
        try:
            replacement.commit()
        except BaseException:
            for rest in replacements[done + 1:]:
                rest.abort()
            raise


def store(root: str, name: str, pair: "Pair | None") -> bool:
    """Make the compiled pair (if it exists) hold ``pair`` for ``name`` (None: no
    record).  Returns True if it wrote anything."""
    replacements = prepare(root, name, pair)
    commit(replacements)
    return bool(replacements)


__all__ = ["read", "prepare", "commit", "store"]
