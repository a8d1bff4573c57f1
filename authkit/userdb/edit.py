"""Changing a Courier userdb the way Courier does, without losing anything.

Every write follows one protocol:

1. take Courier's own lock for the text file: ``flock(LOCK_EX)`` on
   ``<dir>/.lock.<file>`` (what Courier's ``userdb`` script locks), then, when the
   compiled pair exists, makeuserdb's lock ``<userdb>.lock``; both are held for
   the whole change (always in that order), so authkit, Courier's ``userdb`` and
   any ``makeuserdb`` never interleave with it;
2. undo or finish an interrupted earlier change of the file (its journal is
   still there, see below), then make the compiled record of the account agree
   with its text line (the text is the source, as for makeuserdb: this picks up
   edits made with Courier's own ``userdb`` script);
3. write the undo journal ``<dir>/.authkit-pending.<file>`` (the record's
   offset, old line and new line) and fsync it;
4. find the record with one ``bytes.find`` pass over 1 MiB chunks, change its fields in place
   (other lines, comments and the record's field order stay byte for byte), and
   write ``<dir>/.tmp.<file>``: the unchanged parts are copied in the kernel
   (``copy_file_range``), only the new line is written; it gets the old file's
   owner and mode, is ``fsync``-ed, ``rename``-d over the file, and the directory
   is ``fsync``-ed: a crash leaves the old or the new file, never a mix;
5. copy each ``.dat`` file whose value changes, store the one record in the
   copy, ``fsync`` and ``rename`` it into place, so that Courier's running
   authdaemond (which re-reads ``userdb.dat`` when its inode changes and opens
   ``userdbshadow.dat`` per lookup) sees the change at once, without a rebuild.
   This is the commit point (without a compiled pair: the text rename);
6. remove the journal.

What holds when a change is killed at any point (SIGKILL; tested in
tests/integration/test_admin_courier.py): the text file is the old or the new
one, each compiled file is the old or the new one, and the two can disagree only
on the one record being changed (text new, compiled old: killed between steps 4
and 5), with the journal naming it.  Courier and authkit read the compiled pair,
so every reader sees the change either done or not done.  The next change of any
record of that file, and makeuserdb, first recover: if the compiled pair holds
the new record the change is kept, otherwise it is rolled back (text line and
compiled record restored), so a user who never saw "changed" keeps the old
password and text and compiled pair agree again.

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
    from typing import Callable, Iterable, Sequence

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


def _write_beside(
    path: str, mode: int, uid: int, gid: int, body: "Callable[[int], None]", tmp_path: str | None = None
) -> None:
    """The one way authkit replaces a text file: create ``.tmp.<name>`` beside
    ``path`` (or ``tmp_path``; never through a symlink), give it ``uid``/``gid``
    (-1: ours; kept ours when not root, as Courier's script does) and ``mode``,
    let ``body(fd)`` write the content, fsync, rename over ``path``, fsync the
    directory.  On any error the temporary file is removed and ``path`` is
    untouched; an ``OSError`` becomes ``TemporaryFailure`` naming the file (disk
    full, read-only directory, ...).  Used for the text files and, through
    :func:`_store_copy`, for the compiled pair."""
    directory, name = os.path.split(path)
    tmp = tmp_path or os.path.join(directory, ".tmp." + name)
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
                    pass
            os.fchmod(fd, mode)
            body(fd)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        _fsync_dir(directory)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise TemporaryFailure(f"cannot write {path}: {exc.strerror}") from None
        raise


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def replace_file(path: str, chunks: "Iterable[bytes]", tmp_path: str | None = None) -> None:
    """Write ``chunks`` to a temporary file beside ``path`` (``.tmp.<name>``, or
    ``tmp_path``) with ``path``'s owner and mode (0600 for a new file), fsync it and
    rename it over ``path`` (see :func:`_write_beside`).  Raises
    ``TemporaryFailure`` naming the file; ``path`` is then untouched."""
    try:
        st = os.stat(path)
        mode, uid, gid = st.st_mode & 0o7777, st.st_uid, st.st_gid
    except FileNotFoundError:
        mode, uid, gid = 0o600, -1, -1
    except OSError as exc:
        raise TemporaryFailure(f"cannot stat {path}: {exc.strerror}") from None

    def body(fd: int) -> None:
        for chunk in chunks:
            _write_all(fd, chunk)

    _write_beside(path, mode, uid, gid, body, tmp_path)


def locate(root: str, name: str) -> tuple[str, str] | None:
    """``(file path, location)`` of the text file holding ``name``'s record."""
    key = encode(name)
    for path, location in files.userdb_files(root):
        if _find_line(path, key) is not None:
            return path, location
    return None


_CHUNK = 1 << 20


def _find_line(path: str, key: bytes) -> tuple[int, int, bytes] | None:
    """``(start, end, fields)`` of the first line of ``path`` for ``key``
    (``end`` is just past its newline, or the file's end), or None if absent.

    One pass of ``bytes.find`` over 1 MiB ``pread`` chunks: as fast as a memory
    map here, but the process never holds more than two chunks (a memory map of
    the whole file would count up to its size in the resident set)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TemporaryFailure(f"cannot read userdb {path}: {exc.strerror}") from None
    try:
        needle = b"\n" + key + b"\t"
        overlap = len(needle) - 1
        offset = 0
        carry = b"\n"  # as if a newline preceded the file
        start = -1
        while True:
            chunk = os.pread(fd, _CHUNK, offset)
            window = carry + chunk
            hit = window.find(needle)
            if hit >= 0:
                start = offset - len(carry) + hit + 1
                break
            if len(chunk) < _CHUNK:
                return None
            offset += len(chunk)
            carry = window[-overlap:] if overlap else b""
        # read the line from its start
        line = b""
        position = start
        while True:
            chunk = os.pread(fd, _CHUNK, position)
            newline = chunk.find(b"\n")
            if newline >= 0:
                line += chunk[:newline]
                end = position + newline + 1
                break
            line += chunk
            position += len(chunk)
            if len(chunk) < _CHUNK:
                end = position
                break
        return start, end, line[len(key) + 1:]
    except OSError as exc:
        raise TemporaryFailure(f"cannot read userdb {path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def _copy_range(src: int, dst: int, offset: int, count: int) -> None:
    """Copy ``count`` bytes of ``src`` from ``offset`` to the current end of
    ``dst`` (in the kernel with copy_file_range; read/write if unsupported)."""
    out = os.lseek(dst, 0, os.SEEK_CUR)
    while count > 0:
        try:
            done = os.copy_file_range(src, dst, min(count, 1 << 30), offset, out)
        except OSError:
            done = -1
        if done <= 0:
            chunk = os.pread(src, min(count, 1 << 20), offset)
            if not chunk:
                raise OSError(5, "short read while copying")
            done = os.pwrite(dst, chunk, out)
        offset += done
        out += done
        count -= done
    os.lseek(dst, out, os.SEEK_SET)


def splice_file(path: str, start: int, end: int, replacement: bytes) -> None:
    """Replace bytes ``[start, end)`` of ``path`` with ``replacement`` the safe
    way (:func:`_write_beside`: same owner and mode, fsync, rename, fsync of the
    directory), copying the unchanged parts in the kernel.  Raises
    TemporaryFailure naming the file; ``path`` is then untouched."""
    try:
        src = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise TemporaryFailure(f"cannot read {path}: {exc.strerror}") from None
    try:
        try:
            st = os.fstat(src)
        except OSError as exc:
            raise TemporaryFailure(f"cannot read {path}: {exc.strerror}") from None

        def body(fd: int) -> None:
            _copy_range(src, fd, 0, start)
            _write_all(fd, replacement)
            _copy_range(src, fd, end, st.st_size - end)

        _write_beside(path, st.st_mode & 0o7777, st.st_uid, st.st_gid, body)
    finally:
        os.close(src)


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


def _compiled_pair(fields: bytes | str, location: str) -> tuple[str, str | None]:
    """What makeuserdb stores for a record (Courier's exact split), as text."""
    if isinstance(fields, bytes):
        fields = decode(fields)
    return split_compiled(fields, location)


class _ChangeLocks:
    """Both locks of a change, in the one order every writer uses: the text
    file's ``.lock.<file>``, then (when the compiled pair exists) makeuserdb's
    ``<root>.lock``.  Holding both for the whole change means makeuserdb never
    compiles a text whose compiled record is half updated."""

    def __init__(self, root: str, path: str) -> None:
        self.text = FileLock(text_lock_path(path))
        self.compiled: FileLock | None = None
        self.root = root

    def __enter__(self) -> "_ChangeLocks":
        self.text.__enter__()
        try:
            if os.path.exists(files.compiled_paths(self.root)[0]):
                self.compiled = FileLock(compiled_lock_path(self.root))
                self.compiled.__enter__()
        except BaseException:
            self.text.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.compiled is not None:
            self.compiled.__exit__()
        self.text.__exit__()


def pending_path(path: str) -> str:
    """The undo journal of a change in progress on text file ``path``:
    ``<dir>/.authkit-pending.<file>`` (a dot file, so never read as userdb text)."""
    directory, name = os.path.split(path)
    return os.path.join(directory, ".authkit-pending." + name)


def _mark(path: str, name: str, offset: int, old_line: bytes, new_line: bytes) -> None:
    """Write the journal: where the record's line is, its old and new bytes (b""
    for an added or a deleted record), fsync'ed before the text is touched."""
    marker = pending_path(path)
    key = encode(name)
    head = b"authkit-pending 1 %d %d %d %d\n" % (offset, len(key), len(old_line), len(new_line))
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, head + key + old_line + new_line)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        try:  # a journal that could not be written whole (a full disk) is not left behind
            os.unlink(marker)
        except OSError:
            pass
        raise TemporaryFailure(f"cannot write {marker}: {exc.strerror}") from None


def _unmark(path: str) -> None:
    try:
        os.unlink(pending_path(path))
    except FileNotFoundError:
        pass


def _line_pair(line: bytes, key: bytes, location: str) -> tuple[str, str | None] | None:
    """The compiled pair of a whole text line (None for b"": no record)."""
    line = line.lstrip(b"\n")
    if not line:
        return None
    return _compiled_pair(line[len(key) + 1:].rstrip(b"\n"), location)


def _recover(root: str, path: str, location: str) -> None:
    """Undo or finish a change of ``path`` that was interrupted (its journal is
    still there).  Called under both locks before every change of the file.

    The commit point of a change is the moment the compiled pair holds the new
    record (with no compiled pair: the text rename).  If the compiled pair holds
    the new record, the change is kept; otherwise it is rolled back: the text
    gets the old line again (at its old place) and the compiled record its old
    values.  An interrupted change thus either happened or did not, as every
    reader sees it, and a user who never saw "changed" keeps the old password."""
    marker = pending_path(path)
    try:
        with open(marker, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise TemporaryFailure(f"cannot read {marker}: {exc.strerror}") from None
    head, _, body = data.partition(b"\n")
    fields = head.split()
    if len(fields) != 6 or fields[:2] != [b"authkit-pending", b"1"]:
        os.unlink(marker)  # torn before its fsync: the text was never touched
        return
    offset, klen, olen, nlen = (int(x) for x in fields[2:])
    if len(body) != klen + olen + nlen:
        os.unlink(marker)
        return
    key, old_line, new_line = body[:klen], body[klen:klen + olen], body[klen + olen:]
    name = decode(key)
    new_pair = _line_pair(new_line, key, location)
    dat = files.compiled_paths(root)[0]
    if os.path.exists(dat) and compiled_pair(root, name) != (new_pair or (None, None)):
        found = _find_line(path, key)
        current = b"" if found is None else key + b"\t" + found[2] + b"\n"
        if current.rstrip(b"\n") != old_line.rstrip(b"\n"):
            if found is not None:
                splice_file(path, found[0], found[1], old_line)
            elif old_line:
                size = os.path.getsize(path) if os.path.exists(path) else 0
                splice_file(path, min(offset, size), min(offset, size), old_line)
        _reconcile(root, name, _line_pair(old_line, key, location))
    os.unlink(marker)


def recover_pending(root: str) -> int:
    """Undo or finish every interrupted change of the userdb at ``root`` (see
    :func:`_recover`), each under its file's locks.  Returns how many journals
    were found.  makeuserdb calls this first, so that it never compiles a change
    that was never committed."""
    count = 0
    for path, location in files.userdb_files(root):
        if os.path.exists(pending_path(path)):
            count += 1
            with _ChangeLocks(root, path):
                _recover(root, path, location)
    return count


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


def _reconcile(root: str, name: str, pair: tuple[str | None, str | None] | None) -> bool:
    """Make the compiled pair (if it exists) hold ``pair`` for ``name`` (None: no
    record), copying only a file whose value differs.  Caller holds the locks.
    Returns True if it wrote anything."""
    dat, shadow = files.compiled_paths(root)
    current = compiled_pair(root, name)
    if current is None:
        return False
    wanted = (None, None) if pair is None else pair
    key = encode(name)
    wrote = False
    for db_path, have, want in ((dat, current[0], wanted[0]), (shadow, current[1], wanted[1])):
        if have != want:
            _store_copy(db_path, key, want)
            wrote = True
    return wrote


def sync_compiled(root: str, name: str, pair: tuple[str | None, str | None]) -> bool:
    """Make the compiled pair (if it exists) hold ``pair`` for ``name`` (None:
    no record), by copy-on-write of each ``.dat`` file whose value differs, under
    makeuserdb's lock.  Returns True if it wrote anything.  (It compares with what
    the files hold, not with what the text held before.)"""
    if not os.path.exists(files.compiled_paths(root)[0]):
        return False
    with FileLock(compiled_lock_path(root)):
        return _reconcile(root, name, pair)


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
    written); otherwise ``set_values`` is used.  Before it is called the compiled
    record is made to agree with the text (repairing an interrupted change).

    Returns the record's new ``(main, shadow)`` compiled strings.  Raises
    ``UnknownUser``, ``ValueError`` for unstorable names or values, or
    ``TemporaryFailure``."""
    path, location = _text_file_for(root, name)
    unset = tuple(unset)
    key = encode(name)
    with _ChangeLocks(root, path):
        _recover(root, path, location)
        found = _find_line(path, key)
        if found is None:  # absent, or removed between locate() and the lock
            raise UnknownUser(f"no such user in userdb {root}")
        start, end, raw_fields = found
        old_fields = decode(raw_fields)
        old_pair = _compiled_pair(raw_fields, location)
        _reconcile(root, name, old_pair)
        if check is not None:
            set_values = check(first_values(parse_fields(old_fields)))
        new_fields = edit_fields(old_fields, set_values, unset)
        if new_fields == old_fields:
            return old_pair
        new_pair = _compiled_pair(new_fields, location)
        new_line = format_line(name, new_fields)
        _mark(path, name, start, key + b"\t" + raw_fields + b"\n", new_line)
        splice_file(path, start, end, new_line)
        update_compiled(root, name, old_pair, new_pair, locked=True)
        _unmark(path)
        return new_pair


def update_compiled(
    root: str, name: str, old_pair: tuple[str, str | None], new_pair: tuple[str, str | None],
    *, locked: bool = False,
) -> None:
    """Store one record's new values in the compiled pair, if it exists, by
    copy-on-write of each ``.dat`` file whose value changed (under makeuserdb's
    lock unless the caller holds it: ``locked=True``)."""
    dat, shadow = files.compiled_paths(root)
    if not os.path.exists(dat):
        return
    key = encode(name)
    lock = None if locked else FileLock(compiled_lock_path(root))
    if lock is not None:
        lock.__enter__()
    try:
        if old_pair[0] != new_pair[0]:
            _store_copy(dat, key, new_pair[0])
        if old_pair[1] != new_pair[1]:
            _store_copy(shadow, key, new_pair[1])
    finally:
        if lock is not None:
            lock.__exit__()


def _store_copy(path: str, key: bytes, value: str | None) -> None:
    """Copy ``path`` (a compiled ``.dat`` file), store (or delete, for None) ``key``
    in the copy and put it in place with the original's owner and mode, through
    :func:`_write_beside` (``.tmp.authkit.<name>``; a new file gets 0600 for the
    shadow file, 0644 for ``userdb.dat``, as makeuserdb does)."""
    from . import gdbm

    directory, name = os.path.split(path)
    tmp = os.path.join(directory, ".tmp.authkit." + name)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise TemporaryFailure(f"cannot stat {path}: {exc.strerror}") from None
    if st is None and value is None:
        return

    def body(fd: int) -> None:
        if st is not None:
            src = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _copy_range(src, fd, 0, st.st_size)
            finally:
                os.close(src)
            writer = gdbm.open_writer(tmp)
        else:
            writer = gdbm.create(tmp, 0o600 if name.endswith("shadow.dat") else 0o644)
        with writer:
            if value is None:
                try:
                    writer.delete(key)
                except KeyError:
                    pass
            else:
                writer.store(key, encode(value))
            writer.sync()

    if st is not None:
        mode, uid, gid = st.st_mode & 0o7777, st.st_uid, st.st_gid
    else:
        mode, uid, gid = (0o600 if name.endswith("shadow.dat") else 0o644), -1, -1
    _write_beside(path, mode, uid, gid, body, tmp)


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
    key = encode(name)
    with _ChangeLocks(root, path):
        _recover(root, path, location)
        size = os.path.getsize(path) if os.path.exists(path) else 0
        if size and _find_line(path, key) is not None:
            raise ValueError(f"account {name!r} exists already")
        new_line = format_line(name, text)
        if size:
            with open(path, "rb") as handle:
                handle.seek(size - 1)
                newline = b"" if handle.read(1) == b"\n" else b"\n"
            _mark(path, name, size, b"", newline + new_line)
            splice_file(path, size, size, newline + new_line)
        else:
            _mark(path, name, 0, b"", new_line)
            replace_file(path, (format_line(name, text),))
        update_compiled(root, name, (None, None), _compiled_pair(text, location), locked=True)  # type: ignore[arg-type]
        _unmark(path)


def delete_record(root: str, name: str) -> None:
    """Remove ``name``'s record from the text (its first line) and the compiled
    pair.  Raises ``UnknownUser`` or ``TemporaryFailure``."""
    path, location = _text_file_for(root, name)
    key = encode(name)
    with _ChangeLocks(root, path):
        _recover(root, path, location)
        found = _find_line(path, key)
        if found is None:
            raise UnknownUser(f"no such user in userdb {root}")
        start, end, raw_fields = found
        _mark(path, name, start, key + b"\t" + raw_fields + b"\n", b"")
        splice_file(path, start, end, b"")
        _reconcile(root, name, None)
        _unmark(path)


__all__ = [
    "FileLock",
    "replace_file",
    "update_record",
    "update_compiled",
    "sync_compiled",
    "compiled_pair",
    "recover_pending",
    "change_password",
    "add_record",
    "delete_record",
    "locate",
    "splice_file",
    "pending_path",
    "sync_compiled",
    "compiled_pair",
    "recover_pending",
    "text_lock_path",
    "compiled_lock_path",
]
