"""Changing a Courier userdb the way Courier does, without losing anything.

This module decides *what* a change writes; the how is elsewhere, one job a
module: the locks in :mod:`authkit.userdb.locks`, replacing a file in
:mod:`authkit.userdb.atomic`, storing one compiled record in
:mod:`authkit.userdb.recordstore`, the undo journal and recovery in
:mod:`authkit.userdb.journal`.  Every write follows one protocol:

1. take Courier's own lock for the text file (``.lock.<file>``; for a text
   file that is a symbolic link, the target's lock, and the target is what is
   edited, as Courier's ``userdb`` does), then makeuserdb's lock
   ``<root>.lock`` (always, even before the first makeuserdb); both are held
   for the whole change, so authkit, Courier's ``userdb`` and any ``makeuserdb``
   never interleave with it;
2. finish or undo an interrupted earlier change of the file (its journal is
   still there), then make the compiled record of the account agree with its
   text line (the text is the source, as for makeuserdb: this picks up edits
   made with Courier's own ``userdb`` script);
3. find the record with one ``bytes.find`` pass over 1 MiB chunks and change its
   fields in place (other lines, comments and the record's field order stay
   byte for byte);
4. write every new version before putting any in place: the text beside the
   file (``.tmp.<file>``: the unchanged parts copied in the kernel, only the new
   line written), then the copy of each ``.dat`` file whose value changes with
   the one record stored in it; all fsync'ed, with the old files' owner, mode
   and extended attributes (ACLs).  Disk full or any other error up to here
   leaves every file as it was;
5. write the undo journal (the record's offset, old and new line, the text's new
   size) and fsync it;
6. rename the text into place, then the compiled files (``userdb.dat`` first),
   so that Courier's running authdaemond sees the change at once, without a
   rebuild.  The compiled rename is the commit point (without a compiled pair:
   the text rename).  Should it fail, the text is rolled back at once;
7. remove the journal.

What holds when a change is killed at any point (SIGKILL; tested in
tests/integration/test_admin_courier.py): the text file is the old or the new
one, each compiled file is the old or the new one, and the two can disagree
only on the one record being changed (text new, compiled old: killed in step
6), with the journal naming it.  Courier and authkit read the compiled pair, so
every reader sees the change either done or not done.  The next change of any
record of that file, and makeuserdb, first recover (see
:mod:`authkit.userdb.journal`): the change is kept if the compiled pair has it,
else rolled back, but only when the text is exactly as the killed change left
it; otherwise nothing is written and the change is refused with 111 until the
administrator has looked.
"""

from __future__ import annotations

import os

from ..errors import TemporaryFailure, UnknownUser
from . import atomic, files, journal, recordstore
from .locks import ChangeLocks
from .find import find_line, find_record
from .text import (
    check_field_name,
    check_value,
    decode,
    edit_fields,
    encode,
    first_values,
    format_line,
    is_account_name,
    parse_fields,
    split_compiled,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Iterable, Sequence


def locate(root: str, name: str) -> tuple[str, str] | None:
    """``(file path, location)`` of the text file holding ``name``'s record."""
    found = find_record(root, encode(name))
    return None if found is None else found[:2]


#: The one record finder (authkit.userdb.find), shared with the readers.
_find_line = find_line


def _text_file_for(root: str, name: str) -> tuple[str, str]:
    if not os.path.exists(root):
        raise TemporaryFailure(
            f"cannot change {name!r}: no text userdb at {root} (authkit edits the text "
            "and keeps the compiled files in step with it)"
        )
    if not os.path.isdir(root):
        return root, ""  # found (or not) under the lock: no extra scan
    found = locate(root, name)
    if found is None:
        raise UnknownUser(f"no such user in userdb {root}")
    return found


def _pair(fields: bytes | str, location: str) -> tuple[str, str | None]:
    """What makeuserdb stores for a record (Courier's exact split), as text."""
    if isinstance(fields, bytes):
        fields = decode(fields)
    return split_compiled(fields, location)


def _commit(root: str, path: str, location: str, name: str, text: "atomic.Replacement", offset: int,
            old_line: bytes, new_line: bytes, new_pair: tuple[str, str | None] | None) -> None:
    """Steps 4 (compiled part) to 7 of the module docstring, for the prepared new
    text ``text`` of ``path``: ``new_line`` replaces ``old_line`` at ``offset``.
    On an error nothing is changed (or, past the text rename, the text is
    rolled back through the journal) and ``TemporaryFailure`` is raised."""
    try:
        compiled = recordstore.prepare(root, name, new_pair)
    except BaseException:
        text.abort()
        raise
    try:
        journal.write(path, name, offset, old_line, new_line, os.stat(text.tmp).st_size)
    except BaseException:
        text.abort()
        for replacement in compiled:
            replacement.abort()
        raise
    try:
        text.commit()
    except BaseException:
        for replacement in compiled:
            replacement.abort()
        journal.remove(path)
        raise
    try:
        recordstore.commit(compiled)
    except Exception:
        try:  # text new, compiled old: undo the text now, as recovery would
            journal.recover(root, path, location)
        except TemporaryFailure:
            pass  # the journal stays; the next change or makeuserdb retries
        raise
    journal.remove(path)


def update_record(
    root: str,
    name: str,
    set_values: "Sequence[tuple[str, str]]" = (),
    unset: "Iterable[str]" = (),
    *,
    check: "Callable[[dict[str, str]], Sequence[tuple[str, str]]] | None" = None,
) -> tuple[str, str]:
    """Change fields of the existing record ``name`` in the userdb at ``root``
    (a file or a directory), text and compiled pair, under the locks described in
    the module docstring.

    ``check``, if given, is called under the locks with the record's current field
    values and returns the fields to set (it may raise to abort: nothing is then
    written); otherwise ``set_values`` is used.  Before it is called the compiled
    record is made to agree with the text (repairing an interrupted change), so
    a check that asks the compiled pair sees what the text holds.

    Returns the record's new ``(main, shadow)`` compiled strings.  Raises
    ``UnknownUser``, ``ValueError`` for unstorable names or values, or
    ``TemporaryFailure``."""
    path, location = _text_file_for(root, name)
    path = os.path.realpath(path)  # a symlinked text: edit the target, as Courier's userdb does
    unset = tuple(unset)
    key = encode(name)
    with ChangeLocks(root, path):
        journal.recover(root, path, location)
        found = _find_line(path, key)
        if found is None:  # absent, or removed between locate() and the lock
            raise UnknownUser(f"no such user in userdb {root}")
        start, end, raw_fields = found
        old_fields = decode(raw_fields)
        old_pair = _pair(raw_fields, location)
        recordstore.store(root, name, old_pair)
        if check is not None:
            set_values = check(first_values(parse_fields(old_fields)))
        new_fields = edit_fields(old_fields, set_values, unset)
        if new_fields == old_fields:
            return old_pair
        new_pair = _pair(new_fields, location)
        new_line = format_line(name, new_fields)
        text = atomic.prepare_splice(path, start, end, new_line)
        _commit(root, path, location, name, text, start, key + b"\t" + raw_fields + b"\n", new_line, new_pair)
        return new_pair


def add_record(root: str, name: str, fields: "Sequence[tuple[str, str]]", file_path: str | None = None) -> None:
    """Append a new record (fields in the given order) to the userdb file
    ``file_path`` (default: ``root``, which must then be a file), creating the file
    0600 if needed, and store it in the compiled pair if that exists.

    Raises ``ValueError`` if the name exists already or a name/value cannot be
    stored, ``TemporaryFailure`` on I/O errors."""
    if not is_account_name(name):
        raise ValueError("Invalid account name (empty, starting with '#', or holding TAB, CR, LF or NUL)")
    for key, value in fields:
        check_field_name(key)
        check_value(value)
    if locate(root, name) is not None if os.path.exists(root) else False:
        raise ValueError(f"account {name!r} exists already")
    path = file_path or root
    location = ""
    if path != root:
        location = os.path.relpath(path, root) + "/"
    path = os.path.realpath(path)
    text = "|".join(f"{k}={v}" for k, v in fields)
    key = encode(name)
    with ChangeLocks(root, path):
        journal.recover(root, path, location)
        size = os.path.getsize(path) if os.path.exists(path) else 0
        if size and _find_line(path, key) is not None:
            raise ValueError(f"account {name!r} exists already")
        new_line = format_line(name, text)
        if os.path.exists(path):
            if size:
                with open(path, "rb") as handle:
                    handle.seek(size - 1)
                    if handle.read(1) != b"\n":
                        new_line = b"\n" + new_line
            prepared = atomic.prepare_splice(path, size, size, new_line)
        else:
            line = new_line
            prepared = atomic.prepare(path, lambda fd: atomic.write_all(fd, line), None)
        _commit(root, path, location, name, prepared, size, b"", new_line, _pair(text, location))


def delete_record(root: str, name: str) -> None:
    """Remove ``name``'s record from the text (its first line) and the compiled
    pair.  Raises ``UnknownUser`` or ``TemporaryFailure``."""
    path, location = _text_file_for(root, name)
    path = os.path.realpath(path)
    key = encode(name)
    with ChangeLocks(root, path):
        journal.recover(root, path, location)
        found = _find_line(path, key)
        if found is None:
            raise UnknownUser(f"no such user in userdb {root}")
        start, end, raw_fields = found
        text = atomic.prepare_splice(path, start, end, b"")
        _commit(root, path, location, name, text, start, key + b"\t" + raw_fields + b"\n", b"", None)


__all__ = [
    "update_record",
    "add_record",
    "delete_record",
    "locate",
]
