"""A minimal GNU dbm binding for Courier's ``userdb.dat`` / ``userdbshadow.dat``.

Two backends behind one API:

* ``"_gdbm"``: CPython's C module (Debian: python3-gdbm), used when importable.
  Importing this module then costs nothing beyond ``_gdbm`` itself: no ctypes.
* ``"ctypes"``: a ctypes binding to ``libgdbm.so.6`` (Debian: libgdbm6), loaded only
  when ``_gdbm`` is missing (e.g. a pyenv/venv Python built without it) or asked for.

Both call the same libgdbm the way Courier does (spec courier-authlib.md section 2):
Courier's reader (``gdbmobj_open`` mode "R") is ``gdbm_open(path, 0, GDBM_READER,
0664, NULL)``; makedatprog writes a temporary file opened with ``GDBM_NEWDB``,
stores with ``GDBM_INSERT`` and renames it over ``userdb.dat``.  Readers here also
open with ``GDBM_READER``, which takes a *non-blocking shared* lock on the file they
opened.  That never blocks a writer that builds a new file and renames it into
place (the writer locks its own new inode); it only conflicts with a writer
updating the same file in place (``open_writer``), and then the open fails at once
with EAGAIN, as Courier's would.  ``open_reader`` retries that case for about
0.1 s before giving up with TemporaryFailure.  ``lock=False`` (GDBM_NOLOCK) skips
the lock; it is safe only when nothing ever writes the file in place.

Errors:

* a missing file: :class:`FileNotFoundError` (the caller decides what that means;
  authdaemond treats a missing ``userdb.dat`` as "no such user");
* unreadable, corrupt, locked, or written by Berkeley DB:
  :class:`authkit.errors.TemporaryFailure` naming the file and the gdbm error text;
* neither backend loadable: TemporaryFailure saying what to install;
* ``insert`` of an existing key: :class:`DuplicateKey`.

Bulk writes (makeuserdb, authkit.userdb.compile): ``create(path, mode,
bulk=True)`` opens the new file through the ctypes backend with ``GDBM_NOMMAP``
(plain pread/pwrite instead of a memory map remapped as the file grows: half of
libgdbm's time at 1M records, and flat memory) and a fixed bucket cache of
:data:`BULK_CACHE_BUCKETS` (instead of libgdbm's auto-sized one: ~15 MB instead
of ~45 MB at 1M records, for ~3% more time); the file format is the same.
:meth:`GdbmWriter.inserter` returns the fastest GDBM_INSERT call of the backend
(True stored, False for a duplicate key).  ``_gdbm`` cannot set these options:
it is used for bulk writes only when libgdbm cannot be loaded through ctypes.
This is the one libgdbm binding: the compiler and the editor both write
through it.

Not here: the ``f=v|f=v`` record format (authkit.userdb), locking of the text
userdb, the tmp-file-and-rename dance of makeuserdb.  Close a file before
``exec``: the ``_gdbm`` backend cannot set close-on-exec (the ctypes one does).
"""

from __future__ import annotations

from authkit.errors import TemporaryFailure

try:
    import _gdbm
except ImportError:  # pragma: no cover - depends on the interpreter's build
    _gdbm = None

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

# gdbm.h (1.23)
GDBM_READER = 0
GDBM_WRITER = 1
GDBM_NEWDB = 3
GDBM_NOLOCK = 0x40
GDBM_NOMMAP = 0x80
GDBM_CLOEXEC = 0x100
GDBM_SETCACHESIZE = 1
GDBM_INSERT = 0
GDBM_REPLACE = 1
_GDBM_FILE_OPEN_ERROR = 3
_GDBM_CANT_BE_READER = 9
_GDBM_CANT_BE_WRITER = 10
_GDBM_ITEM_NOT_FOUND = 15
_EAGAIN = 11
_ENOENT = 2

#: Backend names, in order of preference.
BACKENDS = ("_gdbm", "ctypes")

#: The bucket cache of a bulk write (buckets of one 4 KiB block each).
BULK_CACHE_BUCKETS = 1024

#: GDBM header magics at offset 0 (gdbmconst.h: OMAGIC, MAGIC32, MAGIC64 and the
#: 1.21+ numsync variants), either byte order.
_GDBM_MAGICS = frozenset(
    m.to_bytes(4, order)
    for m in (0x13579ACE, 0x13579ACD, 0x13579ACF, 0x13579AD0, 0x13579AD1)
    for order in ("little", "big")
)
#: Berkeley DB hash (0x061561) and btree (0x053162) metadata magics: at offset 12
#: (DB 2.x and later), or offset 0 for a DB 1.85 hash file.
_BDB_MAGICS = frozenset(
    m.to_bytes(4, order) for m in (0x061561, 0x053162) for order in ("little", "big")
)

_LOCK_RETRIES = 10
_LOCK_RETRY_SLEEP = 0.01

_INSTALL_HINT = (
    "cannot load GNU dbm: neither the _gdbm module nor libgdbm.so.6 is available; "
    "install libgdbm6 (Debian/Ubuntu: apt-get install libgdbm6, or python3-gdbm for "
    "the faster _gdbm), gdbm (Fedora/RHEL: dnf install gdbm-libs; Alpine: apk add "
    "gdbm; macOS: brew install gdbm)"
)


class DuplicateKey(ValueError):
    """``insert`` found the key already stored (makedatprog: "duplicate")."""


def detect_format(path: str) -> str:
    """Return ``"gdbm"``, ``"berkeley-db"`` or ``"unknown"`` from the file's magic
    bytes (the first 16).  Raises OSError (e.g. FileNotFoundError) if unreadable."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:4] in _GDBM_MAGICS:
        return "gdbm"
    if head[12:16] in _BDB_MAGICS or head[:4] in _BDB_MAGICS:
        return "berkeley-db"
    return "unknown"


def available_backends() -> list[str]:
    """The backends that can be loaded here, preferred first."""
    names = ["_gdbm"] if _gdbm is not None else []
    try:
        _ctypes_lib()
    except TemporaryFailure:
        pass
    else:
        names.append("ctypes")
    return names


def default_backend() -> str:
    """``"_gdbm"`` when importable, else ``"ctypes"`` (not checked to load)."""
    return "_gdbm" if _gdbm is not None else "ctypes"


def bulk_backend() -> str:
    """The backend ``create(..., bulk=True)`` uses: ``"ctypes"`` when libgdbm
    loads (it is loaded now, e.g. before a fork), else ``"_gdbm"``."""
    try:
        _ctypes_lib()
    except TemporaryFailure:
        return "_gdbm" if _gdbm is not None else "ctypes"
    return "ctypes"


# ---------------------------------------------------------------- public API


class GdbmFile:
    """An open GDBM file, read-only.  Keys and values are bytes.

    Use as a context manager or call :meth:`close`; a closed file raises
    ValueError on use.  Not thread-safe (one file per thread)."""

    __slots__ = ("path", "backend", "_db")

    def __init__(self, path: str, backend: str, db: object) -> None:
        self.path = path
        self.backend = backend
        self._db = db

    def _handle(self) -> object:
        if self._db is None:
            raise ValueError(f"GDBM file {self.path} is closed")
        return self._db

    def get(self, key: bytes) -> bytes | None:
        """The value stored under ``key`` exactly (no case folding), or None."""
        db = self._handle()
        try:
            return db.get(key)
        except OSError as exc:
            raise _failure(self.path, "read", exc) from None

    def keys(self) -> Iterator[bytes]:
        """Every key, in GDBM's (hash) order, walked with firstkey/nextkey."""
        db = self._handle()
        try:
            key = db.firstkey()
            while key is not None:
                yield key
                key = db.nextkey(key)
        except OSError as exc:
            raise _failure(self.path, "read", exc) from None

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """``(key, value)`` for every key (values fetched one by one)."""
        for key in self.keys():
            value = self.get(key)
            if value is not None:
                yield key, value

    def close(self) -> None:
        """Close the file (idempotent)."""
        db, self._db = self._db, None
        if db is not None:
            db.close()

    def __enter__(self) -> GdbmFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

    def __repr__(self) -> str:
        state = "closed" if self._db is None else "open"
        return f"<{type(self).__name__} {self.path!r} {self.backend} {state}>"


class GdbmWriter(GdbmFile):
    """An open GDBM file, read-write (holds GDBM's exclusive lock)."""

    __slots__ = ()

    def store(self, key: bytes, value: bytes, replace: bool = True) -> None:
        """Store ``value`` under ``key``; with ``replace=False`` (GDBM_INSERT, what
        makedatprog uses) an existing key raises DuplicateKey."""
        db = self._handle()
        try:
            if replace:
                db[key] = value
            elif self.backend == "_gdbm":
                # _gdbm has no GDBM_INSERT; the exclusive lock makes check+store safe.
                if key in db:
                    raise DuplicateKey(f"duplicate key {_show(key)} in {self.path}")
                db[key] = value
            elif not db.insert(key, value):
                raise DuplicateKey(f"duplicate key {_show(key)} in {self.path}")
        except OSError as exc:
            raise _failure(self.path, "write", exc) from None

    def insert(self, key: bytes, value: bytes) -> None:
        """``store(key, value, replace=False)``."""
        self.store(key, value, replace=False)

    def inserter(self) -> "Callable[[bytes, bytes], bool]":
        """The fastest GDBM_INSERT of this file, for bulk loads: a callable
        ``(key, value) -> bool``, False (nothing stored) when the key exists.
        Raises TemporaryFailure on a write error.  Valid until :meth:`close`."""
        db = self._handle()
        path = self.path
        if self.backend == "ctypes":
            return db.inserter(path)  # type: ignore[attr-defined]

        def insert(key: bytes, value: bytes) -> bool:
            try:
                if key in db:  # type: ignore[operator]
                    return False  # (the exclusive lock makes check+store safe)
                db[key] = value  # type: ignore[index]
            except OSError as exc:
                raise _failure(path, "write", exc) from None
            return True

        return insert

    def delete(self, key: bytes) -> None:
        """Remove ``key``; KeyError if it is not stored."""
        db = self._handle()
        try:
            del db[key]
        except KeyError:
            raise KeyError(key) from None
        except OSError as exc:
            raise _failure(self.path, "write", exc) from None

    def sync(self) -> None:
        """Flush to disk (gdbm_sync: fsync)."""
        db = self._handle()
        try:
            db.sync()
        except OSError as exc:
            raise _failure(self.path, "sync", exc) from None

    def __enter__(self) -> GdbmWriter:
        return self


def open_reader(path: str, *, lock: bool = True, backend: str | None = None) -> GdbmFile:
    """Open ``path`` read-only like Courier (GDBM_READER; ``lock=False`` adds
    GDBM_NOLOCK).  ``backend`` forces ``"_gdbm"`` or ``"ctypes"``.

    Raises FileNotFoundError if the file does not exist, TemporaryFailure if it
    cannot be read, is corrupt, stays locked by an in-place writer, or is a
    Berkeley DB file (the message says to recompile it with authkit makeuserdb)."""
    path = _fspath(path)
    flags = GDBM_READER | (0 if lock else GDBM_NOLOCK)
    attempt = 0
    while True:
        try:
            return GdbmFile(path, *_open(path, flags, 0o664, backend))
        except _LockBusy as exc:
            attempt += 1
            if attempt >= _LOCK_RETRIES:
                raise _failure(path, "open", exc.args[0]) from None
            import time

            time.sleep(_LOCK_RETRY_SLEEP)


def create(path: str, mode: int = 0o644, *, backend: str | None = None, bulk: bool = False) -> GdbmWriter:
    """Create (or truncate) ``path`` as a new, empty GDBM file (GDBM_NEWDB, as
    makedatprog does) with permission bits exactly ``mode`` (never wider while
    being created: the umask only narrows).  Write a temporary name and rename it
    over the live file; truncating a live file breaks its readers.

    ``bulk=True``: for writing many records once (makeuserdb): ``GDBM_NOMMAP``
    and a fixed cache (see the module docstring), through the ctypes backend
    when it loads (``backend`` is then ignored)."""
    path = _fspath(path)
    if bulk and bulk_backend() == "ctypes":
        backend_name, db = "ctypes", _CtypesDb.open(path, GDBM_NEWDB | GDBM_NOMMAP, mode,
                                                    cache_buckets=BULK_CACHE_BUCKETS)
    else:
        backend_name, db = _open(path, GDBM_NEWDB, mode, backend)
    writer = GdbmWriter(path, backend_name, db)
    import os

    try:
        os.chmod(path, mode)
    except OSError as exc:
        writer.close()
        raise _failure(path, "chmod", exc) from None
    return writer


def open_writer(path: str, *, backend: str | None = None) -> GdbmWriter:
    """Open an existing GDBM file read-write (GDBM_WRITER, exclusive lock; fails
    at once with TemporaryFailure while a reader holds the file open)."""
    path = _fspath(path)
    try:
        return GdbmWriter(path, *_open(path, GDBM_WRITER, 0o664, backend))
    except _LockBusy as exc:
        raise _failure(path, "open", exc.args[0]) from None


# ---------------------------------------------------------------- internals


class _LockBusy(Exception):
    """The file is locked by another process (EAGAIN / CANT_BE_READER/WRITER)."""


def _fspath(path: object) -> str:
    if isinstance(path, str):
        return path
    import os

    return os.fsdecode(os.fspath(path))


def _show(key: bytes) -> str:
    return repr(key.decode("utf-8", "backslashreplace"))


def _failure(path: str, action: str, exc: BaseException | str) -> TemporaryFailure:
    text = exc if isinstance(exc, str) else (
        exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc))
    return TemporaryFailure(f"cannot {action} GDBM file {path}: {text}")


def _open(path: str, flags: int, mode: int, backend: str | None) -> tuple[str, object]:
    """Open with the chosen backend; map errors (see open_reader)."""
    if backend is None:
        backend = default_backend()
    if backend == "_gdbm":
        if _gdbm is None:
            raise TemporaryFailure(
                "the _gdbm module is not available in this Python (Debian: "
                "apt-get install python3-gdbm); use the ctypes backend")
        letters = "rwcn"[flags & 7] + ("u" if flags & GDBM_NOLOCK else "")
        try:
            return backend, _gdbm.open(path, letters, mode)
        except OSError as exc:  # _gdbm.error is an OSError
            code = exc.errno
            message = exc.strerror or (str(exc.args[0]) if exc.args else str(exc))
            return backend, _raise_open_error(path, code, message)
    if backend == "ctypes":
        return backend, _CtypesDb.open(path, flags, mode)
    raise ValueError(f"unknown GDBM backend {backend!r} (choose from {BACKENDS})")


def _raise_open_error(path: str, code: int | None, message: str) -> object:
    """Raise the right error for a failed gdbm_open (``code`` = errno or None)."""
    if code == _ENOENT:
        raise FileNotFoundError(_ENOENT, message, path)
    if code == _EAGAIN or message in ("Can't be reader", "Can't be writer"):
        raise _LockBusy(f"locked by another process ({message})")
    if code is None:
        try:
            kind = detect_format(path)
        except OSError:
            kind = "unknown"
        if kind == "berkeley-db":
            raise TemporaryFailure(
                f"cannot open GDBM file {path}: it is a Berkeley DB file, written by a "
                f"Courier built with Berkeley DB instead of GDBM; recompile it from the "
                f"text userdb with `authkit makeuserdb`")
    raise TemporaryFailure(f"cannot open GDBM file {path}: {message}")


# ---- ctypes backend (loaded only when used)

_LIB = None


def _ctypes_lib() -> object:
    """Load libgdbm.so.6 once, declaring the functions used; TemporaryFailure
    (with what to install) when it cannot be found."""
    global _LIB
    if _LIB is not None:
        return _LIB
    import ctypes

    lib = None
    for name in ("libgdbm.so.6", "libgdbm.6.dylib", "libgdbm.so"):
        try:
            lib = ctypes.CDLL(name, use_errno=True)
            break
        except OSError:
            continue
    if lib is None:
        import ctypes.util

        found = ctypes.util.find_library("gdbm")
        try:
            lib = ctypes.CDLL(found, use_errno=True) if found else None
        except OSError:
            lib = None
    if lib is None:
        raise TemporaryFailure(_INSTALL_HINT)

    class Datum(ctypes.Structure):
        """A datum libgdbm returns (malloc'ed: freed after copying)."""
        _fields_ = [("dptr", ctypes.c_void_p), ("dsize", ctypes.c_int)]

    class InDatum(ctypes.Structure):
        """A datum passed in: ``dptr`` takes bytes directly (no copy, no cast)."""
        _fields_ = [("dptr", ctypes.c_char_p), ("dsize", ctypes.c_int)]

    vp, ci, cp = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p
    for name, restype, argtypes in (
        ("gdbm_open", vp, [cp, ci, ci, ci, vp]),
        ("gdbm_close", ci, [vp]),
        ("gdbm_fetch", Datum, [vp, InDatum]),
        ("gdbm_store", ci, [vp, InDatum, InDatum, ci]),
        ("gdbm_delete", ci, [vp, InDatum]),
        ("gdbm_firstkey", Datum, [vp]),
        ("gdbm_nextkey", Datum, [vp, InDatum]),
        ("gdbm_setopt", ci, [vp, ci, vp, ci]),
        ("gdbm_sync", ci, [vp]),
        ("gdbm_errno_location", ctypes.POINTER(ci), []),
        ("gdbm_last_errno", ci, [vp]),
        ("gdbm_strerror", cp, [ci]),
        ("gdbm_db_strerror", cp, [vp]),
    ):
        function = getattr(lib, name)
        function.restype = restype
        function.argtypes = argtypes
    libc = ctypes.CDLL(None)
    lib.free = libc.free
    lib.free.restype = None
    lib.free.argtypes = [vp]
    lib.Datum = Datum
    lib.InDatum = InDatum
    lib.ctypes = ctypes
    _LIB = lib
    return lib


class _CtypesError(OSError):
    """A libgdbm call failed (strerror = gdbm's text)."""


class _CtypesDb:
    """The subset of the ``_gdbm`` object protocol GdbmFile uses, over ctypes."""

    __slots__ = ("_lib", "_dbf")

    def __init__(self, lib: object, dbf: int) -> None:
        self._lib = lib
        self._dbf = dbf

    @classmethod
    def open(cls, path: str, flags: int, mode: int, cache_buckets: int = 0) -> _CtypesDb:
        lib = _ctypes_lib()
        ctypes = lib.ctypes
        ctypes.set_errno(0)
        dbf = lib.gdbm_open(path.encode("utf-8", "surrogateescape"), 0,
                            flags | GDBM_CLOEXEC, mode, None)
        if not dbf:
            sys_errno = ctypes.get_errno()
            code = lib.gdbm_errno_location()[0]
            message = lib.gdbm_strerror(code).decode("utf-8", "replace")
            # As _gdbm does: a system error (errno set) is reported as errno.
            if sys_errno and code in (_GDBM_FILE_OPEN_ERROR, _GDBM_CANT_BE_READER,
                                      _GDBM_CANT_BE_WRITER, 4, 5, 6, 24, 25):
                import os

                _raise_open_error(path, sys_errno, f"{message}: {os.strerror(sys_errno)}")
            _raise_open_error(path, None, message)
        if cache_buckets:
            size = ctypes.c_size_t(cache_buckets)
            lib.gdbm_setopt(dbf, GDBM_SETCACHESIZE, ctypes.byref(size), ctypes.sizeof(size))
        return cls(lib, dbf)

    def _datum(self, data: bytes) -> object:
        return self._lib.InDatum(data, len(data))

    def inserter(self, path: str) -> "Callable[[bytes, bytes], bool]":
        """GDBM_INSERT with two datums reused for every call (the bulk loader's
        hot path: no allocation but the call itself)."""
        lib, dbf = self._lib, self._dbf
        key_datum, value_datum = lib.InDatum(), lib.InDatum()
        store = lib.gdbm_store

        def insert(key: bytes, value: bytes) -> bool:
            key_datum.dptr = key
            key_datum.dsize = len(key)
            value_datum.dptr = value
            value_datum.dsize = len(value)
            result = store(dbf, key_datum, value_datum, GDBM_INSERT)
            if result == 0:
                return True
            if result == 1:
                return False
            raise _failure(path, "write", self._error())

        return insert

    def _error(self) -> _CtypesError:
        lib = self._lib
        return _CtypesError(lib.gdbm_last_errno(self._dbf),
                            lib.gdbm_db_strerror(self._dbf).decode("utf-8", "replace"))

    def _take(self, datum: object) -> bytes | None:
        """Copy a returned datum into bytes and free its malloc'ed buffer."""
        if not datum.dptr:
            return None
        lib = self._lib
        try:
            return lib.ctypes.string_at(datum.dptr, datum.dsize)
        finally:
            lib.free(datum.dptr)

    def get(self, key: bytes) -> bytes | None:
        value = self._take(self._lib.gdbm_fetch(self._dbf, self._datum(key)))
        if value is None and self._lib.gdbm_last_errno(self._dbf) != _GDBM_ITEM_NOT_FOUND:
            raise self._error()
        return value

    def __contains__(self, key: bytes) -> bool:
        return self.get(key) is not None

    def firstkey(self) -> bytes | None:
        key = self._take(self._lib.gdbm_firstkey(self._dbf))
        if key is None and self._lib.gdbm_last_errno(self._dbf) != _GDBM_ITEM_NOT_FOUND:
            raise self._error()
        return key

    def nextkey(self, key: bytes) -> bytes | None:
        nxt = self._take(self._lib.gdbm_nextkey(self._dbf, self._datum(key)))
        if nxt is None and self._lib.gdbm_last_errno(self._dbf) != _GDBM_ITEM_NOT_FOUND:
            raise self._error()
        return nxt

    def insert(self, key: bytes, value: bytes) -> bool:
        """GDBM_INSERT: False if the key exists."""
        rc = self._lib.gdbm_store(self._dbf, self._datum(key), self._datum(value),
                                  GDBM_INSERT)
        if rc < 0:
            raise self._error()
        return rc == 0

    def __setitem__(self, key: bytes, value: bytes) -> None:
        if self._lib.gdbm_store(self._dbf, self._datum(key), self._datum(value),
                                GDBM_REPLACE) != 0:
            raise self._error()

    def __delitem__(self, key: bytes) -> None:
        if self._lib.gdbm_delete(self._dbf, self._datum(key)) != 0:
            if self._lib.gdbm_last_errno(self._dbf) == _GDBM_ITEM_NOT_FOUND:
                raise KeyError(key)
            raise self._error()

    def sync(self) -> None:
        if self._lib.gdbm_sync(self._dbf) != 0:
            raise self._error()

    def close(self) -> None:
        dbf, self._dbf = self._dbf, None
        if dbf:
            self._lib.gdbm_close(dbf)


__all__ = [
    "BACKENDS",
    "DuplicateKey",
    "GdbmFile",
    "GdbmWriter",
    "available_backends",
    "create",
    "default_backend",
    "detect_format",
    "open_reader",
    "open_writer",
]
