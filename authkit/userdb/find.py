"""Finding one record in a userdb text: the one finder, for readers and the editor.

A lookup in a text userdb (``UserdbSource``), ``authkit userdb show NAME`` and
every edit (authkit.userdb.edit) find a record here: one ``bytes.find`` pass for
``\\n<name>\\t`` over fixed-size ``pread`` chunks, then the line is read from its
start.  The process never holds more than one chunk plus the record's own line,
whatever the file's size (a 1M-line, 248 MB userdb costs a login the same few
MiB as a 10-line one), and nothing is parsed but the one line found.

The rules are authkit.userdb.text's: a name that :func:`~authkit.userdb.text.is_account_name`
refuses (empty, starting with ``#``: a comment, holding TAB, CR, LF or NUL) is
never found; the first line of the name wins (as in Courier's makeuserdb, which
refuses a duplicate, and in authkit's lookups).

Errors: an unreadable file raises ``TemporaryFailure`` naming it; a file that
does not exist holds no record (None).
"""

from __future__ import annotations

import os

from ..errors import TemporaryFailure
from .text import decode, is_account_name

#: Bytes read per ``pread``: large enough that the scan runs at ``bytes.find``
#: speed, small enough to be nothing in a login's resident set.
CHUNK = 1 << 20


def find_line(path: str, key: bytes) -> tuple[int, int, bytes] | None:
    """``(start, end, fields)`` of the first line of the text file ``path`` whose
    name is exactly ``key``: ``start`` is the offset of its first byte, ``end`` is
    just past its newline (or the file's end), ``fields`` is the text after the
    TAB without the newline.  None if there is none, if ``path`` does not exist,
    or if ``key`` is no account name (:func:`~authkit.userdb.text.is_account_name`)."""
    if not is_account_name(decode(key)):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TemporaryFailure(f"cannot read userdb {path}: {exc.strerror}") from None
    try:
        return _find(fd, key)
    except OSError as exc:
        raise TemporaryFailure(f"cannot read userdb {path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def _find(fd: int, key: bytes) -> tuple[int, int, bytes] | None:
    head = key + b"\t"
    needle = b"\n" + head
    size = max(CHUNK, 4 * len(needle))
    step = size - len(needle) + 1  # consecutive chunks overlap by len(needle) - 1 bytes
    chunk = os.pread(fd, size, 0)
    if chunk.startswith(head):
        start, base, hit = 0, 0, 0
    else:
        base = 0
        while True:
            hit = chunk.find(needle)
            if hit >= 0:
                hit += 1
                start = base + hit
                break
            if len(chunk) < size:
                return None
            base += step
            chunk = os.pread(fd, size, base)
    # the line, from its start: usually already in this chunk
    newline = chunk.find(b"\n", hit)
    if newline >= 0:
        return start, base + newline + 1, chunk[hit + len(head):newline]
    parts = [chunk[hit + len(head):]]
    position = base + len(chunk)
    while len(chunk) == size:
        chunk = os.pread(fd, size, position)
        newline = chunk.find(b"\n")
        if newline >= 0:
            parts.append(chunk[:newline])
            return start, position + newline + 1, b"".join(parts)
        parts.append(chunk)
        position += len(chunk)
    return start, position, b"".join(parts)


def find_record(root: str, key: bytes) -> tuple[str, str, int, int, bytes] | None:
    """``(path, location, start, end, fields)`` of ``key``'s record in the userdb
    at ``root`` (a file, or a directory walked as authkit.userdb.files does; the
    first file holding the name wins), or None.  ``TemporaryFailure`` when
    ``root`` is missing or a file cannot be read."""
    if not is_account_name(decode(key)):
        return None
    from .files import userdb_files

    for path, location in userdb_files(root):
        found = find_line(path, key)
        if found is not None:
            return (path, location) + found
    return None


__all__ = ["CHUNK", "find_line", "find_record"]
