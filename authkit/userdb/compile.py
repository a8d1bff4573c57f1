"""makeuserdb: compile a Courier userdb text into ``userdb.dat`` + ``userdbshadow.dat``.

What Courier's ``makeuserdb`` does (spec courier-authlib.md section 2), with the
same results byte for byte and the same refusals:

* the source is ``root`` (a file, or a directory whose files below it, recursively,
  names starting with ``.`` skipped, are all read);
* refused before anything is written: ``root`` missing, a symlink, or with any
  group/world permission bit; ``<root>.dat`` or ``<root>shadow.dat`` a symlink;
* per record line ``name<TAB>fields``: the fields whose name ends in ``pw`` and that
  have a ``=`` go to the shadow record, the others to the main record, and
  ``_=<location>`` is appended to the main record (``<location>`` = the source
  file's path relative to ``root`` plus ``/``, "" for a single file; computed from
  authkit's own root, so ``--userdb PATH`` gets it right where Courier's ``-f`` does
  not);  fields are split like Perl's ``split(/\\|/)`` (inner empty fields kept,
  trailing ones dropped) so that values are identical to Courier's;
* both files are written as GDBM (``GDBM_NEWDB`` + insert) to ``<root>.tmp`` and
  ``<root>shadow.tmp`` (modes 0644 and 0600), fsync'ed, given the extended
  attributes (ACLs) of the files they replace, and renamed into place, the
  shadow file first, under makeuserdb's lock ``<root>.lock``;
* an authkit edit that was interrupted (its journal ``.authkit-pending.<file>`` is
  still there, see authkit.userdb.journal) is rolled back or finished first; a
  journal that cannot be applied safely stops the compile (111).

Where authkit differs, on purpose:

* a **duplicate name** anywhere in the source is an error naming both places, and
  *nothing* is replaced (Courier keeps the old ``userdb.dat`` but replaces the
  shadow file);
* a **malformed line** (text without a TAB, or an empty name) is an error naming
  ``file:line``, and nothing is replaced (Courier stores such a line as a bogus
  record ``line -> "1"`` in both files, or silently skips an empty name).  Lines
  that are empty, hold only spaces, or start with ``#`` are skipped.

Records that every lookup refuses (authkit.userdb.text.record_problem: no
home/uid/gid, a uid or gid that is not a number of at most 10 digits) are stored
as Courier's makeuserdb stores them; :func:`check_text` (``authkit check``)
reports them with the same check the lookups make.  Checking every record here
would parse every record's fields: 1.1 to 1.9 s more per million lines, a
quarter of the compile.

Memory stays flat as the userdb grows: the text is streamed line by line,
duplicates are found by GDBM's insert itself (no set of names is kept), and
libgdbm runs with a fixed bucket cache and ``GDBM_NOMMAP`` (authkit.userdb.gdbm's
bulk writes, through ctypes; the ``_gdbm`` module is the fallback), which also
halves libgdbm's own time.  The two files are written by two processes (a forked
child writes the shadow file), so a 1M-account compile uses both cores;
``parallel=False`` does everything in one.
Figures: bench/README.md, "userdb at scale".

Errors: :class:`CompileError` (a ``Misuse``, exit 2) for a refused or malformed
source; ``TemporaryFailure`` for I/O errors.  Messages never quote field values.
"""

from __future__ import annotations

import os
import stat
import time

from ..errors import Misuse, TemporaryFailure
from . import files, gdbm
from .text import (
    LACKS_FIELDS,
    decode,
    first_values,
    is_account_name,
    parse_fields,
    record_problem,
    split_compiled_bytes,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Iterator

    Progress = Callable[[int, int, int], None]


class CompileError(Misuse):
    """The userdb cannot be compiled as it is (refused path, malformed line,
    duplicate name).  Nothing was replaced."""


class CompileResult:
    """What a compile did: ``records`` stored in ``userdb.dat``,
    ``shadow_records`` in ``userdbshadow.dat``, ``seconds`` taken, ``bytes`` of text
    read."""

    __slots__ = ("records", "shadow_records", "seconds", "bytes")

    def __init__(self, records: int, shadow_records: int, seconds: float, nbytes: int) -> None:
        self.records = records
        self.shadow_records = shadow_records
        self.seconds = seconds
        self.bytes = nbytes

    def __repr__(self) -> str:
        return (f"CompileResult(records={self.records}, shadow_records={self.shadow_records}, "
                f"seconds={self.seconds:.3f})")


#: Courier's split of a record into its two compiled values (bytes in, bytes out);
#: the rule lives in authkit.userdb.text.
split_record = split_compiled_bytes


def check_source(root: str) -> None:
    """Courier's refusals, before anything is written: raise CompileError when
    ``root`` is missing, is a symlink or has group/world permissions, or when
    ``<root>.dat`` / ``<root>shadow.dat`` is a symlink."""
    try:
        st = os.lstat(root)
    except FileNotFoundError:
        raise CompileError(f"{root}: not found") from None
    except OSError as exc:
        raise TemporaryFailure(f"cannot stat {root}: {exc.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise CompileError(f"{root} is a symbolic link: refusing to compile it")
    if st.st_mode & 0o077:
        raise CompileError(
            f"{root}: MAY NOT HAVE GROUP OR WORLD PERMISSIONS (mode {st.st_mode & 0o7777:04o}; "
            f"chmod go= {root})")
    for path in files.compiled_paths(root):
        if os.path.islink(path):
            raise CompileError(f"{path} is a symbolic link: refusing to replace it")


def source_files(root: str) -> list[tuple[str, bytes, int]]:
    """``(path, location, size)`` of every text file of the userdb, in the order
    they are compiled (sorted walk, see authkit.userdb.files)."""
    out = []
    for path, location in files.userdb_files(root):
        try:
            size = os.stat(path).st_size
        except OSError as exc:
            raise TemporaryFailure(f"cannot read userdb {path}: {exc.strerror}") from None
        out.append((path, location.encode("utf-8", "surrogateescape"), size))
    return out


def iter_records(sources: list[tuple[str, bytes, int]]) -> "Iterator[tuple[str, int, bytes, bytes, bytes, int]]":
    """``(path, lineno, name, fields, location, line_bytes)`` of every record line
    (the one line rule: authkit.userdb.files.iter_file_records).  Raises
    CompileError at the first malformed line (``file:line: why``)."""
    for path, location, _size in sources:
        for lineno, name, fields, size in files.iter_file_records(path, _refuse):
            yield path, lineno, name, fields, location, size


def _refuse(path: str, lineno: int, message: str) -> None:
    raise CompileError(f"{path}:{lineno}: {message}")


def find_first(sources: list[tuple[str, bytes, int]], name: bytes) -> tuple[str, int]:
    """Where ``name`` is first defined (path, line number)."""
    for path, lineno, key, _f, _l, _s in iter_records(sources):
        if key == name:
            return path, lineno
    return "?", 0


def _show(name: bytes) -> str:
    return repr(name.decode("utf-8", "backslashreplace"))


def _open_bulk(path: str, mode: int) -> "gdbm.GdbmWriter":
    """A new GDBM file for a bulk load, through authkit.userdb.gdbm's one binding
    (``bulk=True``: GDBM_NOMMAP and a fixed cache through ctypes).
    ``AUTHKIT_GDBM_BACKEND=_gdbm`` asks for the portable writer (the default
    backend, with libgdbm's default options) instead."""
    portable = os.environ.get("AUTHKIT_GDBM_BACKEND") == "_gdbm"
    return gdbm.create(path, mode, bulk=not portable)


def _remove(*paths: str) -> None:
    for path in paths:
        try:
            os.unlink(path)
        except OSError:
            pass


class _Duplicate(Exception):
    """A name stored twice (args[0] is the name)."""


def _feed(sources: list[tuple[str, bytes, int]], main_db: "gdbm.GdbmWriter | None",
          shadow_db: "gdbm.GdbmWriter | None", progress: "Progress | None",
          total: int) -> tuple[int, int]:
    """Stream every record of ``sources`` into ``main_db`` and/or ``shadow_db``
    (either may be None).  Returns ``(records, shadow records)``.  Raises
    CompileError at a malformed line, _Duplicate for a name stored twice.

    This is the hot loop of makeuserdb (one pass per process at 1M lines), so the
    per-line work is inlined: the line rule is text.split_line's, written out
    (tests/unit/test_compile.py feeds both the same malformed lines), and the
    common record without password fields costs one ``find`` and one
    concatenation."""
    records = shadow_records = 0
    done = 0
    next_report = time.monotonic() + 0.2
    main_insert = main_db.inserter() if main_db is not None else None
    shadow_insert = shadow_db.inserter() if shadow_db is not None else None
    for path, location, _size in sources:
        suffix = b"|_=" + location
        try:
            handle = open(path, "rb", buffering=1 << 20)
        except OSError as exc:
            raise TemporaryFailure(f"cannot read userdb {path}: {exc.strerror}") from None
        with handle:
            lineno = 0
            for line in handle:
                lineno += 1
                done += len(line)
                if line[-1:] == b"\n":
                    line = line[:-1]
                if not line or line[0] == 35:  # '#'
                    continue
                tab = line.find(b"\t")
                if tab <= 0:
                    if tab < 0 and not line.strip():
                        continue
                    why = "no TAB between the name and the fields" if tab < 0 else "empty account name"
                    raise CompileError(f"{path}:{lineno}: {why}")
                name = line[:tab]
                fields = line[tab + 1:]
                records += 1
                if b"pw=" not in fields and fields and fields[-1:] != b"|":
                    main = fields + suffix
                    shadow = None
                else:
                    main, shadow = split_record(fields, location)
                if main_insert is not None and not main_insert(name, main):
                    raise _Duplicate(name)
                if shadow is not None:
                    shadow_records += 1
                    if shadow_insert is not None and not shadow_insert(name, shadow):
                        raise _Duplicate(name)
                if progress is not None and not records & 4095:
                    now = time.monotonic()
                    if now >= next_report:
                        next_report = now + 0.2
                        progress(done, total, records)
    return records, shadow_records


def compile_userdb(root: str, *, progress: "Progress | None" = None, parallel: bool = True,
                   lock_timeout: float = 300.0) -> CompileResult:
    """Compile the userdb at ``root`` into ``<root>.dat`` and ``<root>shadow.dat``
    (see the module docstring).  ``progress(done_bytes, total_bytes, records)`` is
    called about every 0.2 s while compiling, and once at the end.

    Returns a :class:`CompileResult`.  Raises CompileError (nothing replaced) or
    TemporaryFailure (nothing replaced, temporary files removed)."""
    from .atomic import copy_attributes, fsync_dir
    from .journal import recover_all
    from .locks import FileLock, compiled_lock_path

    started = time.monotonic()
    root = root.rstrip("/") or "/"
    check_source(root)
    recover_all(root)  # an interrupted authkit edit is rolled back, never compiled
    dat, shadow = files.compiled_paths(root)
    tmp_dat, tmp_shadow = root + ".tmp", root + "shadow.tmp"
    with FileLock(compiled_lock_path(root), timeout=lock_timeout):
        check_source(root)  # again, under the lock
        sources = source_files(root)
        total = sum(size for _p, _l, size in sources)
        duplicate: list[bytes] = []
        child = _start_shadow_child(sources, tmp_shadow) if parallel else 0
        counts = (0, 0)
        try:
            _remove(tmp_dat)  # (the shadow writer child removes and creates its own)
            if not parallel:
                _remove(tmp_shadow)
            main_db = _open_bulk(tmp_dat, 0o644)
            try:
                shadow_db = None if parallel else _open_bulk(tmp_shadow, 0o600)
                try:
                    try:
                        counts = _feed(sources, main_db, shadow_db, progress, total)
                    except _Duplicate as exc:
                        duplicate.append(exc.args[0])
                        raise
                    if shadow_db is not None:
                        shadow_db.sync()
                finally:
                    if shadow_db is not None:
                        shadow_db.close()
                main_db.sync()
            finally:
                main_db.close()
            if child:
                _wait_child(child, tmp_shadow)
                child = 0
        except BaseException as exc:
            if child:
                _stop_child(child)
            _remove(tmp_dat, tmp_shadow)
            if duplicate:
                name = duplicate[0]
                first = find_first(sources, name)
                second = _find_second(sources, name)
                raise CompileError(
                    f"{second[0]}:{second[1]}: duplicate account {_show(name)} (first defined at "
                    f"{first[0]}:{first[1]}); nothing replaced") from None
            if isinstance(exc, OSError):
                raise TemporaryFailure(f"cannot compile {root}: {exc.strerror}") from None
            raise
        if progress is not None:
            progress(total, total, counts[0])
        try:
            copy_attributes(shadow, tmp_shadow)  # ACLs and other extended attributes are kept
            copy_attributes(dat, tmp_dat)
            os.rename(tmp_shadow, shadow)
            os.rename(tmp_dat, dat)
            fsync_dir(os.path.dirname(dat))
        except OSError as exc:
            _remove(tmp_dat, tmp_shadow)
            raise TemporaryFailure(f"cannot rename the compiled userdb into place: {exc.strerror}") from None
        except TemporaryFailure:
            _remove(tmp_dat, tmp_shadow)
            raise
    return CompileResult(counts[0], counts[1], time.monotonic() - started, total)


def _find_second(sources: list[tuple[str, bytes, int]], name: bytes) -> tuple[str, int]:
    seen = 0
    for path, lineno, key, _f, _l, _s in iter_records(sources):
        if key == name:
            seen += 1
            if seen == 2:
                return path, lineno
    return "?", 0


def _start_shadow_child(sources: list[tuple[str, bytes, int]], tmp_shadow: str) -> int:
    """Fork a child that writes the shadow file; returns its pid.  The child
    exits 0 on success, 3 on a malformed line or duplicate (the parent finds and
    reports those itself), 111 on an I/O error."""
    gdbm.bulk_backend()  # load libgdbm before forking
    pid = os.fork()
    if pid:
        return pid
    code = 111
    try:
        _remove(tmp_shadow)
        shadow_db = _open_bulk(tmp_shadow, 0o600)
        try:
            _feed(sources, None, shadow_db, None, 0)
            shadow_db.sync()
        finally:
            shadow_db.close()
        code = 0
    except (CompileError, _Duplicate):
        code = 3
    except BaseException:
        code = 111
    finally:
        os._exit(code)


def _wait_child(pid: int, tmp_shadow: str) -> None:
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return
    if code == 3:
        # The parent saw the same source without finding a problem: a file
        # changed under us.  Refuse rather than guess.
        raise TemporaryFailure("the userdb changed while it was being compiled; run makeuserdb again")
    raise TemporaryFailure(f"cannot write {tmp_shadow} (shadow writer exited {code})")


def _stop_child(pid: int) -> None:
    import signal

    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def check_text(root: str) -> "Iterator[str]":
    """Every problem of the text userdb, as ``file:line: what`` messages (a full
    scan; unlike :func:`compile_userdb` this keeps the set of names in memory):
    a refused source path, malformed lines, duplicate names, a name no lookup
    accepts (authkit.userdb.text.is_account_name), records every lookup refuses
    (authkit.userdb.text.record_problem, the check lookups make: no home/uid/gid,
    a uid or gid that is not a number of at most 10 digits), a CR before the
    newline."""
    try:
        check_source(root)
    except CompileError as exc:
        yield str(exc)
    try:
        sources = source_files(root)
    except TemporaryFailure as exc:
        yield str(exc)
        return
    problems: list[str] = []

    def note(path: str, lineno: int, message: str) -> None:
        problems.append(f"{path}:{lineno}: {message}")

    seen: dict[bytes, tuple[str, int]] = {}
    for path, _location, _size in sources:
        for lineno, name, fields, _bytes in files.iter_file_records(path, note):
            yield from problems
            problems.clear()
            if name in seen:
                first = seen[name]
                yield (f"{path}:{lineno}: duplicate account {_show(name)} (first defined at "
                       f"{first[0]}:{first[1]})")
                continue
            seen[name] = (path, lineno)
            if fields.endswith(b"\r"):
                yield f"{path}:{lineno}: carriage return before the newline (it ends up in the last value)"
            if not is_account_name(decode(name)):
                yield f"{path}:{lineno}: account {_show(name)} has a CR or NUL in its name (no lookup finds it)"
                continue
            problem = record_problem(first_values(parse_fields(decode(fields))))
            if problem is not None:
                suffix = " (Courier ignores it)" if problem == LACKS_FIELDS else ""
                yield f"{path}:{lineno}: account {_show(name)} {problem}{suffix}"
        yield from problems
        problems.clear()


def verify_compiled(root: str) -> "Iterator[str]":
    """Differences between the text userdb and its compiled pair, as messages:
    a record whose ``userdb.dat`` or ``userdbshadow.dat`` value is not what
    makeuserdb would store, and keys of the compiled files that the text lacks.
    The first of duplicate names counts (as in authkit's lookups)."""
    dat_path, shadow_path = files.compiled_paths(root)
    try:
        dat = gdbm.open_reader(dat_path)
    except FileNotFoundError:
        yield f"{dat_path}: missing (run authkit makeuserdb)"
        return
    try:
        shadow = gdbm.open_reader(shadow_path)
    except FileNotFoundError:
        dat.close()
        yield f"{shadow_path}: missing (run authkit makeuserdb)"
        return
    names: set[bytes] = set()
    try:
        for path, lineno, name, fields, location, _size in _tolerant_records(source_files(root)):
            if name in names:
                continue
            names.add(name)
            main, shadow_value = split_record(fields, location)
            if dat.get(name) != main:
                yield f"{path}:{lineno}: {_show(name)} differs in {dat_path}"
            if shadow.get(name) != shadow_value:
                yield f"{path}:{lineno}: {_show(name)} differs in {shadow_path}"
        for db, db_path in ((dat, dat_path), (shadow, shadow_path)):
            for key in db.keys():
                if key not in names:
                    yield f"{db_path}: {_show(key)} is not in the text userdb"
    finally:
        dat.close()
        shadow.close()


def _tolerant_records(sources: list[tuple[str, bytes, int]]) -> "Iterator[tuple[str, int, bytes, bytes, bytes, int]]":
    """Like :func:`iter_records` but skipping malformed lines."""
    for path, location, _size in sources:
        for lineno, name, fields, size in files.iter_file_records(path):
            yield path, lineno, name, fields, location, size


__all__ = ["CompileError", "CompileResult", "compile_userdb", "split_record", "check_source",
           "iter_records", "check_text", "verify_compiled"]
