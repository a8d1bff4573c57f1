"""Changing a Courier userdb the way Courier does, without losing anything.

Every write follows one protocol:

1. take Courier's own lock for the text file: ``flock(LOCK_EX)`` on
   ``<dir>/.lock.<file>`` (what Courier's ``userdb`` script locks), so that authkit
   and Courier's tools never edit the same file at once;
2. read the file, change one record's fields in place (other lines, comments and
   the record's field order stay byte for byte), write ``<dir>/.tmp.<file>`` with
   the old file's owner and mode, ``fsync`` it, ``rename`` it over the file and
   ``fsync`` the directory: a crash leaves the old or the new file, never a mix;
3. when the compiled pair exists, under makeuserdb's lock ``<userdb>.lock``, copy
   the ``.dat`` file that changes, store the one record in the copy, ``fsync`` and
   ``rename`` it into place, so that Courier's running authdaemond (which re-reads
   ``userdb.dat`` when its inode changes and opens ``userdbshadow.dat`` per lookup)
   sees the change at once, without a full rebuild.

Locks are ``flock`` locks on files that are never removed, so a killed process
leaves nothing that blocks the next change.
"""

from __future__ import annotations

import os

from ..errors import BadPassword, PolicyRefused, TemporaryFailure, UnknownUser
from . import files
from .text import (
    check_field_name,
    check_value,
    decode,
    edit_fields,
    encode,
    first_values,
    format_line,
    parse_fields,
    split_compiled,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Iterable, Iterator, Sequence

    from .source import UserdbSource


class FileLock:
    """An exclusive ``flock`` on a lock file, created 0600 if missing and never
    removed (so a killed holder leaves no stale lock: the kernel drops it)."""

    def __init__(self, path: str, timeout: float = 30.0) -> None:
        self.path = path
        self.timeout = timeout
        self.fd = -1

    def __enter__(self) -> "FileLock":
        import fcntl
        import time

        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
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
    """Courier's ``userdb`` script lock for a text file: ``<dir>/.lock.<name>``."""
    directory, name = os.path.split(path)
    return os.path.join(directory, ".lock." + name)


def compiled_lock_path(root: str) -> str:
    """makeuserdb's lock: ``<userdb>.lock`` (``/etc/courier/userdb.lock``)."""
    return root + ".lock"


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(path: str, chunks: "Iterable[bytes]", tmp_path: str | None = None) -> None:
    """Write ``chunks`` to a temporary file beside ``path`` (``.tmp.<name>``, or
    ``tmp_path``) with ``path``'s owner and mode (0600 for a new file), fsync it and
    rename it over ``path``.  On any error the temporary file is removed, ``path``
    is untouched, and ``TemporaryFailure`` names the file (disk full, read-only
    directory, ...)."""
    directory, name = os.path.split(path)
    tmp = tmp_path or os.path.join(directory, ".tmp." + name)
    try:
        st = os.stat(path)
        mode, uid, gid = st.st_mode & 0o7777, st.st_uid, st.st_gid
    except FileNotFoundError:
        mode, uid, gid = 0o600, -1, -1
    except OSError as exc:
        raise TemporaryFailure(f"cannot stat {path}: {exc.strerror}") from None
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise TemporaryFailure(f"cannot write {tmp}: {exc.strerror}") from None
    try:
        try:
            if uid >= 0 and (uid != os.geteuid() or gid != os.getegid()):
                try:
                    os.fchown(fd, uid, gid)
                except PermissionError:
                    pass  # not root: the file keeps our ids, as Courier's script does
            os.fchmod(fd, mode)
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        _fsync_dir(directory)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise TemporaryFailure(f"cannot write {path}: {exc.strerror}") from None


def locate(root: str, name: str) -> tuple[str, str] | None:
    """``(file path, location)`` of the text file holding ``name``'s record."""
    key = encode(name)
    for path, location in files.userdb_files(root):
        if files.find_in_data(files.read_file(path), key) is not None:
            return path, location
    return None


def _text_file_for(root: str, name: str) -> tuple[str, str]:
    if not os.path.exists(root):
        raise TemporaryFailure(
            f"cannot change {name!r}: no text userdb at {root} (authkit edits the text "
            "and keeps the compiled files in step with it)"
        )
    found = locate(root, name)
    if found is None:
        raise UnknownUser(f"no such user in userdb {root}")
    return found


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

    ``check``, if given, is called under the lock with the record's current field
    values and returns the fields to set (it may raise to abort: nothing is then
    written); otherwise ``set_values`` is used.

    Returns the record's new ``(main, shadow)`` compiled strings.  Raises
    ``UnknownUser``, ``ValueError`` for unstorable names or values, or
    ``TemporaryFailure``."""
    path, location = _text_file_for(root, name)
    unset = tuple(unset)
    with FileLock(text_lock_path(path)):
        data = files.read_file(path)
        span = files.find_in_data(data, encode(name))
        if span is None:  # removed between locate() and the lock
            raise UnknownUser(f"no such user in userdb {root}")
        start, end = span
        old_fields = decode(data[start + len(encode(name)) + 1 : end])
        if check is not None:
            set_values = check(first_values(parse_fields(old_fields)))
        new_fields = edit_fields(old_fields, set_values, unset)
        if new_fields == old_fields:
            return split_compiled(new_fields, location)
        line = format_line(name, new_fields)
        replace_file(path, (data[:start], line, data[end + 1 :]))
        new_pair = split_compiled(new_fields, location)
        sync_compiled(root, name, new_pair)
        return new_pair


def compiled_pair(root: str, name: str) -> tuple[str | None, str | None] | None:
    """What the compiled pair holds for ``name`` now: ``(main, shadow)`` (None for
    an absent record), or None when there is no ``<root>.dat``."""
    from . import gdbm

    dat, shadow = files.compiled_paths(root)
    key = encode(name)
    values: list[str | None] = []
    for path in (dat, shadow):
        try:
            with gdbm.open_reader(path) as db:
                raw = db.get(key)
        except FileNotFoundError:
            if path == dat:
                return None
            raw = None
        values.append(None if raw is None else decode(raw))
    return values[0], values[1]


def sync_compiled(root: str, name: str, pair: tuple[str | None, str | None]) -> bool:
    """Make the compiled pair (if it exists) hold ``pair`` for ``name`` (None:
    no record), by copy-on-write of each ``.dat`` file whose value differs, under
    makeuserdb's lock.  Returns True if it wrote anything.

    It compares with what the files hold, not with what the text held before: a
    change killed between its text rename and this step left the compiled pair
    one change behind, and the next change through authkit (or makeuserdb)
    brings it level."""
    dat, shadow = files.compiled_paths(root)
    if not os.path.exists(dat):
        return False
    key = encode(name)
    with FileLock(compiled_lock_path(root)):
        current = compiled_pair(root, name)
        if current is None:
            return False
        wrote = False
        if current[0] != pair[0]:
            _store_copy(dat, key, pair[0])
            wrote = True
        if current[1] != pair[1]:
            _store_copy(shadow, key, pair[1])
            wrote = True
        return wrote


def update_compiled(
    root: str, name: str, old_pair: tuple[str, str | None], new_pair: tuple[str, str | None]
) -> None:
    """Store one record's new values in the compiled pair, if it exists (kept for
    callers that know the old values; :func:`sync_compiled` compares with what the
    files hold, so ``old_pair`` is not trusted)."""
    sync_compiled(root, name, new_pair)


def _store_copy(path: str, key: bytes, value: str | None) -> None:
    """Copy ``path``, store (or delete, for None) ``key`` in the copy, fsync and
    rename it into place with the original's owner and mode."""
    from . import gdbm

    directory, name = os.path.split(path)
    tmp = os.path.join(directory, ".tmp.authkit." + name)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    try:
        if st is not None:
            _copy_file(path, tmp)
            writer = gdbm.open_writer(tmp)
        else:
            if value is None:
                return
            writer = gdbm.create(tmp)
        with writer:
            if value is None:
                writer.delete(key)
            else:
                writer.store(key, encode(value))
            writer.sync()
        fd = os.open(tmp, os.O_RDONLY)
        try:
            if st is not None:
                os.fchmod(fd, st.st_mode & 0o7777)
                try:
                    os.fchown(fd, st.st_uid, st.st_gid)
                except PermissionError:
                    pass
            else:
                os.fchmod(fd, 0o600 if name.endswith("shadow.dat") else 0o644)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        _fsync_dir(directory)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise TemporaryFailure(f"cannot update {path}: {exc.strerror}") from None


def _copy_file(src: str, dst: str) -> None:
    """Copy with copy_file_range (in-kernel; reflink on filesystems that have it)."""
    fin = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fout = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            remaining = os.fstat(fin).st_size
            while remaining > 0:
                try:
                    done = os.copy_file_range(fin, fout, min(remaining, 1 << 30))
                except OSError:
                    done = os.sendfile(fout, fin, None, min(remaining, 1 << 30))
                if done == 0:
                    break
                remaining -= done
        finally:
            os.close(fout)
    finally:
        os.close(fin)


def change_password(source: "UserdbSource", name: str, old: bytes, new: bytes, service: str) -> None:
    """Courier's PASSWD for a userdb (authuserdbpwd.c), done in one locked step:
    check ``old`` against the account as Courier sees it, then set the record's
    ``<service>pw`` (if present, else ``systempw``) to a new hash in
    ``source.hash_scheme``, and replace each ``[<service>-]hmac-<alg>pw`` field that
    held the state of ``old`` with the state of ``new``.

    Stricter than Courier: the old password must match the password for the
    service (Courier also accepts a match of an HMAC field alone and then changes
    only that field).
    Raises ``UnknownUser``, ``BadPassword``, ``PolicyRefused`` or
    ``TemporaryFailure``; nothing is written unless everything checks out."""
    from ..account import CRAM_ALGORITHMS
    from ..schemes import make_password_hash
    from ..schemes.hmacstate import hmac_state

    if not new or b"\0" in new or b"\n" in new or b"\r" in new:
        raise PolicyRefused("the new password holds bytes that cannot be stored")

    def decide(values: dict[str, str]) -> "list[tuple[str, str]]":
        # The old password is checked as Courier sees the account (the compiled
        # pair when it exists), under the text lock.  After a change killed between
        # its two renames the text may already hold the new hash while Courier
        # still accepts the old one; the user, who never saw "changed", retries
        # with the old one, and that must work.
        source.authenticate(name, old, service)  # raises UnknownUser / BadPassword
        field = service + "pw" if values.get(service + "pw") is not None else "systempw"
        if field not in values:
            raise BadPassword("the record has no password field for this service")
        changes = [(field, make_password_hash(new, source.hash_scheme))]
        for algorithm in CRAM_ALGORITHMS:
            old_state = None
            for hmac_field in (f"{service}-hmac-{algorithm}pw", f"hmac-{algorithm}pw"):
                if hmac_field in values:
                    if old_state is None:
                        old_state = hmac_state(old, algorithm)
                    if values[hmac_field] == old_state:
                        changes.append((hmac_field, hmac_state(new, algorithm)))
        return changes

    update_record(source.path, name, check=decide)


def add_record(root: str, name: str, fields: "Sequence[tuple[str, str]]", file_path: str | None = None) -> None:
    """Append a new record (fields in the given order) to the userdb file
    ``file_path`` (default: ``root``, which must then be a file), creating the file
    0600 if needed, and store it in the compiled pair if that exists.

    Raises ``ValueError`` if the name exists already or a name/value cannot be
    stored, ``TemporaryFailure`` on I/O errors."""
    if not name or set(name) & set("\t\n\r\0"):
        raise ValueError("Invalid account name")
    for key, value in fields:
        check_field_name(key)
        check_value(value)
    if locate(root, name) is not None if os.path.exists(root) else False:
        raise ValueError(f"account {name!r} exists already")
    path = file_path or root
    location = ""
    if path != root:
        location = os.path.relpath(path, root) + "/"
    text = "|".join(f"{k}={v}" for k, v in fields)
    with FileLock(text_lock_path(path)):
        data = files.read_file(path) if os.path.exists(path) else b""
        if files.find_in_data(data, encode(name)) is not None:
            raise ValueError(f"account {name!r} exists already")
        prefix = data if not data or data.endswith(b"\n") else data + b"\n"
        replace_file(path, (prefix, format_line(name, text)))
        sync_compiled(root, name, split_compiled(text, location))


def delete_record(root: str, name: str) -> None:
    """Remove ``name``'s record from the text (its first line) and the compiled
    pair.  Raises ``UnknownUser`` or ``TemporaryFailure``."""
    path, location = _text_file_for(root, name)
    with FileLock(text_lock_path(path)):
        data = files.read_file(path)
        span = files.find_in_data(data, encode(name))
        if span is None:
            raise UnknownUser(f"no such user in userdb {root}")
        start, end = span
        old_fields = decode(data[start + len(encode(name)) + 1 : end])
        replace_file(path, (data[:start], data[end + 1 :]))
        sync_compiled(root, name, (None, None))


__all__ = [
    "FileLock",
    "replace_file",
    "update_record",
    "update_compiled",
    "sync_compiled",
    "compiled_pair",
    "change_password",
    "add_record",
    "delete_record",
    "locate",
    "text_lock_path",
    "compiled_lock_path",
]
