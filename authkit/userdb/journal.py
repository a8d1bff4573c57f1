"""The undo journal of a change in progress, and recovery from an interrupted one.

Before authkit renames a changed text file into place it writes and fsyncs
``<dir>/.authkit-pending.<file>`` (beside the file a symbolic link resolves to):
the record's offset, its old and new line (b"" for an added or a deleted record)
and the size the text has after the change.  The journal is removed once the
compiled pair holds the change too (the commit point; without a compiled pair
the text rename is).  A change killed in between leaves text new, compiled old
and the journal naming the one record.

:func:`recover`, run under the change locks before every change of the file and
by makeuserdb, then decides:

* the compiled pair holds the journal's new record (or there is none): the
  change happened; the journal is removed;
* the text still holds what the interrupted change wrote: the journal's new
  line, byte for byte, at its offset and starting a line (for a deleted record,
  whose new line is empty: the file also of exactly the size the delete left
  it): the change is rolled back, text line and compiled record, so a user who
  never saw "changed" keeps the old password;
* the text holds the journal's old line there in the same way (a rollback that
  was itself interrupted): the compiled record is made old again and the
  journal removed;
* anything else (the file was changed since by a program that knows nothing of
  the journal, e.g. Courier's ``userdb`` + ``makeuserdb``): nothing is written,
  the journal is kept, and ``TemporaryFailure`` (111) says which file and record
  it is and what to do.  A rollback never writes into a file it cannot prove is
  the one it left.
"""

from __future__ import annotations

import os

from ..errors import TemporaryFailure
from . import atomic, recordstore
from .text import decode, encode, split_compiled

_MAGIC = b"authkit-pending"


def pending_path(path: str) -> str:
    """The undo journal of a change of text file ``path``:
    ``<dir>/.authkit-pending.<file>`` of the file ``path`` resolves to (a dot
    file, so never read as userdb text)."""
    directory, name = os.path.split(os.path.realpath(path))
    return os.path.join(directory, ".authkit-pending." + name)


def write(path: str, name: str, offset: int, old_line: bytes, new_line: bytes, size_after: int) -> None:
    """Write and fsync the journal of a change of ``path`` (before the text is
    put in place)."""
    marker = pending_path(path)
    key = encode(name)
    head = b"%s 2 %d %d %d %d %d\n" % (_MAGIC, offset, len(key), len(old_line), len(new_line), size_after)
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            atomic.write_all(fd, head + key + old_line + new_line)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        remove(path)
        raise TemporaryFailure(f"cannot write {marker}: {exc.strerror}") from None


def remove(path: str) -> None:
    """Remove the journal of ``path`` (if any)."""
    try:
        os.unlink(pending_path(path))
    except FileNotFoundError:
        pass


class _Entry:
    __slots__ = ("offset", "name", "key", "old_line", "new_line", "size_after")

    def __init__(self, offset: int, key: bytes, old_line: bytes, new_line: bytes, size_after: int | None) -> None:
        self.offset = offset
        self.key = key
        self.name = decode(key)
        self.old_line = old_line
        self.new_line = new_line
        self.size_after = size_after


def _read(marker: str) -> "_Entry | None":
    """The journal at ``marker``, or None if absent or torn (a torn journal was
    never fsync'ed, so the text was never touched)."""
    try:
        with open(marker, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TemporaryFailure(f"cannot read {marker}: {exc.strerror}") from None
    head, _, body = data.partition(b"\n")
    fields = head.split()
    if fields[:2] == [_MAGIC, b"2"] and len(fields) == 7:
        numbers = [int(x) for x in fields[2:]]
    elif fields[:2] == [_MAGIC, b"1"] and len(fields) == 6:  # written before the size was recorded
        numbers = [int(x) for x in fields[2:]] + [-1]
    else:
        return _torn(marker)
    offset, klen, olen, nlen, size_after = numbers
    if len(body) != klen + olen + nlen:
        return _torn(marker)
    key = body[:klen]
    return _Entry(offset, key, body[klen:klen + olen], body[klen + olen:],
                  None if size_after < 0 else size_after)


def _torn(marker: str) -> None:
    os.unlink(marker)
    return None


def _pair(line: bytes, key: bytes, location: str) -> "tuple[str, str | None] | None":
    """The compiled pair of a whole text line (None for b"": no record)."""
    line = line.lstrip(b"\n")
    if not line:
        return None
    return split_compiled(decode(line[len(key) + 1:].rstrip(b"\n")), location)


def _holds(fd: int, size: int, offset: int, line: bytes, expected_size: int | None) -> bool:
    """True if the file open as ``fd`` (``size`` bytes) has exactly ``line`` at
    ``offset``, starting a line.  For an empty ``line`` (nothing to compare) the
    file must also be ``expected_size`` bytes long (unknown in a version-1
    journal: then the offset alone is checked)."""
    if offset > size or (offset > 0 and os.pread(fd, 1, offset - 1) != b"\n"):
        return False
    if not line:
        return expected_size is None or size == expected_size
    return os.pread(fd, len(line), offset) == line


def recover(root: str, path: str, location: str) -> None:
    """Finish or undo an interrupted change of text file ``path`` of the userdb
    at ``root`` (see the module docstring).  The caller holds the change locks.
    Raises ``TemporaryFailure`` when the journal cannot be applied safely (it is
    then kept, and nothing is written)."""
    marker = pending_path(path)
    entry = _read(marker)
    if entry is None:
        return
    new_pair = _pair(entry.new_line, entry.key, location)
    old_pair = _pair(entry.old_line, entry.key, location)
    compiled = recordstore.read(root, entry.name)
    if compiled is None or compiled == (new_pair or (None, None)):
        os.unlink(marker)  # committed (or no compiled pair: the text rename was the commit)
        return
    target = os.path.realpath(path)
    fd = atomic.open_existing(target)
    if fd is None:
        raise _refusal(path, marker, entry, "the file is gone")
    try:
        size = os.fstat(fd).st_size
        grown = len(entry.new_line) - len(entry.old_line)
        if _holds(fd, size, entry.offset, entry.new_line, entry.size_after):
            undo = atomic.prepare_splice(target, entry.offset, entry.offset + len(entry.new_line), entry.old_line)
        elif _holds(fd, size, entry.offset, entry.old_line,
                    None if entry.size_after is None else entry.size_after - grown):
            undo = None  # the text was rolled back already; the compiled record was not
        else:
            raise _refusal(path, marker, entry, "the file no longer holds that change at its place "
                           "(it was changed since by a program that does not know the journal)")
    finally:
        os.close(fd)
    try:
        compiled_undo = recordstore.prepare(root, entry.name, old_pair)
    except BaseException:
        if undo is not None:
            undo.abort()
        raise
    if undo is not None:
        undo.commit()
    recordstore.commit(compiled_undo)
    os.unlink(marker)


def _refusal(path: str, marker: str, entry: _Entry, why: str) -> TemporaryFailure:
    return TemporaryFailure(
        f"{path}: an interrupted authkit change of {entry.name!r} cannot be rolled back: {why}; "
        f"nothing was written.  Check the record of {entry.name!r} in {path}, then remove {marker} "
        "and run makeuserdb")


def pending(root: str) -> list[str]:
    """The journals of interrupted changes of the userdb at ``root`` (for
    ``authkit check``)."""
    from . import files

    markers = (pending_path(path) for path, _location in files.userdb_files(root))
    return [marker for marker in markers if os.path.lexists(marker)]


def recover_all(root: str) -> int:
    """Finish or undo every interrupted change of the userdb at ``root``, each
    under its file's locks.  Returns how many journals were found.  makeuserdb
    calls this first, so that it never compiles a change that was never
    committed.  Raises ``TemporaryFailure`` for a journal that cannot be applied
    safely."""
    from . import files
    from .locks import ChangeLocks

    count = 0
    for path, location in files.userdb_files(root):
        if os.path.lexists(pending_path(path)):
            count += 1
            with ChangeLocks(root, path):
                recover(root, path, location)
    return count


__all__ = ["pending_path", "write", "remove", "recover", "recover_all", "pending"]
