"""Finding one record in a userdb text: the one finder, for readers and the editor.

A lookup in a text userdb (``UserdbSource``), ``authkit userdb show NAME`` and
every edit (authkit.userdb.edit) find a record here: one ``find`` pass for
``\\n<name>\\t`` over fixed-size chunks read with ``preadv`` into one reused
buffer, then the line is read from its start.  A lookup never holds more than
that buffer (:data:`CHUNK`) plus the record's own line, whatever the file's size
(a 1M-line, 239 MB userdb costs a login the memory a 10-line one does; the
scan takes 0.19 s there, so a large userdb still wants compiling), and nothing is
parsed but the one line found.

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

#: Bytes read per ``preadv``, into one reused buffer: large enough that the scan
#: runs at copy speed (239 MB in 0.19 s here; 1 MiB chunks: 0.17 s, 64 KiB:
#: 0.21 s), small enough to be nothing in a login's resident set, even with many
#: courierpassd sessions looking up at once.
CHUNK = 1 << 18


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
    buffer = bytearray(size)  # one buffer, read into again and again: memory is this, not the file
    view = [buffer]
    base = 0
    got = os.preadv(fd, view, 0)
    if buffer.startswith(head) and got >= len(head):
        start = hit = 0
    else:
        while True:
            hit = buffer.find(needle, 0, got)
            if hit >= 0:
                hit += 1
                start = base + hit
                break
            if got < size:
                return None
            base += step
            got = os.preadv(fd, view, base)
    # the line, from its start: usually already in this chunk
    newline = buffer.find(b"\n", hit, got)
    if newline >= 0:
        return start, base + newline + 1, bytes(buffer[hit + len(head):newline])
    parts = [bytes(buffer[hit + len(head):got])]
    position = base + got
    while got == size:
        got = os.preadv(fd, view, position)
        newline = buffer.find(b"\n", 0, got)
        if newline >= 0:
            parts.append(bytes(buffer[:newline]))
            return start, position + newline + 1, b"".join(parts)
        parts.append(bytes(buffer[:got]))
        position += got
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
