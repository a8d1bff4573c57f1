"""authkit.userdb.gdbm: both backends, errors, format detection, locking.

The ctypes backend is tested in-process (the venv's Python has no ``_gdbm``); the
``_gdbm`` backend in-process when this interpreter has it, and always through
Debian's ``/usr/bin/python3`` (python3-gdbm) in a subprocess when that exists.
Databases here are written by the module itself; files written by Courier's
makeuserdb are checked in tests/integration/test_courierlab.py.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from authkit.errors import TemporaryFailure
from authkit.userdb import gdbm

REPO = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"

RECORDS = {
    b"andrew@example.com": b"uid=5000|gid=5000|home=/home/vmail/andrew|_=",
    b"5001=": b"robot|_=",
    b"": b"empty key",
    b"bin\x00ary\xff": b"\x00\x01\xfe",
    b"big@example.com": b"x" * 70000,
}


def _system_python_has_gdbm() -> bool:
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return False
    proc = subprocess.run([SYSTEM_PYTHON, "-I", "-c", "import _gdbm"], capture_output=True)
    return proc.returncode == 0


HAVE_LOCAL_GDBM = "_gdbm" in gdbm.available_backends()
HAVE_SYSTEM_GDBM = _system_python_has_gdbm()
needs_system_gdbm = pytest.mark.skipif(
    not HAVE_SYSTEM_GDBM, reason=f"{SYSTEM_PYTHON} with _gdbm (python3-gdbm) not available")


def _in_system_python(code: str, *args: str, stdin: str = "") -> object:
    """Run ``code`` under /usr/bin/python3 with the repo importable (``stdin`` as
    its input); it must print one JSON document, which is returned."""
    prelude = f"import sys, json; sys.path.insert(0, {str(REPO)!r})\n"
    proc = subprocess.run([SYSTEM_PYTHON, "-I", "-c", prelude + code, *args],
                          input=stdin, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(params=["ctypes", "_gdbm"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "_gdbm" and not HAVE_LOCAL_GDBM:
        pytest.skip("this Python has no _gdbm; the _gdbm backend is tested through "
                    f"{SYSTEM_PYTHON} below")
    return request.param


def _write(path: Path, backend: str, records: dict = RECORDS) -> None:
    with gdbm.create(str(path), 0o600, backend=backend) as w:
        for key, value in records.items():
            w.insert(key, value)


# ---------------------------------------------------------------- round trips


def test_stored_records_are_fetched_and_iterated_exactly(tmp_path: Path, backend: str) -> None:
    path = tmp_path / "userdb.dat"
    _write(path, backend)
    with gdbm.open_reader(str(path), backend=backend) as r:
        assert r.backend == backend
        for key, value in RECORDS.items():
            assert r.get(key) == value
        assert r.get(b"Andrew@example.com") is None  # exact key, no case folding
        assert sorted(r.keys()) == sorted(RECORDS)
        assert dict(r.items()) == RECORDS


def test_insert_of_existing_key_raises_duplicate_and_keeps_old_value(
        tmp_path: Path, backend: str) -> None:
    path = tmp_path / "userdb.dat"
    with gdbm.create(str(path), backend=backend) as w:
        w.insert(b"a@example.com", b"old")
        with pytest.raises(gdbm.DuplicateKey, match="a@example.com"):
            w.insert(b"a@example.com", b"new")
        with pytest.raises(gdbm.DuplicateKey):
            w.store(b"a@example.com", b"new", replace=False)
        assert w.get(b"a@example.com") == b"old"
        w.store(b"a@example.com", b"replaced")
        assert w.get(b"a@example.com") == b"replaced"


def test_delete_removes_key_and_missing_key_is_keyerror(tmp_path: Path, backend: str) -> None:
    path = tmp_path / "userdb.dat"
    _write(path, backend)
    with gdbm.open_writer(str(path), backend=backend) as w:
        w.delete(b"5001=")
        with pytest.raises(KeyError):
            w.delete(b"5001=")
        w.sync()
    with gdbm.open_reader(str(path), backend=backend) as r:
        assert r.get(b"5001=") is None
        assert len(list(r.keys())) == len(RECORDS) - 1


def test_create_sets_exact_mode_and_truncates(tmp_path: Path, backend: str) -> None:
    path = tmp_path / "userdbshadow.dat"
    _write(path, backend)
    old_umask = os.umask(0)
    try:
        with gdbm.create(str(path), 0o600, backend=backend) as w:
            assert list(w.keys()) == []
    finally:
        os.umask(old_umask)
    assert path.stat().st_mode & 0o777 == 0o600


def test_empty_database_has_no_keys(tmp_path: Path, backend: str) -> None:
    path = tmp_path / "empty.dat"
    gdbm.create(str(path), backend=backend).close()
    with gdbm.open_reader(str(path), backend=backend) as r:
        assert list(r.items()) == []


def test_closed_file_refuses_use_and_close_is_idempotent(tmp_path: Path, backend: str) -> None:
    path = tmp_path / "userdb.dat"
    _write(path, backend)
    r = gdbm.open_reader(path, backend=backend)  # a Path is accepted too
    r.close()
    r.close()
    with pytest.raises(ValueError, match="closed"):
        r.get(b"andrew@example.com")


# ---------------------------------------------------------------- errors


def test_missing_file_is_file_not_found(tmp_path: Path, backend: str) -> None:
    with pytest.raises(FileNotFoundError):
        gdbm.open_reader(str(tmp_path / "nope.dat"), backend=backend)


@pytest.mark.parametrize("content", [b"", b"not a database\n" * 400],
                         ids=["empty-file", "garbage"])
def test_corrupt_file_is_temporary_failure_naming_file(
        tmp_path: Path, backend: str, content: bytes) -> None:
    path = tmp_path / "userdb.dat"
    path.write_bytes(content)
    with pytest.raises(TemporaryFailure) as info:
        gdbm.open_reader(str(path), backend=backend)
    assert str(path) in str(info.value)
    assert info.value.exit_code == 111


def test_truncated_database_is_temporary_failure(tmp_path: Path, backend: str) -> None:
    path = tmp_path / "userdb.dat"
    _write(path, backend, {b"u%d" % i: b"v" * 200 for i in range(300)})
    path.write_bytes(path.read_bytes()[:4096])
    with pytest.raises(TemporaryFailure, match=str(path)):
        with gdbm.open_reader(str(path), backend=backend) as r:
            list(r.items())


def test_reader_fails_fast_while_in_place_writer_holds_lock(
        tmp_path: Path, backend: str) -> None:
    path = tmp_path / "userdb.dat"
    _write(path, backend)
    with gdbm.open_writer(str(path), backend=backend):
        with pytest.raises(TemporaryFailure, match="locked"):
            gdbm.open_reader(str(path), backend=backend)
        # GDBM_NOLOCK readers do not look at the lock.
        with gdbm.open_reader(str(path), lock=False, backend=backend) as r:
            assert r.get(b"5001=") == b"robot|_="


def test_writer_fails_while_reader_has_file_open(tmp_path: Path, backend: str) -> None:
    path = tmp_path / "userdb.dat"
    _write(path, backend)
    with gdbm.open_reader(str(path), backend=backend):
        with pytest.raises(TemporaryFailure, match="locked"):
            gdbm.open_writer(str(path), backend=backend)


def test_open_reader_does_not_block_replacement_by_rename(tmp_path: Path, backend: str) -> None:
    path = tmp_path / "userdb.dat"
    _write(path, backend, {b"k": b"old"})
    with gdbm.open_reader(str(path), backend=backend) as old:
        tmp = tmp_path / "userdb.tmp"
        _write(tmp, backend, {b"k": b"new"})  # what makedatprog does
        os.rename(tmp, path)
        assert old.get(b"k") == b"old"
        with gdbm.open_reader(str(path), backend=backend) as new:
            assert new.get(b"k") == b"new"


def test_unknown_backend_is_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown GDBM backend"):
        gdbm.open_reader(str(tmp_path / "x.dat"), backend="bsddb")


def test_missing_libgdbm_says_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    import ctypes
    import ctypes.util

    def no_library(*args: object, **kwargs: object) -> object:
        raise OSError("cannot open shared object file")

    monkeypatch.setattr(gdbm, "_LIB", None)
    monkeypatch.setattr(ctypes, "CDLL", no_library)
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    with pytest.raises(TemporaryFailure, match="install libgdbm6") as info:
        gdbm.open_reader(str(tmp_path / "userdb.dat"), backend="ctypes")
    assert "gdbm" in str(info.value)
    assert "ctypes" not in gdbm.available_backends()


# ---------------------------------------------------------------- formats


def _bdb_header(magic: int, order: str, offset: int = 12) -> bytes:
    head = bytearray(4096)
    head[offset:offset + 4] = magic.to_bytes(4, order)
    return bytes(head)


@pytest.mark.parametrize("magic", [0x061561, 0x053162], ids=["hash", "btree"])
@pytest.mark.parametrize("order", ["little", "big"])
def test_berkeley_db_file_is_detected_and_refused_with_recompile_advice(
        tmp_path: Path, backend: str, magic: int, order: str) -> None:
    path = tmp_path / "userdb.dat"
    path.write_bytes(_bdb_header(magic, order))
    assert gdbm.detect_format(str(path)) == "berkeley-db"
    with pytest.raises(TemporaryFailure) as info:
        gdbm.open_reader(str(path), backend=backend)
    message = str(info.value)
    assert str(path) in message
    assert "Berkeley DB" in message
    assert "authkit makeuserdb" in message


@pytest.mark.parametrize("magic", [0x13579ACF, 0x13579ACE, 0x13579ACD])
@pytest.mark.parametrize("order", ["little", "big"])
def test_gdbm_magics_in_either_byte_order_are_detected(
        tmp_path: Path, magic: int, order: str) -> None:
    path = tmp_path / "x.dat"
    path.write_bytes(magic.to_bytes(4, order) + bytes(60))
    assert gdbm.detect_format(str(path)) == "gdbm"


def test_written_file_is_gdbm_and_garbage_is_unknown(tmp_path: Path, backend: str) -> None:
    good, bad = tmp_path / "good.dat", tmp_path / "bad.dat"
    _write(good, backend)
    bad.write_bytes(b"andrew@example.com\tuid=5000\n")
    assert gdbm.detect_format(str(good)) == "gdbm"
    assert gdbm.detect_format(str(bad)) == "unknown"
    (tmp_path / "tiny").write_bytes(b"\x13")
    assert gdbm.detect_format(str(tmp_path / "tiny")) == "unknown"


# ---------------------------------------------------------------- _gdbm via /usr/bin/python3

_SYSTEM_WRITE = """
from authkit.userdb import gdbm
recs = {bytes.fromhex(k): bytes.fromhex(v) for k, v in json.load(sys.stdin).items()}
with gdbm.create(sys.argv[1], 0o600, backend=sys.argv[2]) as w:
    for k, v in recs.items():
        w.insert(k, v)
print(json.dumps(w.backend))
"""

_SYSTEM_READ = """
from authkit.userdb import gdbm
with gdbm.open_reader(sys.argv[1], backend=sys.argv[2]) as r:
    print(json.dumps({"backend": r.backend,
                      "items": {k.hex(): v.hex() for k, v in r.items()}}))
"""

_HEX_RECORDS = {k.hex(): v.hex() for k, v in RECORDS.items()}


@needs_system_gdbm
def test_file_written_by_gdbm_module_is_read_by_ctypes(tmp_path: Path) -> None:
    path = tmp_path / "userdb.dat"
    used = _in_system_python(_SYSTEM_WRITE, str(path), "_gdbm",
                            stdin=json.dumps(_HEX_RECORDS))
    assert used == "_gdbm"
    with gdbm.open_reader(str(path), backend="ctypes") as r:
        assert dict(r.items()) == RECORDS


@needs_system_gdbm
def test_file_written_by_ctypes_is_read_by_gdbm_module(tmp_path: Path) -> None:
    path = tmp_path / "userdb.dat"
    _write(path, "ctypes")
    out = _in_system_python(_SYSTEM_READ, str(path), "_gdbm")
    assert out["backend"] == "_gdbm"
    assert {bytes.fromhex(k): bytes.fromhex(v) for k, v in out["items"].items()} == RECORDS


@needs_system_gdbm
def test_gdbm_module_is_default_and_does_not_import_ctypes() -> None:
    out = _in_system_python(
        "from authkit.userdb import gdbm\n"
        "print(json.dumps([gdbm.default_backend(), 'ctypes' in sys.modules]))")
    assert out == ["_gdbm", False]


_SYSTEM_BEHAVIOURS = """
import os
from authkit.errors import TemporaryFailure
from authkit.userdb import gdbm
d = sys.argv[1]
res = {}
p = os.path.join(d, "u.dat")
with gdbm.create(p, 0o600) as w:
    w.insert(b"a", b"1")
    try:
        w.insert(b"a", b"2")
    except gdbm.DuplicateKey:
        res["dup"] = True
    w.store(b"b", b"2")
    w.delete(b"b")
    try:
        w.delete(b"b")
    except KeyError:
        res["delete_missing"] = True
    w.sync()
with gdbm.open_reader(p) as r:
    res["get"] = [r.get(b"a").decode(), r.get(b"b")]
    res["keys"] = [k.decode() for k in r.keys()]
res["mode"] = oct(os.stat(p).st_mode & 0o777)
try:
    gdbm.open_reader(os.path.join(d, "missing.dat"))
except FileNotFoundError:
    res["missing"] = True
c = os.path.join(d, "corrupt.dat")
open(c, "wb").write(b"garbage" * 1000)
try:
    gdbm.open_reader(c)
except TemporaryFailure as e:
    res["corrupt"] = str(e)
b = os.path.join(d, "bdb.dat")
open(b, "wb").write(bytes(12) + (0x061561).to_bytes(4, "little") + bytes(4080))
try:
    gdbm.open_reader(b)
except TemporaryFailure as e:
    res["bdb"] = str(e)
with gdbm.open_writer(p):
    try:
        gdbm.open_reader(p)
    except TemporaryFailure as e:
        res["locked"] = str(e)
res["ctypes_imported"] = "ctypes" in sys.modules
print(json.dumps(res))
"""


@needs_system_gdbm
def test_gdbm_module_backend_behaves_like_ctypes(tmp_path: Path) -> None:
    res = _in_system_python(_SYSTEM_BEHAVIOURS, str(tmp_path))
    assert res["dup"] and res["delete_missing"] and res["missing"]
    assert res["get"] == ["1", None]
    assert res["keys"] == ["a"]
    assert res["mode"] == "0o600"
    assert str(tmp_path / "corrupt.dat") in res["corrupt"]
    assert "Bad magic number" in res["corrupt"]
    assert "Berkeley DB" in res["bdb"] and "authkit makeuserdb" in res["bdb"]
    assert "locked" in res["locked"]
    assert res["ctypes_imported"] is False


# ---------------------------------------------------------------- bulk writes (makeuserdb)


@pytest.mark.parametrize("bulk", [True, False])
def test_inserter_stores_new_keys_and_refuses_existing_ones(tmp_path: Path, backend: str, bulk: bool) -> None:
    path = str(tmp_path / "db")
    with gdbm.create(path, 0o600, backend=backend, bulk=bulk) as writer:
        if bulk:  # the one binding's bulk options need libgdbm through ctypes
            assert writer.backend == "ctypes"
        insert = writer.inserter()
        for key, value in RECORDS.items():
            assert insert(key, value) is True
        assert insert(b"andrew@example.com", b"other") is False
        writer.sync()
    assert os.stat(path).st_mode & 0o777 == 0o600
    with gdbm.open_reader(path, backend=backend) as reader:
        assert dict(reader.items()) == RECORDS


def test_bulk_files_read_the_same_as_plain_ones(tmp_path: Path) -> None:
    keys = {b"u%05d" % i: b"uid=%d|gid=1|home=/h|_=" % i for i in range(3000)}
    for bulk in (True, False):
        with gdbm.create(str(tmp_path / f"db{bulk}"), bulk=bulk) as writer:
            insert = writer.inserter()
            for key, value in keys.items():
                insert(key, value)
    with gdbm.open_reader(str(tmp_path / "dbTrue")) as a, gdbm.open_reader(str(tmp_path / "dbFalse")) as b:
        assert dict(a.items()) == dict(b.items()) == keys
    assert gdbm.detect_format(str(tmp_path / "dbTrue")) == "gdbm"


def test_the_compiler_has_no_libgdbm_binding_of_its_own() -> None:
    source = (REPO / "authkit" / "userdb" / "compile.py").read_text()
    for binding in ("import ctypes", "CDLL", "gdbm_open", "gdbm_store", "gdbm_setopt"):
        assert binding not in source, binding
